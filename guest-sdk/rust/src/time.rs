//! Durations: window lengths, slides and timeouts cross the boundary in
//! whole milliseconds; job arguments spell them like `30s` or `500ms`.

use std::time::Duration;

/// `duration` in whole milliseconds; an error for zero or a fraction of a
/// millisecond.
pub(crate) fn duration_ms(duration: Duration) -> Result<u64, String> {
    if duration.is_zero() {
        return Err("a duration of zero".to_string());
    }
    if !duration.subsec_nanos().is_multiple_of(1_000_000) {
        return Err(format!(
            "{duration:?} is not a whole number of milliseconds"
        ));
    }
    u64::try_from(duration.as_millis()).map_err(|_| format!("{duration:?} is too long"))
}

/// Parses `500ms`, `30s`, `5m`, `2h` (a whole number and a unit).
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 500ms, 30s, 5m or 2h"))?;
    let ms = match unit.trim() {
        "ms" => Some(number),
        "s" => number.checked_mul(1_000),
        "m" | "min" => number.checked_mul(60_000),
        "h" => number.checked_mul(3_600_000),
        _ => {
            return Err(format!(
                "{text:?} is not a duration like 500ms, 30s, 5m or 2h (units: ms, s, m, h)"
            ));
        }
    };
    ms.map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_their_unit_and_refuse_others() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("1.5s").is_err());
        assert!(parse_duration("3d").is_err());
    }

    #[test]
    fn whole_milliseconds_only() {
        assert_eq!(duration_ms(Duration::from_secs(2)), Ok(2000));
        assert!(duration_ms(Duration::ZERO).is_err());
        assert!(duration_ms(Duration::from_micros(1500)).is_err());
    }
}
