//! Human-friendly units on the command line and in config files: durations
//! (`0.2`, `5`, `500ms`, `30s`, `2m`, `1h`) and byte sizes (`4096`,
//! `64KiB`, `1MiB`).

use std::time::Duration;

/// The longest duration sockit takes anywhere: a year. Far beyond any
/// sensible timeout or run, and far enough below what `Instant` and the
/// timers can add without overflowing.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Parses a duration: a number, whole or decimal, followed by `ms`, `s`,
/// `m` or `h`, or by nothing for seconds (`0.2`, as ping(8) takes it).
///
/// The number is read as decimal digits, not as a float, so `0.2` is
/// exactly 200ms and `NaN`, `inf` or `1e308` are simply not numbers.
///
/// # Errors
/// A one-line message naming what is wrong with `text`: not a number, a
/// negative one, an unknown unit, or more than [`MAX_DURATION`].
///
/// ```
/// use std::time::Duration;
/// assert_eq!(sockit::units::parse_duration("500ms"), Ok(Duration::from_millis(500)));
/// assert_eq!(sockit::units::parse_duration("2m"), Ok(Duration::from_secs(120)));
/// assert_eq!(sockit::units::parse_duration("0.2"), Ok(Duration::from_millis(200)));
/// assert!(sockit::units::parse_duration("soon").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let bad = |why: &str| format!("invalid duration {text:?}: {why}");
    if text.starts_with('-') {
        return Err(bad("must not be negative"));
    }
    let number_len = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(number_len);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return Err(bad(
            "expected seconds (0.2, 5) or a number with a unit (500ms, 30s, 2m, 1h)",
        ));
    }
    let unit_nanos: u128 = match unit {
        "" | "s" => 1_000_000_000,
        "ms" => 1_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        other => {
            return Err(bad(&format!(
                "unknown unit {other:?} (use ms, s, m or h; none means seconds)"
            )));
        }
    };
    let too_large = || bad(&format!("at most {}", format_duration(MAX_DURATION)));
    // Digits past the 18th of a fraction are below a nanosecond even in hours.
    let fraction = &fraction[..fraction.len().min(18)];
    let whole: u128 = match whole {
        "" => 0,
        digits => digits.parse().map_err(|_| too_large())?,
    };
    let fraction_nanos = match fraction {
        "" => 0,
        digits => {
            let scale = 10u128.pow(digits.len() as u32);
            digits.parse::<u128>().map_err(|_| too_large())? * unit_nanos / scale
        }
    };
    let nanos = whole
        .checked_mul(unit_nanos)
        .and_then(|n| n.checked_add(fraction_nanos))
        .filter(|&n| n <= MAX_DURATION.as_nanos())
        .ok_or_else(too_large)?;
    Ok(Duration::from_nanos(nanos as u64))
}

/// [`parse_duration`] for options where zero makes no sense (a run length,
/// a timeout that would expire before anything is sent).
///
/// # Errors
/// As [`parse_duration`], and for a zero duration.
pub fn parse_nonzero_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        d if d.is_zero() => Err(format!(
            "invalid duration {:?}: must be more than 0",
            text.trim()
        )),
        d => Ok(d),
    }
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

/// Writes a duration back in the shortest unit that represents it exactly
/// (in decimal seconds when it is not a whole number of milliseconds).
pub fn format_duration(d: Duration) -> String {
    if !d.subsec_nanos().is_multiple_of(1_000_000) {
        return format!("{}s", d.as_secs_f64());
    }
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
        assert_eq!(parse_duration(" 2m "), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        for bad in ["", "s", "10x", "-1s", "1.5.2", ".", "99999999999999999999s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(parse_duration(&format!("{}h", u64::MAX / 10)).is_err());
    }

    #[test]
    fn bare_numbers_are_seconds() {
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0.2"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration(".5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2."), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("0.000001"), Ok(Duration::from_micros(1)));
        // Decimals take a unit too.
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0.5h"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("2.5ms"), Ok(Duration::from_micros(2500)));
        // Digits below a nanosecond are dropped, not refused.
        assert_eq!(
            parse_duration("0.1234567891234567891234"),
            Ok(Duration::from_nanos(123_456_789))
        );
    }

    #[test]
    fn hostile_durations_are_one_line_errors() {
        for (bad, why) in [
            ("-1", "must not be negative"),
            ("-0.5", "must not be negative"),
            ("NaN", "expected seconds"),
            ("inf", "expected seconds"),
            ("-inf", "must not be negative"),
            ("1e308", "unknown unit \"e308\""),
            ("1e-20", "unknown unit"),
            ("9999999999", "at most 8760h"),
            ("366d", "unknown unit"),
            ("8761h", "at most 8760h"),
            ("525600.1m", "at most 8760h"),
            (&"9".repeat(400), "at most 8760h"),
        ] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
        assert_eq!(parse_duration("8760h"), Ok(MAX_DURATION));
        assert_eq!(parse_duration("31536000"), Ok(MAX_DURATION));
    }

    #[test]
    fn nonzero_durations() {
        assert_eq!(
            parse_nonzero_duration("0.2"),
            Ok(Duration::from_millis(200))
        );
        for zero in ["0", "0s", "0.0", "0ms"] {
            let err = parse_nonzero_duration(zero).unwrap_err();
            assert!(err.contains("must be more than 0"), "{zero}: {err}");
        }
        assert!(parse_nonzero_duration("-1").is_err());
    }

    #[test]
    fn durations_round_trip() {
        for text in ["500ms", "30s", "2m", "1h", "0s", "1500ms", "0.0005s"] {
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
