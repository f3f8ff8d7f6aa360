//! One worker process of the fuzzer (t_fuzz.rs): `ops` random operations
//! on a table of up to 16 descriptors, then one report datagram to the
//! parent and exit(0). It exits with another code only for a runner-level
//! invariant it checks itself: a listen queue longer than the kernel's
//! limits allow (EXIT_QLEN, EXIT_INCQLEN). Syscall errors are never
//! failures: most operations are meant to be refused.
//!
//! Reproducibility: operation `i` is drawn from its own generator, seeded
//! by the i-th value of the worker's main generator (seed, worker index),
//! so the sequence of operations and arguments is the same on every run,
//! whatever the syscalls returned; what an operation finds in the table
//! (and therefore does) depends on the interleaving with the other
//! workers. A prefix of a sequence is the sequence with fewer ops, which
//! is what makes bisecting OPS meaningful.
//!
//! Every operation is nonblocking (SOCK_NONBLOCK, MSG_DONTWAIT,
//! MSG_NOSIGNAL, SO_LINGER only with l_linger 0); sleeps are short and
//! counted; the loop ends at `ops` or the deadline.

use crate::fuzz_gen::{self as g, Buf, Rng};
use crate::net::{self, SockAddr, AF_INET, AF_INET6, AF_UNIX, LOOPBACK4, LOOPBACK6};
use crate::sock::{self, Kind, SOL_SOCKET};
use crate::sys::{self, Errno};
use crate::sysctl;
use core::ffi::CStr;

pub const SLOTS: usize = 16;
pub const PORTS: usize = 8;
pub const PORT_BASE: u16 = 23000;
pub const WORKERS: usize = 3;

/// The integer knobs a worker writes (sysctl_write), in the order its
/// draws pick from (part of every seed's sequence); the parent saves and
/// restores them all (t_fuzz.rs).
pub const KNOB_INTS: [&str; 6] = [
    "kern.ipc.soacceptqueue",
    "kern.ipc.listenq.hold_timeout_ms",
    "kern.ipc.listenq.hold_timeout_drop",
    "kern.ipc.listenq.logprio",
    "kern.ipc.listenq.vnet.hold_timeout_ms",
    "kern.ipc.listenq.vnet.hold_timeout_drop",
];
/// The string knobs: a worker writes the first WRITTEN_STRS
/// (sysctl_write), the parent saves and restores them all (t_fuzz.rs).
pub const KNOB_STRS: [&str; 8] = [
    "kern.ipc.listenq.dataready.default_arg",
    "kern.ipc.listenq.httpready.default_arg",
    "kern.ipc.listenq.dnsready.default_arg",
    "kern.ipc.listenq.tlsready.default_arg",
    "kern.ipc.listenq.vnet.dataready.default_arg",
    "kern.ipc.listenq.vnet.httpready.default_arg",
    "kern.ipc.listenq.vnet.dnsready.default_arg",
    "kern.ipc.listenq.vnet.tlsready.default_arg",
];
/// A worker draws from this many: the draw is part of every seed's
/// sequence, and drawing from more would change every seed found so far.
const WRITTEN_STRS: usize = 6;

/// Exit codes of a worker that saw a queue beyond its limits.
pub const EXIT_QLEN: i32 = 70;
pub const EXIT_INCQLEN: i32 = 71;

const SO_ACCEPTFILTER: i32 = 0x1000;
const SO_ACCEPTCONN: i32 = 0x0002;
const SO_REUSEADDR: i32 = 0x0004;
const SO_KEEPALIVE: i32 = 0x0008;
const SO_LINGER: i32 = 0x0080;
const SO_REUSEPORT: i32 = 0x0200;
const SO_SNDBUF: i32 = 0x1001;
const SO_RCVBUF: i32 = 0x1002;
const SO_RCVLOWAT: i32 = 0x1004;
const SO_TYPE: i32 = 0x1008;
const IPPROTO_TCP: i32 = 6;
const TCP_NODELAY: i32 = 1;

// Slot flags.
const BOUND: u16 = 1;
const LISTENING: u16 = 2;
/// connect(2) was called on it (a TCP socket must never get a second one:
/// in_pcbconnect() asserts "inp is already connected").
const CONNECTED: u16 = 4;
const ACCEPTED: u16 = 8;
const SHUT: u16 = 16;
/// An accept filter was set on it at some point.
const FILTER: u16 = 32;
/// Passed in an SCM_RIGHTS message, or received in one: another process
/// (or slot) may call listen(2) on it, so its queue limit is not known
/// here and the queue check skips it.
const SHARED: u16 = 64;
const RECEIVED: u16 = 128;
/// A local socket that went out in an SCM_RIGHTS message.
const SENT: u16 = 256;

#[derive(Clone, Copy)]
struct Slot {
    fd: i32,
    kind: Kind,
    flags: u16,
    connects: u8,
    /// The largest SO_LISTENQLIMIT seen since it listens.
    qmax: i32,
}

const EMPTY: Slot = Slot {
    fd: -1,
    kind: Kind::Tcp4,
    flags: 0,
    connects: 0,
    qmax: 0,
};

impl Slot {
    fn has(&self, f: u16) -> bool {
        self.flags & f != 0
    }
    fn is_local(&self) -> bool {
        !self.kind.is_tcp()
    }
    /// Whether listen(2) may be called on it. Never on a local socket that
    /// was passed in an SCM_RIGHTS message (sent or received), because no
    /// local listener may ever be in flight: one that ends up in a
    /// descriptor cycle (e.g. in the receive buffer of one of its own
    /// unaccepted connections) is the FreeBSD 14 garbage collector bug of
    /// listenq(4) BUGS. This test kernel's mend skips listeners in
    /// unp_gc() instead of panicking, so such a listener, its queue and
    /// listenq's record of it stay forever and memuse never comes back.
    fn may_listen(&self) -> bool {
        !(self.has(ACCEPTED) || self.is_local() && self.has(SENT | RECEIVED))
    }

    /// Whether it may go out in an SCM_RIGHTS message (see may_listen).
    fn may_pass(&self) -> bool {
        !(self.is_local() && self.has(LISTENING))
    }

    /// Whether connect(2) may be called on it now.
    fn may_connect(&self) -> bool {
        if self.has(ACCEPTED | RECEIVED) {
            return false;
        }
        if self.kind.is_tcp() {
            !self.has(CONNECTED)
        } else {
            self.connects < 2
        }
    }
}

/// How a sequence weighs its operations (chosen by t_fuzz from the seed).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Balanced,
    /// No accept filters: kldunload can succeed between reloads.
    NoFilters,
    FilterHeavy,
    LocalHeavy,
}

impl Profile {
    pub fn label(self) -> &'static str {
        match self {
            Profile::Balanced => "balanced",
            Profile::NoFilters => "no-filters",
            Profile::FilterHeavy => "filter-heavy",
            Profile::LocalHeavy => "local-heavy",
        }
    }
}

/// What the parent tells a worker.
#[derive(Clone, Copy)]
pub struct Params {
    pub seed: u64,
    pub worker: usize,
    pub ops: u64,
    pub kinds: [Kind; 4],
    pub nkinds: usize,
    pub profile: Profile,
    /// Received descriptors join the table (recvmsg with a control
    /// buffer); otherwise read(2) disposes of them.
    pub share: bool,
    /// jail(2) first (worker 1 only).
    pub jail: bool,
    /// setuid(1001) first (worker 2).
    pub unprivileged: bool,
    /// Absolute time (sys::now_ms) at which the worker stops early.
    pub deadline_ms: u64,
    /// Print each operation on the console (kernel env
    /// listenq.fuzz_trace=1): which op ran just before a kernel complaint.
    pub trace: bool,
}

/// What a worker did; sent to the parent as one datagram.
#[derive(Clone, Copy, Default, Debug)]
pub struct Report {
    pub worker: u64,
    pub ops: u64,
    /// Successful listen(2) calls.
    pub listen_ok: u64,
    /// Sockets that became listeners (their first successful listen).
    pub new_listeners: u64,
    pub accept_ok: u64,
    /// accept(2) that failed with ECONNABORTED (listenq may count these).
    pub accept_aborted: u64,
    pub connects: u64,
    pub sends: u64,
    pub filters_set: u64,
    pub sysctl_writes: u64,
    pub rights_sent: u64,
    pub rights_received: u64,
    /// 0, or EXIT_QLEN / EXIT_INCQLEN.
    pub violation: u64,
    pub v_op: u64,
    pub v_qlen: u64,
    pub v_incqlen: u64,
    pub v_qlimit: u64,
    pub v_qmax: u64,
    pub v_filter: u64,
    /// jail id, or 1000 + errno of jail/setuid, or 0.
    pub setup: u64,
    pub queue_checks: u64,
    pub slept_ms: u64,
    /// Operations that found no descriptor to work on.
    pub noops: u64,
}

pub const REPORT_WORDS: usize = 23;
pub const REPORT_LEN: usize = REPORT_WORDS * 8;

impl Report {
    fn words(&self) -> [u64; REPORT_WORDS] {
        [
            self.worker,
            self.ops,
            self.listen_ok,
            self.new_listeners,
            self.accept_ok,
            self.accept_aborted,
            self.connects,
            self.sends,
            self.filters_set,
            self.sysctl_writes,
            self.rights_sent,
            self.rights_received,
            self.violation,
            self.v_op,
            self.v_qlen,
            self.v_incqlen,
            self.v_qlimit,
            self.v_qmax,
            self.v_filter,
            self.setup,
            self.queue_checks,
            self.slept_ms,
            self.noops,
        ]
    }

    pub fn bytes(&self) -> [u8; REPORT_LEN] {
        let mut b = [0u8; REPORT_LEN];
        sock::put_words(&self.words(), &mut b);
        b
    }

    pub fn from_bytes(b: &[u8; REPORT_LEN]) -> Report {
        let w: [u64; REPORT_WORDS] = sock::words(b);
        Report {
            worker: w[0],
            ops: w[1],
            listen_ok: w[2],
            new_listeners: w[3],
            accept_ok: w[4],
            accept_aborted: w[5],
            connects: w[6],
            sends: w[7],
            filters_set: w[8],
            sysctl_writes: w[9],
            rights_sent: w[10],
            rights_received: w[11],
            violation: w[12],
            v_op: w[13],
            v_qlen: w[14],
            v_incqlen: w[15],
            v_qlimit: w[16],
            v_qmax: w[17],
            v_filter: w[18],
            setup: w[19],
            queue_checks: w[20],
            slept_ms: w[21],
            noops: w[22],
        }
    }
}

// ---------------------------------------------------------------- operations

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Socket,
    Bind,
    Listen,
    SetFilter,
    GetFilter,
    RemoveFilter,
    ConnectFresh,
    ConnectSlot,
    Send,
    SendRights,
    Recv,
    Shutdown,
    Close,
    Accept,
    SysctlRead,
    SysctlWrite,
    QueueCheck,
    SetOpt,
    Sleep,
    Unlink,
    /// socket + bind to a fixed address + listen (+ a filter).
    MakeListener,
    /// A fresh socket connects to a fixed address and sends a request.
    Client,
    /// Accept what a listener has and read from it.
    Drain,
    /// Several clients at once to one address (eviction, overflow).
    Burst,
    /// listen(2) again on a listener, with a new backlog.
    Relisten,
}

const OPS: [Op; 25] = [
    Op::Socket,
    Op::Bind,
    Op::Listen,
    Op::SetFilter,
    Op::GetFilter,
    Op::RemoveFilter,
    Op::ConnectFresh,
    Op::ConnectSlot,
    Op::Send,
    Op::SendRights,
    Op::Recv,
    Op::Shutdown,
    Op::Close,
    Op::Accept,
    Op::SysctlRead,
    Op::SysctlWrite,
    Op::QueueCheck,
    Op::SetOpt,
    Op::Sleep,
    Op::Unlink,
    Op::MakeListener,
    Op::Client,
    Op::Drain,
    Op::Burst,
    Op::Relisten,
];

fn weights(p: Profile) -> [u32; 25] {
    //   Sock Bind Lstn SetF GetF RmF  CFr  CSl  Send SRgt Recv Shut Clos Acc  SRd  SWr  QChk SOpt Slp  Unl  MkL  Cli  Drn  Bst  ReL
    match p {
        Profile::Balanced => [
            4, 4, 6, 6, 2, 3, 6, 2, 8, 3, 4, 3, 6, 6, 3, 2, 5, 3, 2, 1, 6, 10, 5, 3, 3,
        ],
        Profile::NoFilters => [
            4, 4, 6, 0, 2, 2, 6, 2, 8, 3, 4, 3, 6, 6, 3, 2, 5, 3, 2, 1, 7, 10, 5, 3, 3,
        ],
        Profile::FilterHeavy => [
            3, 3, 6, 12, 3, 6, 5, 2, 9, 2, 3, 3, 6, 5, 3, 3, 5, 3, 3, 1, 7, 14, 5, 4, 4,
        ],
        Profile::LocalHeavy => [
            4, 4, 6, 6, 2, 3, 6, 3, 8, 8, 6, 3, 6, 6, 3, 2, 5, 3, 2, 2, 6, 10, 5, 3, 3,
        ],
    }
}

fn choose(r: &mut Rng, w: &[u32; 25]) -> Op {
    let total: u32 = w.iter().sum();
    let mut x = r.below(u64::from(total.max(1))) as u32;
    for (i, &wi) in w.iter().enumerate() {
        if x < wi {
            return OPS[i];
        }
        x -= wi;
    }
    Op::Sleep
}

// ---------------------------------------------------------------- addresses

fn domain_type(k: Kind) -> (i32, i32) {
    match k {
        Kind::Tcp4 => (AF_INET, net::SOCK_STREAM),
        Kind::Tcp6 => (AF_INET6, net::SOCK_STREAM),
        Kind::UnixStream => (AF_UNIX, net::SOCK_STREAM),
        Kind::UnixSeqpacket => (AF_UNIX, net::SOCK_SEQPACKET),
    }
}

/// "/tmp/fz.<seed>.<i>" (NUL-terminated in `out`); returns its length
/// without the NUL.
pub fn fixed_path(seed: u64, i: usize, out: &mut Buf<64>) -> usize {
    out.len = 0;
    out.push(b"/tmp/fz.");
    out.push_num(seed);
    out.push(b".");
    out.push_num(i as u64);
    let n = out.len;
    out.push_byte(0);
    n
}

/// How many paths of its own a worker binds (they are reused, so that
/// the parent can remove every socket file a sequence made).
pub const FRESH_PATHS: u64 = 16;
/// A path that is never bound (for connects that must fail).
const NO_PATH: u64 = FRESH_PATHS;

/// "/tmp/fz.<seed>.w<worker>.<n>": a path no other worker binds.
pub fn fresh_path(seed: u64, w: usize, n: u64, out: &mut Buf<64>) -> usize {
    out.len = 0;
    out.push(b"/tmp/fz.");
    out.push_num(seed);
    out.push(b".w");
    out.push_num(w as u64);
    out.push(b".");
    out.push_num(n);
    let n = out.len;
    out.push_byte(0);
    n
}

fn fixed_addr(kind: Kind, seed: u64, i: usize) -> SockAddr {
    let port = PORT_BASE + (i % PORTS) as u16;
    match kind {
        Kind::Tcp4 => SockAddr::inet(LOOPBACK4, port),
        Kind::Tcp6 => SockAddr::inet6(LOOPBACK6, port),
        _ => {
            let mut p = Buf::<64>::new();
            let n = fixed_path(seed, i % PORTS, &mut p);
            SockAddr::unix(&p.b[..n])
        }
    }
}

// ---------------------------------------------------------------- the worker

struct Worker {
    p: Params,
    slots: [Slot; SLOTS],
    rep: Report,
    op_index: u64,
}

/// Runs the worker's sequence and ends the process.
pub fn run(p: Params, report_fd: i32) -> ! {
    let mut w = Worker {
        p,
        slots: [EMPTY; SLOTS],
        rep: Report {
            worker: p.worker as u64,
            ..Report::default()
        },
        op_index: 0,
    };
    if p.jail {
        let mut name = Buf::<32>::new();
        name.push(b"fz");
        name.push_num(p.seed);
        name.push_byte(0);
        w.rep.setup = match CStr::from_bytes_until_nul(name.bytes()) {
            Ok(n) => match sys::jail(c"/", n) {
                Ok(j) => j as u64,
                Err(e) => 1000 + e.0 as u64,
            },
            Err(_) => 999,
        };
    }
    if p.unprivileged {
        w.rep.setup = match sys::setuid(1001) {
            Ok(()) => 0,
            Err(e) => 1000 + e.0 as u64,
        };
    }
    let weights = weights(p.profile);
    let mut main = Rng::new(p.seed ^ ((p.worker as u64 + 1) << 56));
    for i in 0..p.ops {
        if sys::now_ms() >= p.deadline_ms {
            break;
        }
        w.op_index = i;
        let mut r = Rng::new(main.next());
        let op = choose(&mut r, &weights);
        if p.trace {
            crate::tap::print(format_args!("# fz w{} #{} {:?}", p.worker, i, op));
        }
        w.exec(op, &mut r);
        w.rep.ops += 1;
        if w.rep.ops.is_multiple_of(PROGRESS_EVERY) {
            let _ = sys::send(
                report_fd,
                &progress_bytes(p.worker, w.rep.ops),
                sys::MSG_NOSIGNAL | sys::MSG_DONTWAIT,
            );
        }
        if w.rep.violation != 0 {
            send_report(report_fd, &w.rep);
            sys::exit(w.rep.violation as i32)
        }
    }
    for s in w.slots.iter_mut() {
        if s.fd >= 0 {
            let _ = sys::close(s.fd);
            *s = EMPTY;
        }
    }
    send_report(report_fd, &w.rep);
    sys::exit(0)
}

/// The final report (the parent reads all the time: a full buffer is
/// retried for a while).
fn send_report(fd: i32, rep: &Report) {
    let b = rep.bytes();
    let t = sys::now_ms();
    while let Err(Errno::ENOBUFS | Errno::EAGAIN | Errno::EINTR) =
        sys::send(fd, &b, sys::MSG_NOSIGNAL | sys::MSG_DONTWAIT)
    {
        if sys::now_ms() - t > 5000 {
            return;
        }
        sys::sleep_ms(5);
    }
}

/// A progress datagram every PROGRESS_EVERY ops: PROGRESS_MAGIC, the
/// worker, the ops done (the parent stops its kldunload rounds at a part
/// of the way, so the counters' last window is long).
pub const PROGRESS_EVERY: u64 = 100;
pub const PROGRESS_MAGIC: u64 = 0x7072_6f67_7265_7373;
pub const PROGRESS_LEN: usize = 24;

fn progress_bytes(w: usize, ops: u64) -> [u8; PROGRESS_LEN] {
    let mut b = [0u8; PROGRESS_LEN];
    sock::put_words(&[PROGRESS_MAGIC, w as u64, ops], &mut b);
    b
}

/// (worker, ops) of a progress datagram.
pub fn progress_of(b: &[u8]) -> Option<(usize, u64)> {
    if b.len() != PROGRESS_LEN {
        return None;
    }
    let [magic, w, ops] = sock::words(b);
    (magic == PROGRESS_MAGIC).then_some((w as usize, ops))
}

impl Worker {
    fn kind(&self, r: &mut Rng) -> Kind {
        let n = self.p.nkinds.max(1);
        if self.p.profile == Profile::LocalHeavy && r.pct(60) {
            // Prefer the local kinds when there are any.
            let locals = self.p.kinds[..n].iter().filter(|k| !k.is_tcp()).count();
            if locals > 0 {
                let j = r.idx(locals);
                if let Some(k) = self.p.kinds[..n]
                    .iter()
                    .filter(|k| !k.is_tcp())
                    .nth(j)
                    .copied()
                {
                    return k;
                }
            }
        }
        self.p.kinds[r.idx(n)]
    }

    /// A slot in use: with probability `pct` one satisfying `want` (any
    /// if there is none and `fallback`), otherwise any (to see the call
    /// refused); with `fallback` false, only one satisfying `want`.
    fn pick(
        &mut self,
        r: &mut Rng,
        want: fn(&Slot) -> bool,
        pct: u64,
        fallback: bool,
    ) -> Option<usize> {
        let start = r.idx(SLOTS);
        let strict = !fallback || r.pct(pct);
        let found = (0..SLOTS)
            .map(|k| (start + k) % SLOTS)
            .find(|&i| self.slots[i].fd >= 0 && (!strict || want(&self.slots[i])));
        let found = if found.is_some() || !fallback {
            found
        } else {
            (0..SLOTS)
                .map(|k| (start + k) % SLOTS)
                .find(|&i| self.slots[i].fd >= 0)
        };
        if found.is_none() {
            self.rep.noops += 1;
        }
        found
    }

    /// A free slot (closing the one at a random index if all are in use).
    fn free_slot(&mut self, r: &mut Rng) -> usize {
        let start = r.idx(SLOTS);
        for k in 0..SLOTS {
            let i = (start + k) % SLOTS;
            if self.slots[i].fd < 0 {
                return i;
            }
        }
        self.close_slot(start, false);
        start
    }

    fn close_slot(&mut self, i: usize, rst: bool) {
        let s = self.slots[i];
        if s.fd < 0 {
            return;
        }
        if rst {
            let mut b = [0u8; 8];
            b[..4].copy_from_slice(&1i32.to_ne_bytes());
            let _ = sys::setsockopt(s.fd, SOL_SOCKET, SO_LINGER, &b);
        }
        let _ = sys::close(s.fd);
        self.slots[i] = EMPTY;
    }

    fn new_socket(&mut self, r: &mut Rng, kind: Kind) -> Option<usize> {
        let i = self.free_slot(r);
        let (d, t) = domain_type(kind);
        match sys::socket(d, t | sys::SOCK_NONBLOCK, 0) {
            Ok(fd) => {
                self.slots[i] = Slot {
                    fd: fd.into_raw(),
                    kind,
                    ..EMPTY
                };
                Some(i)
            }
            Err(_) => None,
        }
    }

    fn sleep_us(&mut self, us: u64) {
        sys::sleep_us(us);
        self.rep.slept_ms += us / 1000;
    }

    fn exec(&mut self, op: Op, r: &mut Rng) {
        match op {
            Op::Socket => {
                let k = self.kind(r);
                let _ = self.new_socket(r, k);
            }
            Op::Bind => {
                if let Some(i) = self.pick(r, |s| !s.has(BOUND | ACCEPTED), 85, true) {
                    self.bind(i, r);
                }
            }
            Op::Listen => {
                if let Some(i) = self.pick(r, |s| s.may_listen(), 90, true) {
                    let b = g::backlog(r);
                    self.listen(i, b);
                }
            }
            Op::SetFilter => {
                if let Some(i) = self.pick(r, |s| s.has(LISTENING), 85, true) {
                    self.set_filter(i, r);
                }
            }
            Op::GetFilter => {
                if let Some(i) = self.pick(r, |s| s.has(LISTENING), 85, true) {
                    let mut b = [0u8; g::AF_BUF];
                    let n = r.pick(&[0usize, 1, 16, 255, 256, 300]);
                    let _ =
                        sys::getsockopt(self.slots[i].fd, SOL_SOCKET, SO_ACCEPTFILTER, &mut b[..n]);
                }
            }
            Op::RemoveFilter => {
                if let Some(i) = self.pick(r, |s| s.has(LISTENING), 85, true) {
                    let fd = self.slots[i].fd;
                    if r.pct(90) {
                        let _ = sys::setsockopt_null(fd, SOL_SOCKET, SO_ACCEPTFILTER);
                    } else {
                        // A value pointer with length 0.
                        let _ = sys::setsockopt(fd, SOL_SOCKET, SO_ACCEPTFILTER, &[]);
                    }
                }
            }
            Op::ConnectFresh => {
                let k = self.kind(r);
                if let Some(i) = self.new_socket(r, k) {
                    self.connect(i, r);
                }
            }
            Op::ConnectSlot => {
                if let Some(i) = self.pick(r, |s| s.may_connect(), 100, false) {
                    self.connect(i, r);
                }
            }
            Op::Send => {
                if let Some(i) = self.pick(r, |s| s.has(CONNECTED | ACCEPTED), 85, true) {
                    self.send(i, r, false);
                }
            }
            Op::SendRights => {
                if let Some(i) =
                    self.pick(r, |s| s.is_local() && s.has(CONNECTED | ACCEPTED), 90, true)
                {
                    self.send(i, r, true);
                }
            }
            Op::Recv => {
                if let Some(i) = self.pick(r, |s| s.has(CONNECTED | ACCEPTED), 85, true) {
                    self.recv(i, r);
                }
            }
            Op::Shutdown => {
                if let Some(i) = self.pick(r, |s| s.has(CONNECTED | ACCEPTED), 70, true) {
                    let how = r.pick(&[0, 1, 2, 2, 1, 0, 3, -1]);
                    if sys::shutdown(self.slots[i].fd, how).is_ok() {
                        self.slots[i].flags |= SHUT;
                    }
                }
            }
            Op::Close => {
                if let Some(i) = self.pick(r, |_| true, 100, true) {
                    let rst = r.pct(30);
                    self.close_slot(i, rst);
                }
            }
            Op::Accept => {
                if let Some(i) = self.pick(r, |s| s.has(LISTENING), 85, true) {
                    self.accept(i, r);
                }
            }
            Op::SysctlRead => self.sysctl_read(r),
            Op::SysctlWrite => self.sysctl_write(r),
            Op::QueueCheck => {
                if let Some(i) = self.pick(r, |s| s.has(LISTENING) && !s.has(SHARED), 100, false) {
                    self.queue_check(i);
                }
            }
            Op::SetOpt => {
                if let Some(i) = self.pick(r, |_| true, 100, true) {
                    self.setopt(i, r);
                }
            }
            Op::Sleep => {
                let us = r.below(5000);
                self.sleep_us(us);
            }
            Op::Unlink => {
                let mut p = Buf::<64>::new();
                let _ = fixed_path(self.p.seed, r.idx(PORTS), &mut p);
                if let Ok(c) = CStr::from_bytes_until_nul(p.bytes()) {
                    let _ = sys::unlink(c);
                }
            }
            Op::MakeListener => self.make_listener(r),
            Op::Client => {
                let k = self.kind(r);
                self.client(r, k, None);
            }
            Op::Burst => {
                // Clients of one kind to one address.
                let k = self.kind(r);
                let sa = self.target(r, k, SLOTS);
                let n = 2 + r.below(5);
                for _ in 0..n {
                    self.client(r, k, Some(&sa));
                }
            }
            Op::Relisten => {
                if let Some(i) = self.pick(r, |s| s.has(LISTENING) && s.may_listen(), 100, false) {
                    let b = if r.pct(60) {
                        r.below(6) as i32
                    } else {
                        g::backlog(r)
                    };
                    self.listen(i, b);
                }
            }
            Op::Drain => {
                if let Some(i) = self.pick(r, |s| s.has(LISTENING), 100, false) {
                    let n = 1 + r.below(4);
                    for _ in 0..n {
                        if !self.accept(i, r) {
                            break;
                        }
                    }
                }
            }
        }
    }

    /// A fresh socket connects (to a listener of this worker's or a fixed
    /// address) and usually sends a request at once.
    fn client(&mut self, r: &mut Rng, k: Kind, to: Option<&SockAddr>) {
        let Some(i) = self.new_socket(r, k) else {
            return;
        };
        match to {
            Some(sa) => self.connect_to(i, r, sa),
            None => self.connect(i, r),
        }
        // Give the handshake a moment (bounded).
        let wait = r.pick(&[0, 1, 2, 5]);
        if k.is_tcp() && wait > 0 {
            let mut p = [sys::PollFd {
                fd: self.slots[i].fd,
                events: sys::POLLOUT,
                revents: 0,
            }];
            let _ = sys::poll(&mut p, wait);
        }
        if r.pct(85) {
            self.send(i, r, false);
        }
        match r.below(10) {
            0 => {
                let _ = sys::shutdown(self.slots[i].fd, sys::SHUT_WR);
                self.slots[i].flags |= SHUT;
            }
            1 => self.close_slot(i, true),
            _ => {}
        }
    }

    fn bind(&mut self, i: usize, r: &mut Rng) {
        let s = self.slots[i];
        let n = self.op_index;
        let sa = match r.below(20) {
            0..=13 => fixed_addr(s.kind, self.p.seed, r.idx(PORTS)),
            14..=16 => match s.kind {
                Kind::Tcp4 => SockAddr::inet(LOOPBACK4, 0),
                Kind::Tcp6 => SockAddr::inet6(LOOPBACK6, 0),
                _ => {
                    let mut p = Buf::<64>::new();
                    let l = fresh_path(self.p.seed, self.p.worker, n % FRESH_PATHS, &mut p);
                    SockAddr::unix(&p.b[..l])
                }
            },
            17 => SockAddr::inet([1, 2, 3, 4], PORT_BASE),
            18 => SockAddr::inet([0, 0, 0, 0], PORT_BASE + r.idx(PORTS) as u16),
            _ => {
                // The other family's address, or a cut one.
                let other = match s.kind {
                    Kind::Tcp4 => SockAddr::inet6(LOOPBACK6, PORT_BASE),
                    _ => SockAddr::inet(LOOPBACK4, PORT_BASE),
                };
                let cut = r.idx(other.bytes().len());
                if r.pct(50) {
                    let _ = sys::bind(s.fd, &other.bytes()[..cut]);
                    return;
                }
                other
            }
        };
        if sys::bind(s.fd, sa.bytes()).is_ok() {
            self.slots[i].flags |= BOUND;
        }
    }

    fn listen(&mut self, i: usize, backlog: i32) -> bool {
        let s = self.slots[i];
        if s.is_local() && s.has(SENT | RECEIVED) {
            return false;
        }
        // A socket that came in an SCM_RIGHTS message (or went out in
        // one) may be listening already through another descriptor.
        let was = if s.has(SHARED) {
            matches!(sock::get_int(s.fd, SOL_SOCKET, SO_ACCEPTCONN), Ok(v) if v != 0)
        } else {
            s.has(LISTENING)
        };
        if sys::listen(s.fd, backlog).is_err() {
            return false;
        }
        self.rep.listen_ok += 1;
        if !was && !s.has(LISTENING) {
            self.rep.new_listeners += 1;
        }
        let slot = &mut self.slots[i];
        slot.flags |= LISTENING;
        if let Ok(q) = sock::qlimit(slot.fd) {
            slot.qmax = slot.qmax.max(q);
        }
        true
    }

    fn set_filter(&mut self, i: usize, r: &mut Rng) {
        let mut b = [0u8; g::AF_BUF];
        let n = g::filter_opt(r, &mut b);
        if sys::setsockopt(self.slots[i].fd, SOL_SOCKET, SO_ACCEPTFILTER, &b[..n]).is_ok() {
            self.rep.filters_set += 1;
            self.slots[i].flags |= FILTER;
        }
    }

    /// Where a socket of `kind` connects: half the time a listener of this
    /// worker's own (its address as getsockname() says; not slot
    /// `except`), else a fixed address (where any worker's listener may
    /// be), sometimes a wrong one.
    fn target(&self, r: &mut Rng, kind: Kind, except: usize) -> SockAddr {
        let start = r.idx(SLOTS);
        let own = r
            .pct(50)
            .then(|| {
                (0..SLOTS).map(|k| (start + k) % SLOTS).find(|&j| {
                    let l = &self.slots[j];
                    l.fd >= 0 && l.has(LISTENING) && l.kind == kind && j != except
                })
            })
            .flatten()
            .and_then(|j| net::local_addr(self.slots[j].fd).ok());
        match r.below(20) {
            _ if own.is_some() => own.unwrap_or_else(|| fixed_addr(kind, self.p.seed, 0)),
            0..=17 => fixed_addr(kind, self.p.seed, r.idx(PORTS)),
            18 => match kind {
                // The wrong family, or a port nobody listens on.
                Kind::Tcp4 => SockAddr::inet6(LOOPBACK6, PORT_BASE),
                Kind::Tcp6 => SockAddr::inet(LOOPBACK4, PORT_BASE),
                _ => SockAddr::inet(LOOPBACK4, PORT_BASE),
            },
            _ => match kind {
                Kind::Tcp4 => SockAddr::inet(LOOPBACK4, PORT_BASE - 1),
                Kind::Tcp6 => SockAddr::inet6(LOOPBACK6, PORT_BASE - 1),
                _ => {
                    let mut p = Buf::<64>::new();
                    let l = fresh_path(self.p.seed, self.p.worker, NO_PATH, &mut p);
                    SockAddr::unix(&p.b[..l])
                }
            },
        }
    }

    fn connect(&mut self, i: usize, r: &mut Rng) {
        let kind = self.slots[i].kind;
        let sa = self.target(r, kind, i);
        self.connect_to(i, r, &sa);
    }

    fn connect_to(&mut self, i: usize, r: &mut Rng, sa: &SockAddr) {
        let s = self.slots[i];
        if !s.may_connect() {
            return;
        }
        if s.kind.is_tcp() && r.pct(40) {
            let _ = sock::set_int(s.fd, IPPROTO_TCP, TCP_NODELAY, 1);
        }
        // Whatever the result: connect was called.
        let slot = &mut self.slots[i];
        slot.flags |= CONNECTED;
        slot.connects = slot.connects.saturating_add(1);
        match sys::connect(s.fd, sa.bytes()) {
            Ok(()) | Err(Errno::EINPROGRESS) => self.rep.connects += 1,
            Err(_) => {}
        }
    }

    fn send(&mut self, i: usize, r: &mut Rng, rights: bool) {
        let s = self.slots[i];
        let mut msg = Buf::<640>::new();
        g::payload(r, &mut msg);
        let mut cuts = [0usize; 3];
        let nc = g::cuts(r, msg.len, &mut cuts);
        // The descriptor to pass: any in the table but a local listener
        // (see may_listen), itself included.
        let pass = if rights {
            self.pick(r, |s| s.may_pass(), 100, false)
        } else {
            None
        };
        let rights_piece = r.idx(nc + 1);
        let pause = r.pct(40);
        let mut from = 0;
        // The cut points, then the end.
        let ends = cuts[..nc].iter().chain(core::iter::once(&msg.len));
        for (k, &to) in ends.enumerate() {
            let piece = &msg.b[from..to.max(from)];
            from = to.max(from);
            let res = match pass {
                Some(p) if k == rights_piece && s.is_local() => {
                    let fd = self.slots[p].fd;
                    let res = sys::send_with_rights(s.fd, piece, Some(fd));
                    if res.is_ok() {
                        self.rep.rights_sent += 1;
                        if self.slots[p].is_local() {
                            self.slots[p].flags |= SENT;
                        }
                        // Only a receiver that keeps it can listen on it.
                        if self.p.share {
                            self.slots[p].flags |= SHARED;
                        }
                    }
                    res
                }
                _ if piece.is_empty() => continue,
                _ => sys::send(s.fd, piece, sys::MSG_NOSIGNAL),
            };
            if res.is_ok() {
                self.rep.sends += 1;
            }
            if pause && k < nc {
                let us = r.below(800);
                self.sleep_us(us);
            }
        }
    }

    fn recv(&mut self, i: usize, r: &mut Rng) {
        let fd = self.slots[i].fd;
        let mut b = [0u8; 1024];
        let n = r.pick(&[1usize, 7, 64, 1024]);
        if !self.p.share || !self.slots[i].is_local() {
            let _ = sys::read(fd, &mut b[..n]);
            return;
        }
        let mut fds = [-1i32; 4];
        let Ok((_, got)) = sys::recv_with_rights(fd, &mut b[..n], &mut fds) else {
            return;
        };
        for &nfd in &fds[..got] {
            self.rep.rights_received += 1;
            self.adopt(nfd, r);
        }
    }

    /// A descriptor received in an SCM_RIGHTS message joins the table.
    fn adopt(&mut self, fd: i32, r: &mut Rng) {
        let _ = sock::set_nonblock(fd);
        let kind = match net::local_addr(fd).map(|a| a.family()) {
            Ok(AF_INET) => Kind::Tcp4,
            Ok(AF_INET6) => Kind::Tcp6,
            Ok(_) => match sock::get_int(fd, SOL_SOCKET, SO_TYPE) {
                Ok(net::SOCK_SEQPACKET) => Kind::UnixSeqpacket,
                _ => Kind::UnixStream,
            },
            Err(_) => Kind::UnixStream,
        };
        let listening = matches!(sock::get_int(fd, SOL_SOCKET, SO_ACCEPTCONN), Ok(v) if v != 0);
        let i = self.free_slot(r);
        self.slots[i] = Slot {
            fd,
            kind,
            // Never connect(2) it: its state is unknown here.
            flags: RECEIVED | SHARED | CONNECTED | if listening { LISTENING } else { 0 },
            ..EMPTY
        };
    }

    /// One nonblocking accept; true when it returned a connection.
    fn accept(&mut self, i: usize, r: &mut Rng) -> bool {
        let l = self.slots[i];
        match sys::accept(l.fd) {
            Ok(a) => {
                self.rep.accept_ok += 1;
                let fd = a.into_raw();
                let _ = sock::set_nonblock(fd);
                // Read what the filter waited for, sometimes.
                if r.pct(50) {
                    let mut b = [0u8; 256];
                    let _ = sys::read(fd, &mut b);
                }
                if r.pct(30) {
                    let _ = sys::close(fd);
                    return true;
                }
                let j = self.free_slot(r);
                self.slots[j] = Slot {
                    fd,
                    kind: l.kind,
                    flags: ACCEPTED | CONNECTED,
                    ..EMPTY
                };
                true
            }
            Err(Errno::ECONNABORTED) => {
                self.rep.accept_aborted += 1;
                false
            }
            Err(_) => false,
        }
    }

    fn queue_check(&mut self, i: usize) {
        let s = self.slots[i];
        let (Ok(lim), Ok(q), Ok(inc)) = (sock::qlimit(s.fd), sock::qlen(s.fd), sock::incqlen(s.fd))
        else {
            return;
        };
        self.rep.queue_checks += 1;
        let qmax = s.qmax.max(lim);
        self.slots[i].qmax = qmax;
        let (m, q, inc) = (i64::from(qmax), i64::from(q), i64::from(inc));
        // The completed queue: solisten_clone() refuses a connection only
        // once sol_qlen > 3 * sol_qlimit / 2, so it reaches that + 1;
        // each worker has at most one connect in the kernel at a time
        // between that test and solisten_enqueue() (TCP handshakes on
        // lo0 complete in one netisr thread), hence + WORKERS. With a
        // filter, connections it held (on the incomplete queue, at most
        // sol_qlimit + 1 of them, see below) move to the completed queue
        // without that test when released or when the filter is removed.
        let filter = if s.has(FILTER) { m + 1 } else { 0 };
        let qcap = 3 * m / 2 + 1 + WORKERS as i64 + filter;
        // The incomplete queue: solisten_enqueue() drops the oldest while
        // sol_incqlen > sol_qlimit and then inserts, so sol_incqlen
        // reaches sol_qlimit + 1 (listenq's held connections are on it).
        // A listen(2) with a smaller backlog lowers the limit without
        // shortening the queues, hence the largest limit seen.
        let inccap = m + 1;
        let v = if q > qcap {
            EXIT_QLEN
        } else if inc > inccap {
            EXIT_INCQLEN
        } else {
            return;
        };
        self.rep.violation = v as u64;
        self.rep.v_op = self.op_index;
        self.rep.v_qlen = q as u64;
        self.rep.v_incqlen = inc as u64;
        self.rep.v_qlimit = lim as u64;
        self.rep.v_qmax = qmax as u64;
        self.rep.v_filter = u64::from(s.has(FILTER));
    }

    fn setopt(&mut self, i: usize, r: &mut Rng) {
        let fd = self.slots[i].fd;
        let (level, name, val): (i32, i32, i32) = match r.below(9) {
            0 => (SOL_SOCKET, SO_REUSEADDR, r.pick(&[0, 1])),
            1 => (SOL_SOCKET, SO_REUSEPORT, r.pick(&[0, 1])),
            2 => {
                let mut b = [0u8; 8];
                b[..4].copy_from_slice(&r.pick(&[0i32, 1]).to_ne_bytes());
                let _ = sys::setsockopt(fd, SOL_SOCKET, SO_LINGER, &b);
                return;
            }
            3 => (
                SOL_SOCKET,
                SO_RCVBUF,
                r.pick(&[1, 64, 512, 2048, 65536, -1]),
            ),
            4 => (SOL_SOCKET, SO_SNDBUF, r.pick(&[1, 64, 512, 2048, 65536])),
            5 => (SOL_SOCKET, SO_RCVLOWAT, r.pick(&[0, 1, 100, 100_000])),
            6 => (SOL_SOCKET, SO_KEEPALIVE, 1),
            7 => (IPPROTO_TCP, TCP_NODELAY, r.pick(&[0, 1])),
            _ => (SOL_SOCKET, SO_ACCEPTCONN, 1),
        };
        let _ = sock::set_int(fd, level, name, val);
    }

    fn make_listener(&mut self, r: &mut Rng) {
        let k = self.kind(r);
        let Some(i) = self.new_socket(r, k) else {
            return;
        };
        let fd = self.slots[i].fd;
        if r.pct(30) {
            let _ = sock::set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
        }
        let unlink_first = r.pct(60);
        let sa = if r.pct(85) {
            let j = r.idx(PORTS);
            if unlink_first && !k.is_tcp() {
                let mut p = Buf::<64>::new();
                let _ = fixed_path(self.p.seed, j, &mut p);
                if let Ok(c) = CStr::from_bytes_until_nul(p.bytes()) {
                    let _ = sys::unlink(c);
                }
            }
            fixed_addr(k, self.p.seed, j)
        } else {
            match k {
                Kind::Tcp4 => SockAddr::inet(LOOPBACK4, 0),
                Kind::Tcp6 => SockAddr::inet6(LOOPBACK6, 0),
                _ => {
                    let mut p = Buf::<64>::new();
                    let l = fresh_path(
                        self.p.seed,
                        self.p.worker,
                        self.op_index % FRESH_PATHS,
                        &mut p,
                    );
                    SockAddr::unix(&p.b[..l])
                }
            }
        };
        if sys::bind(fd, sa.bytes()).is_ok() {
            self.slots[i].flags |= BOUND;
        }
        let backlog = if r.pct(75) {
            1 + r.below(32) as i32
        } else {
            g::backlog(r)
        };
        let listened = self.listen(i, backlog);
        let fpct = match self.p.profile {
            Profile::NoFilters => 0,
            Profile::FilterHeavy => 80,
            _ => 45,
        };
        if listened && r.pct(fpct) {
            self.set_filter(i, r);
        }
    }

    fn sysctl_read(&mut self, r: &mut Rng) {
        const NAMES: [&str; 30] = [
            "kern.ipc.listenq.vnet.hold_timeout_ms",
            "kern.ipc.listenq.vnet.hold_timeout_drop",
            "kern.ipc.listenq.vnet.httpready.default_arg",
            "kern.ipc.listenq.version",
            "kern.ipc.listenq.accf_inherit",
            "kern.ipc.listenq.allocs",
            "kern.ipc.listenq.memuse",
            "kern.ipc.listenq.listeners",
            "kern.ipc.listenq.listeners",
            "kern.ipc.listenq.xlisteners",
            "kern.ipc.listenq.xlisteners",
            "kern.ipc.listenq.unloadable",
            "kern.ipc.listenq.hold_timeout_ms",
            "kern.ipc.listenq.hold_timeout_drop",
            "kern.ipc.listenq.logprio",
            "kern.ipc.listenq.stats.listens",
            "kern.ipc.listenq.stats.closes",
            "kern.ipc.listenq.stats.completed",
            "kern.ipc.listenq.stats.accepted",
            "kern.ipc.listenq.stats.overflows",
            "kern.ipc.listenq.stats.held",
            "kern.ipc.listenq.stats.released",
            "kern.ipc.listenq.stats.evicted",
            "kern.ipc.listenq.stats.timeouts",
            "kern.ipc.listenq.stats.nomem",
            "kern.ipc.listenq.dataready.default_arg",
            "kern.ipc.listenq.httpready.default_arg",
            "kern.ipc.listenq.dnsready.default_arg",
            "kern.ipc.listenq.tlsready.default_arg",
            "kern.ipc.soacceptqueue",
        ];
        let name = r.pick(&NAMES);
        let n = r.pick(&[0usize, 1, 4, 8, 64, 512, 4096, 32768, 32768]);
        let mut b = [0u8; 32768];
        let _ = sys::sysctlbyname(name, Some(&mut b[..n]), None);
    }

    fn sysctl_write(&mut self, r: &mut Rng) {
        let ok = if r.pct(50) {
            let name = r.pick(&KNOB_INTS);
            let v = g::knob_int(r, name);
            match r.below(10) {
                // The wrong size.
                0 => sys::sysctlbyname(name, None, Some(&v.to_ne_bytes()[..2])).map(|_| ()),
                1 => sys::sysctlbyname(name, None, Some(&i64::from(v).to_ne_bytes())).map(|_| ()),
                _ => sysctl::write_int(name, v),
            }
        } else {
            let name = r.pick(&KNOB_STRS[..WRITTEN_STRS]);
            let mut a = Buf::<240>::new();
            g::default_arg(r, &mut a);
            sysctl::write_string(name, a.bytes())
        };
        if ok.is_ok() {
            self.rep.sysctl_writes += 1;
        }
    }
}
