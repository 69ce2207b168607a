//! Human-friendly units on the command line and in config files: durations
//! (`500ms`, `30s`, `2m`, `1h`) and byte sizes (`4096`, `64KiB`, `1MiB`).

use std::time::Duration;

/// Parses a duration written as a whole number followed by `ms`, `s`, `m`
/// or `h`.
///
/// # Errors
/// A one-line message naming what is wrong with `text`.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(sockit::units::parse_duration("500ms"), Ok(Duration::from_millis(500)));
/// assert_eq!(sockit::units::parse_duration("2m"), Ok(Duration::from_secs(120)));
/// assert!(sockit::units::parse_duration("soon").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err(format!(
            "invalid duration {text:?}: expected a number with a unit, like 500ms, 30s, 2m or 1h"
        ));
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: number too large"))?;
    let millis = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "" => {
            return Err(format!(
                "invalid duration {text:?}: missing unit (ms, s, m or h)"
            ));
        }
        other => {
            return Err(format!(
                "invalid duration {text:?}: unknown unit {other:?} (use ms, s, m or h)"
            ));
        }
    };
    millis
        .map(Duration::from_millis)
        .ok_or_else(|| format!("invalid duration {text:?}: too large"))
}

/// Parses a byte count: a whole number, optionally followed by `K`/`KiB`
/// (×1024) or `M`/`MiB` (×1024²).
///
/// # Errors
/// A one-line message naming what is wrong with `text`.
///
/// ```
/// assert_eq!(sockit::units::parse_bytes("64KiB"), Ok(65536));
/// assert_eq!(sockit::units::parse_bytes("100"), Ok(100));
/// ```
pub fn parse_bytes(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: usize = digits.parse().map_err(|_| {
        format!("invalid size {text:?}: expected a number of bytes, like 4096 or 64KiB")
    })?;
    let scale: usize = match unit {
        "" | "B" => 1,
        "K" | "k" | "KiB" | "KB" => 1 << 10,
        "M" | "MiB" | "MB" => 1 << 20,
        other => {
            return Err(format!(
                "invalid size {text:?}: unknown unit {other:?} (use KiB or MiB)"
            ));
        }
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("invalid size {text:?}: too large"))
}

/// Writes a duration back in the shortest unit that represents it exactly.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(3_600_000) && ms > 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1_000) {
        format!("{}s", ms / 1_000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "s", "10", "10x", "-1s", "1.5s", "99999999999999999999s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(parse_duration(&format!("{}h", u64::MAX / 10)).is_err());
    }

    #[test]
    fn durations_round_trip() {
        for text in ["500ms", "30s", "2m", "1h", "0s", "1500ms"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("1MiB"), Ok(1 << 20));
        assert_eq!(parse_bytes("4k"), Ok(4096));
        for bad in ["", "KiB", "1GiB", "-4", "1 2"] {
            assert!(parse_bytes(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
