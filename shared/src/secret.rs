//! A string that must never be printed: tokens and anything derived from
//! them. `Debug` and `Display` print `[redacted]`, the bytes are zeroed
//! when the last copy is dropped, and reading the value takes an explicit
//! `expose()`.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroize;

/// A secret string. Serializes as the plain string (it has to cross the
/// socket), but can never be formatted by accident.
///
/// Copies share one buffer: the daemon hands out its cached token with
/// every answer, and copying it, then zeroing the copy byte by byte, cost
/// each cached `get` an allocation and two passes over the token (issue
/// 15). The buffer is zeroed when the last copy goes.
#[derive(Clone)]
pub struct Secret(Arc<Zeroed>);

/// The one buffer behind a [`Secret`] and its copies.
struct Zeroed(String);

impl Drop for Zeroed {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(Arc::new(Zeroed(value.into())))
    }

    /// The value itself. Every call site is a place a token leaves the
    /// type system's protection: keep them few and obvious.
    pub fn expose(&self) -> &str {
        &self.0.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.0.is_empty()
    }

    /// Whether `other` is a copy of this very secret (the same buffer),
    /// not merely an equal one: a check that costs no pass over the bytes.
    pub fn is_copy_of(&self, other: &Secret) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.expose())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_never_shows_the_value() {
        let s = Secret::new("ya29.very-secret");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(&s)), "Some([redacted])");
        assert_eq!(s.expose(), "ya29.very-secret");
    }

    #[test]
    fn copies_share_one_buffer_and_compare_by_value() {
        let s = Secret::new("ya29.very-secret");
        let copy = s.clone();
        assert!(std::ptr::eq(s.expose(), copy.expose()));
        assert_eq!(s, copy);
        assert_eq!(s, Secret::new("ya29.very-secret"));
        assert_ne!(s, Secret::new("ya29.other"));
        assert!(copy.is_copy_of(&s));
        assert!(!s.is_copy_of(&Secret::new("ya29.very-secret")));
        drop(s);
        assert_eq!(copy.expose(), "ya29.very-secret");
    }
}
