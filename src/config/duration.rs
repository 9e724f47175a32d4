//! Durations as written in the config: `250ms`, `30s`, `15m`, `12h`, `7d`.
//! A bare number is refused, so `ttl = 900` cannot silently mean seconds or minutes.

use std::time::Duration;

/// Parses `<digits><unit>` with unit one of `ms`, `s`, `m`, `h`, `d`.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{text}` has no unit (write e.g. `30s`, `15m`, `7d`)"))?;
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().map_err(|_| format!("`{text}` is not a duration (write e.g. `30s`, `15m`, `7d`)"))?;
    let per_unit = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!("`{text}` has unknown unit `{unit}` (use ms, s, m, h or d)"));
        }
    };
    n.checked_mul(per_unit).map(Duration::from_secs).ok_or_else(|| format!("`{text}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse("7d").unwrap(), Duration::from_secs(604_800));
        assert_eq!(parse(" 2h ").unwrap(), Duration::from_secs(7200));
    }

    #[test]
    fn refuses_bad_input() {
        for bad in ["", "15", "m", "1.5s", "10w", "-3s", "99999999999999999999s"] {
            assert!(parse(bad).is_err(), "{bad} should fail");
        }
    }
}
