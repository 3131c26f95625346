//! The timestamp forms the clouds really send, switchable per endpoint so
//! the daemon's parser meets each of them.

use std::fmt;

use chrono::{DateTime, FixedOffset, Timelike, Utc};

use super::endpoint::Endpoint;

/// How an endpoint writes an RFC 3339 expiry (GKE `expirationTime`,
/// Container Apps `properties.expires`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampForm {
    /// `2014-10-02T15:01:23Z`
    Digits0,
    /// `2014-10-02T15:01:23.045Z`
    Digits3,
    /// `2014-10-02T15:01:23.045123Z`
    Digits6,
    /// `2022-07-14T19:22:50.3080223Z` (.NET "O", Container Apps' default)
    Digits7,
    /// `2014-10-02T15:01:23.045123456Z` (GKE's default)
    Digits9,
    /// The same instant at this offset east of UTC, in minutes, with 9
    /// fractional digits: `Offset(330)` gives `2014-10-02T20:31:23.045123456+05:30`.
    Offset(i32),
}

impl TimestampForm {
    /// The form an endpoint uses until told otherwise.
    pub fn default_for(endpoint: Endpoint) -> TimestampForm {
        match endpoint {
            Endpoint::ContainerAppToken => TimestampForm::Digits7,
            _ => TimestampForm::Digits9,
        }
    }

    /// Writes `t` in this form. Fractions are truncated, never rounded up, so
    /// the written expiry is never later than the real one.
    pub fn format(self, t: DateTime<Utc>) -> String {
        let base = t.format("%Y-%m-%dT%H:%M:%S");
        let nanos = t.nanosecond() % 1_000_000_000;
        match self {
            TimestampForm::Digits0 => format!("{base}Z"),
            TimestampForm::Digits3 => format!("{base}.{:03}Z", nanos / 1_000_000),
            TimestampForm::Digits6 => format!("{base}.{:06}Z", nanos / 1_000),
            TimestampForm::Digits7 => format!("{base}.{:07}Z", nanos / 100),
            TimestampForm::Digits9 => format!("{base}.{nanos:09}Z"),
            TimestampForm::Offset(minutes) => match FixedOffset::east_opt(minutes * 60) {
                Some(offset) => t
                    .with_timezone(&offset)
                    .format("%Y-%m-%dT%H:%M:%S%.9f%:z")
                    .to_string(),
                None => format!("{base}.{nanos:09}Z"),
            },
        }
    }

    /// Parses the control API's spelling: `digits0`, `digits3`, `digits6`,
    /// `digits7`, `digits9` (or just the digit), or an offset `+05:30`/`-08:00`.
    pub fn parse(text: &str) -> Option<TimestampForm> {
        let digits = text.strip_prefix("digits").unwrap_or(text);
        match digits {
            "0" => return Some(TimestampForm::Digits0),
            "3" => return Some(TimestampForm::Digits3),
            "6" => return Some(TimestampForm::Digits6),
            "7" => return Some(TimestampForm::Digits7),
            "9" => return Some(TimestampForm::Digits9),
            _ => {}
        }
        let text = text.strip_prefix("offset").unwrap_or(text);
        let (sign, rest) = match text.as_bytes().first() {
            Some(b'+') => (1, &text[1..]),
            Some(b'-') => (-1, &text[1..]),
            _ => return None,
        };
        let (hours, minutes) = rest.split_once(':')?;
        let hours: i32 = hours.parse().ok()?;
        let minutes: i32 = minutes.parse().ok()?;
        if hours > 23 || minutes > 59 {
            return None;
        }
        Some(TimestampForm::Offset(sign * (hours * 60 + minutes)))
    }
}

impl fmt::Display for TimestampForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimestampForm::Digits0 => f.write_str("digits0"),
            TimestampForm::Digits3 => f.write_str("digits3"),
            TimestampForm::Digits6 => f.write_str("digits6"),
            TimestampForm::Digits7 => f.write_str("digits7"),
            TimestampForm::Digits9 => f.write_str("digits9"),
            TimestampForm::Offset(minutes) => {
                let sign = if *minutes < 0 { '-' } else { '+' };
                let abs = minutes.unsigned_abs();
                write!(f, "{sign}{:02}:{:02}", abs / 60, abs % 60)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn instant() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2014, 10, 2, 15, 1, 23).unwrap()
            + chrono::Duration::nanoseconds(45_123_456)
    }

    #[test]
    fn formats_each_form() {
        let t = instant();
        assert_eq!(TimestampForm::Digits0.format(t), "2014-10-02T15:01:23Z");
        assert_eq!(TimestampForm::Digits3.format(t), "2014-10-02T15:01:23.045Z");
        assert_eq!(
            TimestampForm::Digits6.format(t),
            "2014-10-02T15:01:23.045123Z"
        );
        assert_eq!(
            TimestampForm::Digits7.format(t),
            "2014-10-02T15:01:23.0451234Z"
        );
        assert_eq!(
            TimestampForm::Digits9.format(t),
            "2014-10-02T15:01:23.045123456Z"
        );
        assert_eq!(
            TimestampForm::Offset(330).format(t),
            "2014-10-02T20:31:23.045123456+05:30"
        );
        assert_eq!(
            TimestampForm::Offset(-480).format(t),
            "2014-10-02T07:01:23.045123456-08:00"
        );
    }

    #[test]
    fn parses_what_it_displays() {
        for form in [
            TimestampForm::Digits0,
            TimestampForm::Digits3,
            TimestampForm::Digits6,
            TimestampForm::Digits7,
            TimestampForm::Digits9,
            TimestampForm::Offset(330),
            TimestampForm::Offset(-480),
        ] {
            assert_eq!(TimestampForm::parse(&form.to_string()), Some(form));
        }
        assert_eq!(TimestampForm::parse("7"), Some(TimestampForm::Digits7));
        assert_eq!(TimestampForm::parse("+25:00"), None);
        assert_eq!(TimestampForm::parse("soon"), None);
    }
}
