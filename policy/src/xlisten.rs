//! The machine-readable form of a listener row: `struct xlistenq`, an array
//! of which `kern.ipc.listenq.xlisteners` returns (like net.inet.tcp.pcblist
//! returns xinpcb). The C declaration is the public header listenq.h at the
//! top of the repository (installed with the module); policy/tests/header.rs
//! checks that the two agree byte for byte. The layout is ABI: only append
//! fields, bump the version.

use zerocopy::{Immutable, IntoBytes};

use crate::latency::BUCKETS;
use crate::registry::{Local, Proto, Row, SUN_PATH_LEN};

pub const XLISTENQ_VERSION: u32 = 2;

pub const XL_PROTO_TCP4: u8 = 1;
pub const XL_PROTO_TCP6: u8 = 2;
pub const XL_PROTO_STREAM: u8 = 3;
pub const XL_PROTO_SEQPACKET: u8 = 4;
/// An AF_INET6 TCP listener that also takes IPv4 (no IPV6_V6ONLY), which
/// netstat(1) calls tcp46; its xl_laddr is an in6_addr, as for tcp6.
/// Appended in 0.x: a reader older than it sees a value it does not know.
pub const XL_PROTO_TCP46: u8 = 5;

/// xl_flags: the accept filter is not listenq's (a stock accf module's);
/// listenq does not see what it holds, so xl_held is 0.
pub const XL_F_KFILTER: u8 = 0x01;

/// xl_evflags: the filter evicts fairly (`evict=fair`).
pub const XL_EV_FAIR: u32 = 0x01;

/// `IntoBytes` is derived only for a struct without padding: the bytes a
/// reader gets are these fields and nothing uninitialized, as the header
/// promises (zerocopy checks it when this compiles).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, IntoBytes, Immutable)]
pub struct XListenq {
    /// sizeof(struct xlistenq), so readers can detect a newer layout.
    pub xl_len: u32,
    pub xl_version: u32,
    /// The table's generation when it was read: it changes whenever a
    /// listener comes or goes, so two reads with the same xl_gen saw the
    /// same set of listeners.
    pub xl_gen: u64,
    pub xl_id: u64,
    pub xl_proto: u8,
    pub xl_flags: u8,
    /// Local port in host byte order (0 for local sockets).
    pub xl_lport: u16,
    pub xl_backlog: i32,
    /// 4 bytes for tcp4, 16 for tcp6 and tcp46; for local sockets the
    /// path's first 64 bytes, NUL-padded (cut, without a NUL, when the
    /// path is 64 bytes or longer: xl_path has all of it).
    pub xl_laddr: [u8; 64],
    pub xl_qlimit: u32,
    pub xl_qlen: u32,
    pub xl_incqlen: u32,
    pub xl_held: u32,
    pub xl_accepted: u64,
    pub xl_overflows: u64,
    pub xl_evicted: u64,
    /// Accept filter name, NUL-padded; empty when none.
    pub xl_filter: [u8; 16],
    /// The listener's owner (its socket's credential): user id and jail
    /// id (0 for the host), as sockstat(1) shows them.
    pub xl_uid: u32,
    pub xl_jid: i32,
    /// Accept latency histogram in microseconds, measured in whole clock
    /// ticks (latency.rs): bucket 0 counts accepts within the tick the
    /// connection completed in, bucket i [2^(i-1), 2^i) us.
    pub xl_lat: [u64; BUCKETS],
    /// Appended in 0.x (xl_len tells): sources holding a connection, and
    /// XL_EV_* flags; evictions of the largest source's oldest (fair
    /// policy) and for a source's cap, both part of xl_evicted.
    pub xl_sources: u32,
    pub xl_evflags: u32,
    pub xl_evicted_fair: u64,
    pub xl_evicted_cap: u64,
    /// Appended in 0.x (xl_len tells): a local socket's whole path (up to
    /// sizeof(sun_path), 104 bytes), NUL-padded, without a NUL when it is
    /// 104 bytes long; all NUL for TCP.
    pub xl_path: [u8; SUN_PATH_LEN],
}

impl XListenq {
    pub fn from_row(r: &Row, gen: u64) -> XListenq {
        let mut laddr = [0u8; 64];
        let mut path_out = [0u8; SUN_PATH_LEN];
        let mut lport = 0;
        match &r.local {
            Local::Inet { addr, port } => {
                laddr[..4].copy_from_slice(addr);
                lport = *port;
            }
            Local::Inet6 { addr, port } => {
                laddr[..16].copy_from_slice(addr);
                lport = *port;
            }
            Local::Path { path, len } => {
                let n = usize::from(*len).min(path.len());
                if let (Some(d), Some(s)) = (path_out.get_mut(..n), path.get(..n)) {
                    d.copy_from_slice(s);
                }
                // Old readers' copy: what fits of it.
                let m = n.min(laddr.len());
                if let (Some(d), Some(s)) = (laddr.get_mut(..m), path.get(..m)) {
                    d.copy_from_slice(s);
                }
            }
            Local::Unknown => {}
        }
        let (filter, held, flags) = match &r.filter {
            Some(f) => (f.name, f.held, 0),
            None if r.kfilter[0] != 0 => (r.kfilter, 0, XL_F_KFILTER),
            None => ([0; 16], 0, 0),
        };
        XListenq {
            xl_len: core::mem::size_of::<XListenq>() as u32,
            xl_version: XLISTENQ_VERSION,
            xl_gen: gen,
            xl_id: r.id,
            xl_proto: match r.proto {
                Proto::Tcp4 => XL_PROTO_TCP4,
                Proto::Tcp6 => XL_PROTO_TCP6,
                Proto::Tcp46 => XL_PROTO_TCP46,
                Proto::LocalStream => XL_PROTO_STREAM,
                Proto::LocalSeqpacket => XL_PROTO_SEQPACKET,
            },
            xl_flags: flags,
            xl_lport: lport,
            xl_backlog: r.backlog,
            xl_laddr: laddr,
            xl_qlimit: r.qlimit,
            xl_qlen: r.qlen,
            xl_incqlen: r.incqlen,
            xl_held: held,
            xl_accepted: r.accepted,
            xl_overflows: r.overflows,
            xl_evicted: r.evicted,
            xl_filter: filter,
            xl_uid: r.owner.uid,
            xl_jid: r.owner.jid,
            xl_lat: *r.latency.buckets(),
            xl_sources: r.filter.map_or(0, |f| f.sources),
            xl_evflags: if r.filter.is_some_and(|f| f.fair) {
                XL_EV_FAIR
            } else {
                0
            },
            xl_evicted_fair: r.filter.map_or(0, |f| f.evicted_fair),
            xl_evicted_cap: r.filter.map_or(0, |f| f.evicted_cap),
            xl_path: path_out,
        }
    }

    /// The bytes handed to SYSCTL_OUT.
    /// The row as the sysctl hands it out: its bytes as they lie.
    pub fn bytes(&self) -> &[u8] {
        IntoBytes::as_bytes(self)
    }
}

/// Every field of struct xlistenq: (name, offset, size), in order; what
/// policy/tests/header.rs holds listenq.h to.
pub const FIELDS: [(&str, usize, usize); 27] = {
    use core::mem::{offset_of, size_of};
    type X = XListenq;
    [
        ("xl_len", offset_of!(X, xl_len), 4),
        ("xl_version", offset_of!(X, xl_version), 4),
        ("xl_gen", offset_of!(X, xl_gen), 8),
        ("xl_id", offset_of!(X, xl_id), 8),
        ("xl_proto", offset_of!(X, xl_proto), 1),
        ("xl_flags", offset_of!(X, xl_flags), 1),
        ("xl_lport", offset_of!(X, xl_lport), 2),
        ("xl_backlog", offset_of!(X, xl_backlog), 4),
        ("xl_laddr", offset_of!(X, xl_laddr), 64),
        ("xl_qlimit", offset_of!(X, xl_qlimit), 4),
        ("xl_qlen", offset_of!(X, xl_qlen), 4),
        ("xl_incqlen", offset_of!(X, xl_incqlen), 4),
        ("xl_held", offset_of!(X, xl_held), 4),
        ("xl_accepted", offset_of!(X, xl_accepted), 8),
        ("xl_overflows", offset_of!(X, xl_overflows), 8),
        ("xl_evicted", offset_of!(X, xl_evicted), 8),
        ("xl_filter", offset_of!(X, xl_filter), 16),
        ("xl_uid", offset_of!(X, xl_uid), 4),
        ("xl_jid", offset_of!(X, xl_jid), 4),
        ("xl_lat", offset_of!(X, xl_lat), 8 * BUCKETS),
        ("xl_sources", offset_of!(X, xl_sources), 4),
        ("xl_evflags", offset_of!(X, xl_evflags), 4),
        ("xl_evicted_fair", offset_of!(X, xl_evicted_fair), 8),
        ("xl_evicted_cap", offset_of!(X, xl_evicted_cap), 8),
        ("xl_path", offset_of!(X, xl_path), SUN_PATH_LEN),
        ("sizeof", size_of::<X>(), 0),
        ("XLISTENQ_NBUCKETS", BUCKETS, 0),
    ]
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::Histogram;
    use crate::registry::{FilterInfo, Owner};

    #[test]
    fn layout_has_no_hidden_padding() {
        // The header's offsets are the fields back to back, which the
        // repr(C) layout matches only without padding (which IntoBytes's
        // derive also refuses at compile time).
        let fields: usize = FIELDS.iter().take(FIELDS.len() - 2).map(|f| f.2).sum();
        assert_eq!(core::mem::size_of::<XListenq>(), fields);
        assert_eq!(core::mem::size_of::<XListenq>() % 8, 0);
        let mut at = 0;
        for (name, off, size) in FIELDS.iter().take(FIELDS.len() - 2) {
            assert_eq!(*off, at, "{name}");
            at += size;
        }
    }

    #[test]
    fn bytes_sit_at_the_field_offsets() {
        let mut name = [0u8; 16];
        name[..9].copy_from_slice(b"httpready");
        let mut lat = Histogram::default();
        lat.record(100);
        let r = Row {
            id: 0x1122,
            so: 1,
            proto: Proto::Tcp6,
            local: Local::Inet6 {
                addr: [9; 16],
                port: 443,
            },
            backlog: -1,
            qlimit: 5,
            qlen: 6,
            incqlen: 7,
            accepted: 8,
            overflows: 9,
            filter: Some(FilterInfo {
                name,
                held: 3,
                fair: true,
                sources: 2,
                evicted_fair: 7,
                evicted_cap: 1,
            }),
            kfilter: [0; 16],
            evicted: 10,
            latency: lat,
            owner: Owner { uid: 1001, jid: 4 },
            counts: Default::default(),
        };
        let x = XListenq::from_row(&r, 77);
        let b = x.bytes();
        let at = |f: &str| FIELDS.iter().find(|x| x.0 == f).unwrap().1;
        let u32_at = |o: usize| u32::from_ne_bytes(b[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_ne_bytes(b[o..o + 8].try_into().unwrap());
        assert_eq!(u32_at(at("xl_len")) as usize, b.len());
        assert_eq!(u32_at(at("xl_version")), XLISTENQ_VERSION);
        assert_eq!(u64_at(at("xl_gen")), 77);
        assert_eq!(u64_at(at("xl_id")), 0x1122);
        assert_eq!(b[at("xl_proto")], XL_PROTO_TCP6);
        assert_eq!(b[at("xl_flags")], 0);
        assert_eq!(
            u16::from_ne_bytes(b[at("xl_lport")..][..2].try_into().unwrap()),
            443
        );
        assert_eq!(u32_at(at("xl_backlog")) as i32, -1);
        assert_eq!(b[at("xl_laddr")..][..16], [9; 16]);
        assert_eq!(u32_at(at("xl_held")), 3);
        assert_eq!(u64_at(at("xl_evicted")), 10);
        assert_eq!(u32_at(at("xl_sources")), 2);
        assert_eq!(u32_at(at("xl_evflags")), XL_EV_FAIR);
        assert_eq!(u64_at(at("xl_evicted_fair")), 7);
        assert_eq!(u64_at(at("xl_evicted_cap")), 1);
        assert_eq!(&b[at("xl_filter")..][..9], b"httpready");
        assert_eq!(u32_at(at("xl_uid")), 1001);
        assert_eq!(u32_at(at("xl_jid")), 4);
        let lat: u64 = (0..BUCKETS).map(|i| u64_at(at("xl_lat") + 8 * i)).sum();
        assert_eq!(lat, 1);
        let mut k = r;
        k.filter = None;
        k.kfilter[..9].copy_from_slice(b"dataready");
        let x = XListenq::from_row(&k, 0);
        let b = x.bytes();
        assert_eq!(b[at("xl_flags")], XL_F_KFILTER);
        assert_eq!(&b[at("xl_filter")..][..9], b"dataready");
    }

    #[test]
    fn local_paths_are_whole_in_xl_path_and_cut_in_xl_laddr() {
        let at = |f: &str| FIELDS.iter().find(|x| x.0 == f).unwrap().1;
        let mut path = [0u8; SUN_PATH_LEN];
        for (i, c) in path.iter_mut().enumerate() {
            *c = b'a' + (i % 26) as u8;
        }
        let mut r = Row::new(
            1,
            1,
            Proto::LocalStream,
            Local::Path {
                path,
                len: SUN_PATH_LEN as u8,
            },
            1,
            Default::default(),
            Owner::default(),
        );
        let x = XListenq::from_row(&r, 0);
        let b = x.bytes();
        assert_eq!(b[at("xl_path")..][..SUN_PATH_LEN], path);
        assert_eq!(b[at("xl_laddr")..][..64], path[..64]);
        // A short path: NUL-padded in both.
        r.local = Local::Path { path, len: 5 };
        let x = XListenq::from_row(&r, 0);
        let b = x.bytes();
        assert_eq!(&b[at("xl_path")..][..6], b"abcde\0");
        assert!(b[at("xl_path") + 5..][..SUN_PATH_LEN - 5]
            .iter()
            .all(|&c| c == 0));
        assert_eq!(&b[at("xl_laddr")..][..6], b"abcde\0");
        // TCP: xl_path is all NUL; a dual-stack listener is XL_PROTO_TCP46.
        r.proto = Proto::Tcp46;
        r.local = Local::Inet6 {
            addr: [0; 16],
            port: 80,
        };
        let x = XListenq::from_row(&r, 0);
        let b = x.bytes();
        assert_eq!(b[at("xl_proto")], XL_PROTO_TCP46);
        assert!(b[at("xl_path")..][..SUN_PATH_LEN].iter().all(|&c| c == 0));
        assert_eq!(b.len(), at("xl_path") + SUN_PATH_LEN);
    }
}
