//! The "no credential named ..." message: the closest few names and how
//! many there are, never the whole list (10,000 names are 789 KB of
//! stderr).

/// Up to this many configured names are listed in full.
const LIST_ALL_UP_TO: usize = 5;
/// At most this many suggestions.
const SUGGEST: usize = 3;
/// The asked name is echoed at most this long.
const ECHO_CHARS: usize = 64;

/// The message for `name`, which is none of `known`.
pub fn unknown<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    let mut known: Vec<&str> = known.into_iter().collect();
    known.sort_unstable();
    let shown = echo(name);
    if known.is_empty() {
        return format!("no credential named {shown} (none is configured)");
    }
    if known.len() <= LIST_ALL_UP_TO {
        return format!(
            "no credential named {shown} (configured: {})",
            known.join(", ")
        );
    }
    let mut close: Vec<(usize, &str)> = known
        .iter()
        .filter_map(|k| {
            let d = distance(name, k)?;
            let limit = (k.chars().count() / 3).max(2);
            (d <= limit || k.starts_with(name) || name.starts_with(k)).then_some((d, *k))
        })
        .collect();
    close.sort_unstable();
    close.truncate(SUGGEST);
    let count = known.len();
    if close.is_empty() {
        return format!(
            "no credential named {shown} ({count} are configured; `credcache list` shows them)"
        );
    }
    let names: Vec<&str> = close.iter().map(|(_, k)| *k).collect();
    format!(
        "no credential named {shown}: did you mean {}? ({count} are configured; `credcache list` shows them)",
        names.join(", ")
    )
}

/// The name quoted, cut to [`ECHO_CHARS`] characters.
fn echo(name: &str) -> String {
    if name.chars().count() <= ECHO_CHARS {
        return format!("{name:?}");
    }
    let cut: String = name.chars().take(ECHO_CHARS).collect();
    format!("{cut:?}... ({} bytes)", name.len())
}

/// Levenshtein distance, or `None` when the lengths alone put it past any
/// limit worth suggesting (long names are not compared character by
/// character against 10,000 others).
fn distance(a: &str, b: &str) -> Option<usize> {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.len().abs_diff(b.len()) > a.len().max(b.len()) / 3 + 2 || a.len().max(b.len()) > 256 {
        return None;
    }
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            let next = (row[j] + 1).min(row[j + 1] + 1).min(prev + cost);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    Some(row[b.len()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_names_are_listed_in_full() {
        assert_eq!(
            unknown("nope", ["gcp", "corp"]),
            "no credential named \"nope\" (configured: corp, gcp)"
        );
        assert_eq!(
            unknown("x", []),
            "no credential named \"x\" (none is configured)"
        );
    }

    #[test]
    fn many_names_give_the_closest_and_the_count() {
        let names: Vec<String> = (0..10_000).map(|i| format!("cred-{i:05}")).collect();
        let mut all: Vec<&str> = names.iter().map(String::as_str).collect();
        all.push("gcp");
        let m = unknown("gpc", all.iter().copied());
        assert_eq!(
            m,
            "no credential named \"gpc\": did you mean gcp? \
             (10001 are configured; `credcache list` shows them)"
        );
        let m = unknown("cred-0000", all.iter().copied());
        assert!(
            m.contains("did you mean cred-00000, cred-00001, cred-00002?"),
            "{m}"
        );
        assert!(m.len() < 200, "{m}");
        let m = unknown("something-else-entirely", all.iter().copied());
        assert!(m.contains("10001 are configured"), "{m}");
        assert!(!m.contains("cred-"), "{m}");
    }

    #[test]
    fn a_huge_name_is_not_echoed_whole() {
        let long = "a".repeat(100_000);
        let m = unknown(&long, ["gcp", "corp"]);
        assert!(m.len() < 200, "{m}");
        assert!(m.contains("(100000 bytes)"), "{m}");
    }
}
