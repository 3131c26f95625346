//! Who is on the other end of a loopback TCP connection on Windows. The
//! TCP connection table (`GetExtendedTcpTable`, with owning pids) has a
//! row for the peer's socket: its local end is the peer's address and its
//! remote end is ours (the daemon's own accepted socket is the mirror row,
//! and is not taken). That row's pid names the process; the user SID of
//! its token is compared with the daemon's.
//!
//! Wine's table gives every row pid 0, as may a Windows that hides other
//! processes: a pid of 0 is "peer unknown", and [`works`] finds out once,
//! on a connection of our own, whether this system names peers at all.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::OnceLock;

use credcache_shared::windows::{current_user_sid, process_user_sid};
use windows_sys::Win32::Foundation::{ERROR_INSUFFICIENT_BUFFER, NO_ERROR};
use windows_sys::Win32::NetworkManagement::IpHelper::{
    GetExtendedTcpTable, TCP_TABLE_OWNER_PID_CONNECTIONS,
};

use super::Peer;

/// `AF_INET` and `AF_INET6`, the two tables asked for.
const AF_INET: u32 = 2;
const AF_INET6: u32 = 23;
/// Bytes of one `MIB_TCPROW_OWNER_PID` (six u32s) and one
/// `MIB_TCP6ROW_OWNER_PID` (two 16-byte addresses and six u32s); the rows
/// follow the table's u32 `dwNumEntries`.
const ROW4: usize = 24;
const ROW6: usize = 56;

/// The peer of the connection from `peer` to `local`, if the table names
/// its process.
pub fn lookup(peer: SocketAddr, local: SocketAddr) -> Option<Peer> {
    let pid = owning_pid(peer, local)?;
    let same_user = match (process_user_sid(pid), our_sid()) {
        (Ok(theirs), Some(ours)) => theirs == *ours,
        // A process whose token we may not read is not ours to serve.
        _ => false,
    };
    Some(Peer { pid, same_user })
}

/// Whether this system names the peer of a loopback connection: a
/// connection of our own must come back as this process, of our user.
/// Asked once, and kept.
pub fn works() -> bool {
    static WORKS: OnceLock<bool> = OnceLock::new();
    *WORKS.get_or_init(|| {
        let ok = self_check().is_some_and(|p| p.pid == std::process::id() && p.same_user);
        if !ok {
            tracing::info!(
                "this system's TCP table names no owning process: the Google SDK endpoint is off"
            );
        }
        ok
    })
}

/// Our own connection, looked up as an SDK's would be.
fn self_check() -> Option<Peer> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).ok()?;
    let client = TcpStream::connect(listener.local_addr().ok()?).ok()?;
    let (_server, peer) = listener.accept().ok()?;
    debug_assert_eq!(Some(peer), client.local_addr().ok());
    lookup(peer, listener.local_addr().ok()?)
}

/// The daemon's own user SID, read once.
fn our_sid() -> Option<&'static String> {
    static SID: OnceLock<Option<String>> = OnceLock::new();
    SID.get_or_init(|| current_user_sid().ok()).as_ref()
}

/// The nonzero owning pid of the peer's socket, from the IPv4 table and
/// then the IPv6 one (a dual-stack socket is listed there, its addresses
/// IPv4-mapped).
fn owning_pid(peer: SocketAddr, local: SocketAddr) -> Option<u32> {
    [AF_INET, AF_INET6]
        .into_iter()
        .filter_map(|family| find(&table(family)?, family, peer, local))
        .find(|&pid| pid != 0)
}

/// The whole connection table of one address family, as the bytes
/// `GetExtendedTcpTable` wrote (in u32s, for the table's alignment).
fn table(family: u32) -> Option<Vec<u32>> {
    let mut size = 0u32;
    // The table can grow between the size query and the read: try again
    // a few times with the size it asks for.
    for _ in 0..4 {
        let mut buf = vec![0u32; (size as usize).div_ceil(4).max(1)];
        let mut len = (buf.len() * 4) as u32;
        // SAFETY: `buf` holds `len` bytes, 4-aligned; the call writes at
        // most `len` and says how many it needs otherwise.
        let rc = unsafe {
            GetExtendedTcpTable(
                buf.as_mut_ptr().cast(),
                &mut len,
                0,
                family,
                TCP_TABLE_OWNER_PID_CONNECTIONS,
                0,
            )
        };
        match rc {
            NO_ERROR => return Some(buf),
            ERROR_INSUFFICIENT_BUFFER => size = len,
            _ => return None,
        }
    }
    None
}

/// In a table of `family` (`buf` as the call wrote it), the owning pid of
/// the row whose local end is `peer` and whose remote end is `local`;
/// a row with a nonzero pid first, if there are several.
fn find(buf: &[u32], family: u32, peer: SocketAddr, local: SocketAddr) -> Option<u32> {
    let bytes: Vec<u8> = buf.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let count = u32::from_ne_bytes(bytes.get(0..4)?.try_into().ok()?) as usize;
    let (row_len, parse): (usize, fn(&[u8]) -> Row) = if family == AF_INET {
        (ROW4, row4)
    } else {
        (ROW6, row6)
    };
    let mut found = None;
    for i in 0..count {
        let Some(raw) = bytes.get(4 + i * row_len..4 + (i + 1) * row_len) else {
            break;
        };
        let row = parse(raw);
        if same(row.local, peer) && same(row.remote, local) {
            if row.pid != 0 {
                return Some(row.pid);
            }
            found = Some(0);
        }
    }
    found
}

/// One row: its two ends and its owning process.
struct Row {
    local: SocketAddr,
    remote: SocketAddr,
    pid: u32,
}

fn u32_at(raw: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(raw[at..at + 4].try_into().expect("4 bytes"))
}

/// A port as the table holds it: network byte order in the u32's first
/// two bytes.
fn port_at(raw: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([raw[at], raw[at + 1]])
}

/// `MIB_TCPROW_OWNER_PID`: state, local address and port, remote address
/// and port, pid; addresses in network byte order.
fn row4(raw: &[u8]) -> Row {
    let addr = |at: usize| Ipv4Addr::new(raw[at], raw[at + 1], raw[at + 2], raw[at + 3]);
    Row {
        local: SocketAddr::from((addr(4), port_at(raw, 8))),
        remote: SocketAddr::from((addr(12), port_at(raw, 16))),
        pid: u32_at(raw, 20),
    }
}

/// `MIB_TCP6ROW_OWNER_PID`: local address, scope and port, remote
/// address, scope and port, state, pid.
fn row6(raw: &[u8]) -> Row {
    let addr = |at: usize| {
        let octets: [u8; 16] = raw[at..at + 16].try_into().expect("16 bytes");
        Ipv6Addr::from(octets)
    };
    Row {
        local: SocketAddr::from((addr(0), port_at(raw, 20))),
        remote: SocketAddr::from((addr(24), port_at(raw, 44))),
        pid: u32_at(raw, 52),
    }
}

/// The same end, an IPv4-mapped IPv6 address being its IPv4 one.
fn same(a: SocketAddr, b: SocketAddr) -> bool {
    let canonical = |ip: IpAddr| ip.to_canonical();
    a.port() == b.port() && canonical(a.ip()) == canonical(b.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: &str = "127.0.0.1:50123";
    const LOCAL: &str = "127.0.0.1:41000";

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// A table buffer as `GetExtendedTcpTable` writes it: the count, then
    /// the rows' bytes.
    fn table_of(rows: &[Vec<u8>]) -> Vec<u32> {
        let mut bytes = (rows.len() as u32).to_ne_bytes().to_vec();
        for row in rows {
            bytes.extend(row);
        }
        bytes
            .chunks(4)
            .map(|c| u32::from_ne_bytes(c.try_into().unwrap()))
            .collect()
    }

    fn port_bytes(port: u16) -> [u8; 4] {
        let [hi, lo] = port.to_be_bytes();
        [hi, lo, 0, 0]
    }

    fn v4(local: &str, remote: &str, pid: u32) -> Vec<u8> {
        let (SocketAddr::V4(l), SocketAddr::V4(r)) = (addr(local), addr(remote)) else {
            unreachable!()
        };
        let mut row = 5u32.to_ne_bytes().to_vec(); // MIB_TCP_STATE_ESTAB
        row.extend(l.ip().octets());
        row.extend(port_bytes(l.port()));
        row.extend(r.ip().octets());
        row.extend(port_bytes(r.port()));
        row.extend(pid.to_ne_bytes());
        assert_eq!(row.len(), ROW4);
        row
    }

    fn v6(local: SocketAddr, remote: SocketAddr, pid: u32) -> Vec<u8> {
        let octets = |a: SocketAddr| match a.ip() {
            IpAddr::V4(ip) => ip.to_ipv6_mapped().octets(),
            IpAddr::V6(ip) => ip.octets(),
        };
        let mut row = octets(local).to_vec();
        row.extend(0u32.to_ne_bytes());
        row.extend(port_bytes(local.port()));
        row.extend(octets(remote));
        row.extend(0u32.to_ne_bytes());
        row.extend(port_bytes(remote.port()));
        row.extend(5u32.to_ne_bytes());
        row.extend(pid.to_ne_bytes());
        assert_eq!(row.len(), ROW6);
        row
    }

    #[test]
    fn the_peer_row_is_the_one_whose_local_end_is_the_peer() {
        let table = table_of(&[
            // The daemon's own accepted socket: the mirror row, not taken.
            v4(LOCAL, PEER, 111),
            v4("127.0.0.1:50124", LOCAL, 222),
            v4(PEER, LOCAL, 333),
        ]);
        assert_eq!(find(&table, AF_INET, addr(PEER), addr(LOCAL)), Some(333));
        assert_eq!(
            find(&table, AF_INET, addr("127.0.0.1:50125"), addr(LOCAL)),
            None
        );
    }

    #[test]
    fn a_row_without_a_pid_is_found_but_names_no_process() {
        // Wine's table: every pid 0. A nonzero row for the same pair wins.
        let table = table_of(&[v4(PEER, LOCAL, 0)]);
        assert_eq!(find(&table, AF_INET, addr(PEER), addr(LOCAL)), Some(0));
        let table = table_of(&[v4(PEER, LOCAL, 0), v4(PEER, LOCAL, 444)]);
        assert_eq!(find(&table, AF_INET, addr(PEER), addr(LOCAL)), Some(444));
    }

    #[test]
    fn a_dual_stack_peer_is_found_in_the_ipv6_table() {
        let table = table_of(&[
            v6(addr(LOCAL), addr(PEER), 111),
            v6(addr(PEER), addr(LOCAL), 555),
        ]);
        assert_eq!(find(&table, AF_INET6, addr(PEER), addr(LOCAL)), Some(555));
        let table = table_of(&[v6(addr("[::1]:50123"), addr("[::1]:41000"), 666)]);
        assert_eq!(
            find(&table, AF_INET6, addr("[::1]:50123"), addr("[::1]:41000")),
            Some(666)
        );
        assert_eq!(find(&table, AF_INET6, addr(PEER), addr(LOCAL)), None);
    }

    #[test]
    fn a_short_table_is_read_no_further_than_it_goes() {
        // A count larger than the rows present (a table cut short).
        let mut table = table_of(&[v4(PEER, LOCAL, 777)]);
        table[0] = 9;
        assert_eq!(find(&table, AF_INET, addr(PEER), addr(LOCAL)), Some(777));
        assert_eq!(find(&[], AF_INET, addr(PEER), addr(LOCAL)), None);
    }

    #[test]
    fn our_own_sid_is_read() {
        let sid = our_sid().expect("the daemon's own SID");
        assert!(sid.starts_with("S-1-"), "{sid}");
    }

    #[test]
    fn our_own_connection_is_ours_or_the_check_is_off() {
        // Windows names this process, of our user; Wine's table names
        // none (pid 0), and then the check must be off, not guessed.
        match self_check() {
            Some(peer) => {
                assert_eq!(peer.pid, std::process::id());
                assert!(peer.same_user);
                assert!(works());
            }
            None => assert!(!works()),
        }
    }
}
