//! The wall clock as the time services print it: ctime(3) format in local
//! time (`Sun Nov 22 01:18:03 2026`), honouring `TZ` like localtime(3).
//!
//! Formatting through chrono costs far more than the rest of a reply, and a
//! busy connection asks many times a second, so each connection keeps a
//! [`Clock`] that formats once per second and copies the cached bytes.

use chrono::{DateTime, Local};

/// Length of a ctime date without its line end.
pub const CTIME_LEN: usize = 24;

/// Seconds from 1900-01-01 (RFC 868's epoch) to 1970-01-01.
const RFC868_OFFSET: i64 = 2_208_988_800;

/// A per-connection cache of the formatted current second.
#[derive(Debug, Default)]
pub struct Clock {
    second: i64,
    text: Vec<u8>,
}

impl Clock {
    /// A clock with nothing cached yet.
    pub fn new() -> Self {
        Clock::default()
    }

    /// The current local time in ctime format, without a line end.
    pub fn ctime(&mut self) -> &[u8] {
        let now = Local::now();
        if self.text.is_empty() || now.timestamp() != self.second {
            self.second = now.timestamp();
            self.text.clear();
            self.text.extend_from_slice(format_ctime(&now).as_bytes());
        }
        &self.text
    }
}

/// Formats like ctime(3): day of month padded with a space, not a zero.
///
/// ```
/// use chrono::{FixedOffset, TimeZone};
/// let t = FixedOffset::east_opt(0).unwrap().with_ymd_and_hms(2026, 11, 2, 1, 18, 3).unwrap();
/// assert_eq!(sockit::service::clock::format_ctime(&t), "Mon Nov  2 01:18:03 2026");
/// ```
pub fn format_ctime<Tz: chrono::TimeZone>(t: &DateTime<Tz>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    t.format("%a %b %e %H:%M:%S %Y").to_string()
}

/// The current time as RFC 868 sends it: seconds since 1900, 32 bits big
/// endian (it wraps in 2036, as the RFC's counter does).
pub fn rfc868_now() -> [u8; 4] {
    let since_1900 = chrono::Utc::now().timestamp() + RFC868_OFFSET;
    (since_1900 as u32).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctime_has_the_fixed_shape() {
        let mut clock = Clock::new();
        let text = clock.ctime().to_vec();
        assert_eq!(
            text.len(),
            CTIME_LEN,
            "{:?}",
            String::from_utf8_lossy(&text)
        );
        assert_eq!(text[3], b' ');
        assert_eq!(text[13], b':');
    }

    #[test]
    fn rfc868_is_after_2020() {
        let secs = u32::from_be_bytes(rfc868_now());
        // 2020-01-01 in RFC 868 seconds.
        assert!(secs > 3_786_825_600);
    }
}
