//! What `/proc` says about a process: resident memory, open descriptors,
//! CPU time; and the size of a directory tree. Linux only, like the
//! benchmark's numbers.

use std::path::Path;
use std::time::Duration;

/// Clock ticks per second in `/proc/PID/stat` (`USER_HZ`, fixed at 100 in
/// the Linux ABI whatever the kernel's own tick rate).
const USER_HZ: u64 = 100;

/// Resident set size in KiB (`VmRSS`), if the process exists.
pub fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    vm_rss_kb(&status)
}

/// Anonymous resident memory in KiB (`RssAnon`): the heap and stacks,
/// without the pages of the binary and its libraries, whose count follows
/// what the page cache holds (a freshly copied binary shows a megabyte
/// more) rather than what the program does.
pub fn rss_anon_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status_field(&status, "RssAnon:")
}

/// Threads the process runs (`Threads`).
pub fn threads(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status_field(&status, "Threads:")
}

/// The `VmRSS:` line of a `/proc/PID/status` text.
fn vm_rss_kb(status: &str) -> Option<u64> {
    status_field(status, "VmRSS:")
}

/// The number after `field` in a `/proc/PID/status` text.
fn status_field(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Open file descriptors (entries of `/proc/PID/fd`).
pub fn open_fds(pid: u32) -> Option<u64> {
    let entries = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(entries.count() as u64)
}

/// User plus system CPU time the process has used, all threads together.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat_cpu(&stat)
}

/// CPU time of this process.
pub fn own_cpu_time() -> Option<Duration> {
    cpu_time(std::process::id())
}

/// `utime + stime` from a `/proc/PID/stat` line. The command name (field 2)
/// may hold spaces and parentheses, so fields are counted after its last `)`.
fn stat_cpu(stat: &str) -> Option<Duration> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After the name: state is field 3; utime and stime are fields 14 and 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 1000 / USER_HZ))
}

/// Bytes of the regular files under `dir` (what `du --apparent-size` says).
pub fn tree_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => tree_bytes(&entry.path()),
            Ok(t) if t.is_file() => entry.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_rss() {
        let status = "Name:\tcredcached\nVmPeak:\t  99999 kB\nVmRSS:\t    5120 kB\nThreads:\t3\n";
        assert_eq!(vm_rss_kb(status), Some(5120));
        assert_eq!(vm_rss_kb("Name:\tx\n"), None);
        assert_eq!(status_field(status, "Threads:"), Some(3));
    }

    #[test]
    fn reads_cpu_time_past_a_tricky_name() {
        let stat =
            "4242 (cred (x) d) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1 2 3";
        assert_eq!(stat_cpu(stat), Some(Duration::from_secs(3)));
        assert_eq!(stat_cpu("garbage"), None);
    }

    #[test]
    fn this_process_is_visible() {
        let me = std::process::id();
        assert!(rss_kb(me).unwrap() > 0);
        let anon = rss_anon_kb(me).unwrap();
        assert!(anon > 0 && anon < rss_kb(me).unwrap());
        assert!(open_fds(me).unwrap() >= 3);
        assert!(threads(me).unwrap() >= 1);
        assert!(own_cpu_time().is_some());
        assert_eq!(rss_kb(u32::MAX), None);
    }

    #[test]
    fn sizes_a_tree() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), [0u8; 10]).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/b"), [0u8; 5]).unwrap();
        assert_eq!(tree_bytes(dir.path()), 15);
        assert_eq!(tree_bytes(&dir.path().join("missing")), 0);
    }
}
