//! Timestamps and durations as users and clouds write them.
//!
//! Reading accepts any RFC 3339 form: 0 to 9 fractional digits, `Z` or any
//! offset (so the 7-digit .NET form Azure sends is fine). Writing always
//! gives UTC with `Z` and 0, 3, 6 or 9 fractional digits.

use std::time::Duration;

use chrono::{DateTime, Datelike, SecondsFormat, Utc};

/// A timestamp that could not be read; names the field it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {value:?} is not an RFC 3339 timestamp")]
pub struct TimestampError {
    pub field: String,
    /// The offending text, cut short: it is never a secret, but may be long.
    pub value: String,
}

/// Parses an RFC 3339 timestamp into UTC. `field` names where it came from
/// for the error message. An instant whose UTC year is not four digits
/// (`0000-01-01T00:00:00+00:01`) is refused: it could not be written back.
pub fn parse_rfc3339(field: &str, value: &str) -> Result<DateTime<Utc>, TimestampError> {
    DateTime::parse_from_rfc3339(value.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
        .filter(|t| (0..=9999).contains(&t.year()))
        .ok_or_else(|| TimestampError {
            field: field.to_owned(),
            value: value.chars().take(64).collect(),
        })
}

/// Formats a timestamp as RFC 3339 in UTC: `Z`, and 0/3/6/9 fractional digits.
pub fn format_rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A duration that could not be read.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{value:?} is not a duration ({source})")]
pub struct DurationError {
    pub value: String,
    pub source: humantime::DurationError,
}

/// Parses a duration the way the config file writes them: `90s`, `5m`,
/// `1h 30m`, `8h`.
pub fn parse_duration(value: &str) -> Result<Duration, DurationError> {
    humantime::parse_duration(value.trim()).map_err(|source| DurationError {
        value: value.to_owned(),
        source,
    })
}

/// Formats a whole number of seconds for people: `59m 30s`.
pub fn format_duration_secs(secs: i64) -> String {
    let sign = if secs < 0 { "-" } else { "" };
    let d = Duration::from_secs(secs.unsigned_abs());
    format!("{sign}{}", humantime::format_duration(d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_the_forms_clouds_send() {
        let cases = [
            ("2014-10-02T15:01:23Z", "2014-10-02T15:01:23Z"),
            ("2014-10-02T15:01:23.045Z", "2014-10-02T15:01:23.045Z"),
            ("2014-10-02T15:01:23.045123Z", "2014-10-02T15:01:23.045123Z"),
            (
                "2014-10-02T15:01:23.045123456Z",
                "2014-10-02T15:01:23.045123456Z",
            ),
            (
                "2022-07-14T19:22:50.3080223Z",
                "2022-07-14T19:22:50.308022300Z",
            ),
            ("2014-10-02T20:31:23.5+05:30", "2014-10-02T15:01:23.500Z"),
            ("2014-10-02T10:01:23-05:00", "2014-10-02T15:01:23Z"),
            ("2014-10-02t15:01:23z", "2014-10-02T15:01:23Z"),
        ];
        for (input, want) in cases {
            let t = parse_rfc3339("expirationTime", input).unwrap();
            assert_eq!(format_rfc3339(t), want, "{input}");
        }
    }

    #[test]
    fn rejects_garbage_naming_the_field() {
        for bad in [
            "",
            "tomorrow",
            "2014-10-02",
            "2014-10-02T15:01:23",
            "1506484173",
            "2014-13-02T15:01:23Z",
            // Found by the `timestamp` fuzz target: in range in their own
            // offset, out of it in UTC, and written back as `-0001-…` and
            // `+10000-…`, which do not read back.
            "0000-01-01T00:00:00+00:01",
            "9999-12-31T23:59:59-00:01",
        ] {
            let err = parse_rfc3339("properties.expires", bad).unwrap_err();
            assert!(err.to_string().starts_with("properties.expires: "), "{err}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        let err = parse_duration("five minutes").unwrap_err();
        assert_eq!(err.value, "five minutes");
        assert!(
            err.to_string()
                .starts_with("\"five minutes\" is not a duration ("),
            "{err}"
        );
        assert_eq!(format_duration_secs(3570), "59m 30s");
        assert_eq!(format_duration_secs(-5), "-5s");
    }

    proptest! {
        /// Any instant, written in any RFC 3339 form, reads back to the
        /// same instant, and is written as Z with 0/3/6/9 digits.
        #[test]
        fn any_rfc3339_form_round_trips(
            secs in 0i64..253_402_300_799,
            nanos in 0u32..1_000_000_000,
            digits in 0usize..=9,
            offset_min in -1439i32..=1439,
            zulu in any::<bool>(),
        ) {
            let exact = DateTime::from_timestamp(secs, nanos).unwrap();
            // Truncate to the digits we will write.
            let scale = 10u32.pow(9 - digits as u32);
            let t = DateTime::from_timestamp(secs, nanos / scale * scale).unwrap();
            let frac = if digits == 0 { String::new() } else {
                format!(".{:09}", t.timestamp_subsec_nanos())[..=digits].to_string()
            };
            let text = if zulu && offset_min == 0 {
                format!("{}{frac}Z", t.format("%Y-%m-%dT%H:%M:%S"))
            } else {
                let off = chrono::FixedOffset::east_opt(offset_min * 60).unwrap();
                let local = t.with_timezone(&off);
                let sign = if offset_min < 0 { '-' } else { '+' };
                let m = offset_min.abs();
                format!("{}{frac}{sign}{:02}:{:02}", local.format("%Y-%m-%dT%H:%M:%S"), m / 60, m % 60)
            };
            let _ = exact;
            let back = parse_rfc3339("t", &text).unwrap();
            prop_assert_eq!(back, t);
            let out = format_rfc3339(back);
            prop_assert!(out.ends_with('Z'));
            let frac_len = out.split('.').nth(1).map(|f| f.len() - 1).unwrap_or(0);
            prop_assert!([0, 3, 6, 9].contains(&frac_len), "{}", out);
        }

        /// Nothing makes the parser panic.
        #[test]
        fn garbage_never_panics(s in ".{0,64}") {
            let _ = parse_rfc3339("t", &s);
        }
    }
}
