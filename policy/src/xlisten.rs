//! The machine-readable form of a listener row: `struct xlistenq`, an array
//! of which `kern.ipc.listenq.xlisteners` returns (like net.inet.tcp.pcblist
//! returns xinpcb). The layout is ABI: only append fields, bump the version.

use crate::latency::BUCKETS;
use crate::registry::{Local, Proto, Row};

pub const XLISTENQ_VERSION: u32 = 1;

pub const XL_PROTO_TCP4: u8 = 1;
pub const XL_PROTO_TCP6: u8 = 2;
pub const XL_PROTO_STREAM: u8 = 3;
pub const XL_PROTO_SEQPACKET: u8 = 4;

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XListenq {
    /// sizeof(struct xlistenq), so readers can detect a newer layout.
    pub xl_len: u32,
    pub xl_version: u32,
    pub xl_id: u64,
    pub xl_proto: u8,
    pub _pad0: u8,
    /// Local port in host byte order (0 for local sockets).
    pub xl_lport: u16,
    pub xl_backlog: i32,
    /// 4 bytes for tcp4, 16 for tcp6, a NUL-padded path for local sockets.
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
    /// Accept latency histogram: bucket i counts [2^(i-1), 2^i) us.
    pub xl_lat: [u64; BUCKETS],
}

impl XListenq {
    pub fn from_row(r: &Row) -> XListenq {
        let mut laddr = [0u8; 64];
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
                if let (Some(d), Some(s)) = (laddr.get_mut(..n), path.get(..n)) {
                    d.copy_from_slice(s);
                }
            }
            Local::Unknown => {}
        }
        let (filter, held) = match &r.filter {
            Some(f) => (f.name, f.held),
            None => ([0; 16], 0),
        };
        XListenq {
            xl_len: core::mem::size_of::<XListenq>() as u32,
            xl_version: XLISTENQ_VERSION,
            xl_id: r.id,
            xl_proto: match r.proto {
                Proto::Tcp4 => XL_PROTO_TCP4,
                Proto::Tcp6 => XL_PROTO_TCP6,
                Proto::LocalStream => XL_PROTO_STREAM,
                Proto::LocalSeqpacket => XL_PROTO_SEQPACKET,
            },
            _pad0: 0,
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
            xl_lat: *r.latency.buckets(),
        }
    }

    /// The bytes handed to SYSCTL_OUT.
    pub fn as_bytes(&self) -> [u8; core::mem::size_of::<XListenq>()] {
        let mut out = [0u8; core::mem::size_of::<XListenq>()];
        let mut at = 0usize;
        let mut put = |b: &[u8]| {
            if let Some(d) = out.get_mut(at..at + b.len()) {
                d.copy_from_slice(b);
            }
            at += b.len();
        };
        put(&self.xl_len.to_ne_bytes());
        put(&self.xl_version.to_ne_bytes());
        put(&self.xl_id.to_ne_bytes());
        put(&[self.xl_proto, self._pad0]);
        put(&self.xl_lport.to_ne_bytes());
        put(&self.xl_backlog.to_ne_bytes());
        put(&self.xl_laddr);
        put(&self.xl_qlimit.to_ne_bytes());
        put(&self.xl_qlen.to_ne_bytes());
        put(&self.xl_incqlen.to_ne_bytes());
        put(&self.xl_held.to_ne_bytes());
        put(&self.xl_accepted.to_ne_bytes());
        put(&self.xl_overflows.to_ne_bytes());
        put(&self.xl_evicted.to_ne_bytes());
        put(&self.xl_filter);
        for b in &self.xl_lat {
            put(&b.to_ne_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_has_no_hidden_padding() {
        // as_bytes() writes the fields back to back; that equals the repr(C)
        // layout only if the compiler inserted no padding.
        let fields = 4 + 4 + 8 + 1 + 1 + 2 + 4 + 64 + 4 * 4 + 8 * 3 + 16 + 8 * BUCKETS;
        assert_eq!(core::mem::size_of::<XListenq>(), fields);
        assert_eq!(core::mem::size_of::<XListenq>() % 8, 0);
    }
}
