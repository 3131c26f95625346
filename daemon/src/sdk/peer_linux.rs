//! Who is on the other end of a loopback TCP connection, from the kernel's
//! socket tables. The kernel is asked for exactly the peer's socket over
//! `NETLINK_SOCK_DIAG` (as `ss` asks), an exact lookup; where that gives
//! no answer (a dual-stack peer socket, netlink refused), the peer's
//! socket is the row of `/proc/net/tcp` (or `tcp6`) whose local address
//! is the peer's and whose remote address is ours. (Reading those files
//! walks the kernel's whole hash table: 4 to 8 ms here, on every
//! connection, where the netlink question takes microseconds.) Its `uid` column is the owner of that
//! socket; its inode, found among `/proc/PID/fd`, names the process
//! ([`pid_of`], for a refusal's log line only; only the user's own
//! processes are visible).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::Peer;

/// The peer of the connection from `peer` to `local`, if the tables show it.
pub fn lookup(peer: SocketAddr, local: SocketAddr) -> Option<Peer> {
    if let Some((uid, inode)) = sock_diag(peer, local) {
        return Some(Peer { uid, inode });
    }
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        if let Some((uid, inode)) = find(&text, peer, local) {
            return Some(Peer { uid, inode });
        }
    }
    None
}

/// `SOCK_DIAG_BY_FAMILY`, `NLMSG_ERROR`, `NLM_F_REQUEST`.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
/// `struct nlmsghdr` + `struct inet_diag_req_v2`.
const REQUEST_LEN: usize = 16 + 56;
/// Where `idiag_uid` and `idiag_inode` lie in an answer: after the
/// `nlmsghdr` (16), family/state/timer/retrans (4), the `inet_diag_sockid`
/// (48), `idiag_expires`, `idiag_rqueue`, `idiag_wqueue` (12).
const UID_AT: usize = 16 + 4 + 48 + 12;

/// The `(uid, inode)` of the IPv4 TCP socket at `peer` connected to
/// `local`, asked of the kernel by its four-tuple; `None` when it is not
/// an IPv4 pair or the kernel does not say.
fn sock_diag(peer: SocketAddr, local: SocketAddr) -> Option<(u32, u64)> {
    use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketType, netlink};
    let (SocketAddr::V4(peer), SocketAddr::V4(local)) = (peer, local) else {
        return None;
    };
    let mut req = [0u8; REQUEST_LEN];
    req[0..4].copy_from_slice(&(REQUEST_LEN as u32).to_ne_bytes());
    req[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    // inet_diag_req_v2: family, protocol, ext, pad, states (all).
    req[16] = libc_af_inet();
    req[17] = 6; // IPPROTO_TCP
    req[20..24].copy_from_slice(&u32::MAX.to_ne_bytes());
    // inet_diag_sockid: the peer socket's own view (its port is "source").
    let id = &mut req[24..72];
    id[0..2].copy_from_slice(&peer.port().to_be_bytes());
    id[2..4].copy_from_slice(&local.port().to_be_bytes());
    id[4..8].copy_from_slice(&peer.ip().octets());
    id[20..24].copy_from_slice(&local.ip().octets());
    // No interface; INET_DIAG_NOCOOKIE.
    id[40..48].copy_from_slice(&[0xff; 8]);

    let fd = rustix::net::socket(
        AddressFamily::NETLINK,
        SocketType::DGRAM,
        Some(netlink::SOCK_DIAG),
    )
    .ok()?;
    let timeout = Some(std::time::Duration::from_secs(1));
    rustix::net::sockopt::set_socket_timeout(&fd, rustix::net::sockopt::Timeout::Recv, timeout)
        .ok()?;
    rustix::net::send(&fd, &req, SendFlags::empty()).ok()?;
    let mut answer = [0u8; 512];
    let (len, _) = rustix::net::recv(&fd, &mut answer, RecvFlags::empty()).ok()?;
    let answer = &answer[..len.min(answer.len())];
    let kind = u16::from_ne_bytes(answer.get(4..6)?.try_into().ok()?);
    if kind == NLMSG_ERROR || kind != SOCK_DIAG_BY_FAMILY {
        return None;
    }
    let word = |at: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(answer.get(at..at + 4)?.try_into().ok()?))
    };
    Some((word(UID_AT)?, u64::from(word(UID_AT + 4)?)))
}

/// `AF_INET`, as `inet_diag_req_v2.sdiag_family` wants it.
fn libc_af_inet() -> u8 {
    rustix::net::AddressFamily::INET.as_raw() as u8
}

/// The `(uid, inode)` of the row for the socket at `peer` connected to
/// `local`, in the text of a `/proc/net/tcp*` table.
fn find(table: &str, peer: SocketAddr, local: SocketAddr) -> Option<(u32, u64)> {
    table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 10 {
            return None;
        }
        let here = parse_addr(cols[1])?;
        let there = parse_addr(cols[2])?;
        if !same(here, peer) || !same(there, local) {
            return None;
        }
        Some((cols[7].parse().ok()?, cols[9].parse().ok()?))
    })
}

/// Equal addresses, an IPv4-mapped IPv6 address equal to its IPv4 one.
fn same(a: SocketAddr, b: SocketAddr) -> bool {
    let canon = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    a.port() == b.port() && canon(a.ip()) == canon(b.ip())
}

/// `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6): each 32-bit
/// word is printed in the machine's byte order.
fn parse_addr(field: &str) -> Option<SocketAddr> {
    let (ip, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |hex: &str| u32::from_str_radix(hex, 16).ok().map(u32::to_ne_bytes);
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(ip)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(&ip[i * 8..i * 8 + 8])?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The process holding socket `inode`, if it is one we may look at.
pub fn pid_of(inode: u64) -> Option<u32> {
    let target = format!("socket:[{inode}]");
    let procs = std::fs::read_dir("/proc").ok()?;
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == target.as_str()) {
                return Some(pid);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_matched_by_both_ends() {
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let v4 = |a: SocketAddr| {
            let SocketAddr::V4(a) = a else { panic!() };
            format!(
                "{:08X}:{:04X}",
                u32::from_ne_bytes(a.ip().octets()),
                a.port()
            )
        };
        let table = format!(
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
             0: {} {} 01 00000000:00000000 00:00000000 00000000  1000        0 111 1\n\
             1: {} {} 01 00000000:00000000 00:00000000 00000000  1001        0 222 1\n",
            v4(local),
            v4(peer),
            v4(peer),
            v4(local),
        );
        assert_eq!(find(&table, peer, local), Some((1001, 222)));
        assert_eq!(find(&table, local, peer), Some((1000, 111)));
        let other: SocketAddr = "127.0.0.1:40001".parse().unwrap();
        assert_eq!(find(&table, other, local), None);
    }

    #[test]
    fn netlink_and_the_proc_table_agree() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let (peer, local) = (server.peer_addr().unwrap(), server.local_addr().unwrap());
        let by_netlink = sock_diag(peer, local).expect("the kernel answers sock_diag");
        let text = std::fs::read_to_string("/proc/net/tcp").unwrap();
        assert_eq!(Some(by_netlink), find(&text, peer, local));
        // The other end is another socket, with another inode.
        assert_ne!(sock_diag(local, peer).map(|f| f.1), Some(by_netlink.1));
        // No such connection: no answer.
        let gone: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(sock_diag(gone, local), None);
        drop(client);
    }

    #[test]
    fn a_real_connection_is_found_with_our_uid() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let found = lookup(server.peer_addr().unwrap(), server.local_addr().unwrap())
            .expect("the client socket is in /proc/net/tcp");
        assert_eq!(found.uid, rustix::process::getuid().as_raw());
        assert_eq!(pid_of(found.inode), Some(std::process::id()));
        drop(client);
    }

    #[test]
    fn mapped_addresses_equal_their_ipv4_form() {
        let v4: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:1".parse().unwrap();
        assert!(same(v4, mapped));
        assert!(!same(v4, "[::ffff:127.0.0.2]:1".parse().unwrap()));
        assert_eq!(
            parse_addr("0000000000000000FFFF00000100007F:0016"),
            Some("[::ffff:127.0.0.1]:22".parse().unwrap())
        );
    }
}
