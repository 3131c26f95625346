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

/// `#[serde(with = "credcache_shared::time::compact")]`: a timestamp as
/// whole seconds and nanoseconds since the epoch in binary formats (the
/// socket protocol, cache records), and as RFC 3339 text in human-readable
/// ones (JSON), as chrono writes it.
///
/// chrono's own binary form is the RFC 3339 text: formatting it was 7% of
/// the daemon's work per cached `get`, and parsing it back a third of
/// decoding a cache record at start (BENCHMARKS.md, issue 15).
pub mod compact {
    use chrono::{DateTime, Utc};
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            t.serialize(s)
        } else {
            (t.timestamp(), t.timestamp_subsec_nanos()).serialize(s)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        if d.is_human_readable() {
            DateTime::deserialize(d)
        } else {
            let (secs, nanos) = <(i64, u32)>::deserialize(d)?;
            from_parts(secs, nanos).map_err(D::Error::custom)
        }
    }

    fn from_parts(secs: i64, nanos: u32) -> Result<DateTime<Utc>, String> {
        DateTime::from_timestamp(secs, nanos)
            .ok_or_else(|| format!("timestamp {secs}s {nanos}ns is out of range"))
    }

    /// [`compact`](self) for an `Option`.
    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(
            t: &Option<DateTime<Utc>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            if s.is_human_readable() {
                t.serialize(s)
            } else {
                t.map(|t| (t.timestamp(), t.timestamp_subsec_nanos()))
                    .serialize(s)
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<DateTime<Utc>>, D::Error> {
            if d.is_human_readable() {
                Option::deserialize(d)
            } else {
                <Option<(i64, u32)>>::deserialize(d)?
                    .map(|(secs, nanos)| from_parts(secs, nanos).map_err(D::Error::custom))
                    .transpose()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Stamped {
        #[serde(with = "compact")]
        at: DateTime<Utc>,
        #[serde(with = "compact::option")]
        maybe: Option<DateTime<Utc>>,
    }

    #[test]
    fn compact_timestamps_are_numbers_in_binary_and_rfc_3339_in_json() {
        let at = DateTime::from_timestamp(1_790_000_000, 123_456_789).unwrap();
        for maybe in [None, Some(at), DateTime::from_timestamp(-1, 0)] {
            let value = Stamped { at, maybe };
            let bytes = crate::codec::to_vec(&value).unwrap();
            assert!(bytes.len() <= 1 + 9 + 5 + 1 + 9 + 5, "{bytes:?}");
            assert_eq!(crate::codec::from_slice::<Stamped>(&bytes).unwrap(), value);
            let json = serde_json::to_value(&value).unwrap();
            assert_eq!(json["at"], "2026-09-21T14:13:20.123456789Z");
            assert_eq!(serde_json::from_value::<Stamped>(json).unwrap(), value);
        }
    }

    #[test]
    fn a_compact_timestamp_out_of_range_is_an_error_not_a_panic() {
        let bytes = crate::codec::to_vec(&(i64::MAX, 0u32, None::<(i64, u32)>)).unwrap();
        let e = crate::codec::from_slice::<Stamped>(&bytes).unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e}");
    }

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
