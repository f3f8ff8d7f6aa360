//! Incremental accept-filter parsers for listenq.
//!
//! These are the protocol halves of FreeBSD's `accf_data`, `accf_http`,
//! `accf_dns` and `accf_tls` (accept_filter(9)), rewritten as byte-at-a-time
//! state machines: the kernel wrapper hands each newly arrived mbuf to
//! [`Conn::feed`], and the parser never looks at a byte twice, so a slow
//! client dribbling a large request costs O(total bytes) instead of stock's
//! O(n²) rescans of the socket buffer.
//!
//! # What the kernel wrapper must do itself
//!
//! The parser sees only payload bytes. The stock filters also release a
//! connection on socket-buffer conditions, and the wrapper must keep those:
//!
//! * **Receive buffer full** (`sbused(sb) >= sb_hiwat || sb_mbcnt >=
//!   sb_mbmax`): Ready. Otherwise a request bigger than the buffer would be
//!   held forever, since no more data can arrive.
//! * **Peer shut down** (`SBS_CANTRCVMORE`): Ready, so the application sees
//!   the EOF. (Stock `accf_dns` forgets this check; see `dns`.)
//! * **dataready and `SO_RCVLOWAT`**: stock `dataready` is `soreadable()`,
//!   which also fires on `so_error`/`so_rerror` and waits for `sb_lowat`
//!   bytes (inherited from the listener). [`Conn`] reports Ready on the first
//!   byte; a wrapper that wants stock's low-water behaviour checks
//!   `sbavail >= sb_lowat` itself.
//! * **Hold timeout** ([`Config::hold_timeout_ms`], [`Config::on_timeout`]):
//!   when it expires, deliver or drop the connection; what the options leave
//!   out comes from the kernel's defaults ([`Config::hold_limit`]).
//!
//! # Chunking
//!
//! For every filter the byte offset at which [`Conn::feed`] first returns
//! Ready depends only on the byte stream, never on how it was split into
//! calls. That is also true of stock for every decision except one: stock
//! httpready's end-of-headers test looks only at the last three bytes of the
//! buffer at upcall time, so headers followed in the same segment by more
//! data (a pipelined request, a body) are held until the buffer fills. Here
//! the first `\n\n` or `\n\r\n` after the request line ends the hold. This
//! releases such connections earlier than stock, never later.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
// The kernel build is panic=abort: a panic is a kernel panic. These lints
// turn every construct that can panic on hostile input into a build error.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo,
    clippy::unimplemented,
    clippy::arithmetic_side_effects,
    clippy::as_conversions
)]

mod data;
mod dns;
mod http;
mod proxy;
mod tls;

/// Result of feeding bytes to a [`Conn`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Keep holding the connection on the incomplete queue.
    NeedMore,
    /// Hand the connection to accept(2) now.
    Ready,
}

/// Which accept filter a listener uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterKind {
    /// `dataready`: any data.
    Data,
    /// `httpready`: a complete HTTP/1.x request head.
    Http,
    /// `dnsready`: one complete length-prefixed DNS message.
    Dns,
    /// `tlsready`: the first complete TLS record.
    Tls,
}

impl FilterKind {
    /// Every filter, in the order the kernel registers them.
    pub const ALL: [FilterKind; 4] = [
        FilterKind::Data,
        FilterKind::Http,
        FilterKind::Dns,
        FilterKind::Tls,
    ];

    /// The accept_filter(9) name, as the kernel registers it and userland
    /// passes it in `af_name`: the one list of names (kmod registers
    /// these, and names its `kern.ipc.listenq.<filter>` sysctl nodes with
    /// them).
    pub const fn c_name(self) -> &'static core::ffi::CStr {
        match self {
            FilterKind::Data => c"dataready",
            FilterKind::Http => c"httpready",
            FilterKind::Dns => c"dnsready",
            FilterKind::Tls => c"tlsready",
        }
    }

    /// `c_name` without its NUL.
    pub fn name(self) -> &'static str {
        self.c_name().to_str().unwrap_or_default()
    }

    /// Its place in `ALL`: the kernel's index of the filter (the
    /// defaults' table and sysctl arg2).
    pub const fn index(self) -> usize {
        match self {
            FilterKind::Data => 0,
            FilterKind::Http => 1,
            FilterKind::Dns => 2,
            FilterKind::Tls => 3,
        }
    }

    /// The filter at `index` of `ALL`.
    pub fn from_index(index: usize) -> Option<FilterKind> {
        FilterKind::ALL.get(index).copied()
    }
}

/// PROXY protocol (haproxy v1/v2) handling in front of the filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyMode {
    /// Stock: the filter sees the connection from byte 0.
    Off,
    /// A connection that starts with a PROXY signature is held until the
    /// header is complete and the filter then judges the bytes after it; one
    /// that does not is judged from byte 0. A signature followed by a
    /// malformed header is released at once.
    Optional,
    /// Anything that is not a valid PROXY header is released at once. The
    /// listener's application expects PROXY and will reject the connection
    /// itself; releasing it (rather than holding it) means garbage costs a
    /// queue slot for one round trip, not for the hold timeout.
    Required,
}

/// Which held connection a full secondary queue lets go (`evict=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvictPolicy {
    /// The oldest: listen(2) and stock FreeBSD (the default).
    Oldest,
    /// The oldest of the source holding the most connections (a peer
    /// address prefix for TCP, a peer uid for local sockets), so that one
    /// source flooding the listener evicts only its own.
    Fair,
}

/// What the kernel wrapper does with a connection whose hold timeout expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeoutAction {
    /// Queue it for accept(2) anyway, as if the filter had said Ready.
    Deliver,
    /// Abort it (RST); the application never sees it.
    Drop,
}

/// Which HTTP methods httpready holds for the end of the request head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpMethods {
    /// Stock: GET and HEAD; any other request is released after two bytes.
    Stock,
    /// GET HEAD POST PUT DELETE CONNECT OPTIONS TRACE (RFC 9110) and PATCH
    /// (RFC 5789). Only the head is waited for, never a body: a POST is
    /// released at the end of its headers even if its body is still coming.
    All,
}

/// A listener's filter configuration, parsed once from `af_arg` by
/// [`parse_af_arg`] and shared by all its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// The filter.
    pub kind: FilterKind,
    /// PROXY protocol handling (`proxy[=off|optional|required]`).
    pub proxy: ProxyMode,
    /// Hold limit in milliseconds (`timeout=<ms>`): `Some(0)` is no limit,
    /// `None` (not given) leaves it to the kernel's default
    /// (`kern.ipc.listenq.hold_timeout_ms`); see [`Config::hold_limit`].
    pub hold_timeout_ms: Option<u32>,
    /// What to do when the hold limit expires (`ontimeout=deliver|drop`);
    /// `None` (not given) leaves it to the kernel's default
    /// (`kern.ipc.listenq.hold_timeout_drop`), whichever limit applies.
    pub on_timeout: Option<TimeoutAction>,
    /// httpready: `methods=stock|all`.
    pub http_methods: HttpMethods,
    /// httpready: `h2` holds an HTTP/2 prior-knowledge preface until all 24
    /// bytes are in. Stock releases it after two bytes.
    pub http_h2: bool,
    /// httpready: `parsehttpversion=0|1`, stock's
    /// `net.inet.accf.http.parsehttpversion` (default 1). With 0, a request
    /// is held until the end of headers without looking at the request line,
    /// so an HTTP/0.9 request (which has no headers) is held.
    pub http_parse_version: bool,
    /// tlsready: `clienthello` holds until the whole first ClientHello has
    /// arrived even if it spans several records. Stock releases at the end
    /// of the first record.
    pub tls_clienthello: bool,
    /// `evict=oldest|fair`.
    pub evict: EvictPolicy,
    /// `prefix4=0..32`: the IPv4 source is the peer's address under this
    /// prefix (fair eviction).
    pub prefix4: u8,
    /// `prefix6=0..128`: the same for IPv6.
    pub prefix6: u8,
    /// `persource=N`: with `evict=fair`, a source already holding N
    /// connections lets its own oldest go for a new one (0: no cap).
    pub per_source: u32,
}

impl Config {
    /// The stock semantics of `kind`: what an empty `af_arg` gives.
    pub const fn stock(kind: FilterKind) -> Config {
        Config {
            kind,
            proxy: ProxyMode::Off,
            hold_timeout_ms: None,
            on_timeout: None,
            http_methods: HttpMethods::Stock,
            http_h2: false,
            http_parse_version: true,
            tls_clienthello: false,
            evict: EvictPolicy::Oldest,
            prefix4: 32,
            prefix6: 64,
            per_source: 0,
        }
    }
}

/// The kernel's defaults for what `af_arg` leaves out
/// (`kern.ipc.listenq.hold_timeout_ms`, `kern.ipc.listenq.hold_timeout_drop`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeoutDefaults {
    /// The default limit in milliseconds; 0: no limit.
    pub ms: u32,
    /// The default action at the limit.
    pub action: TimeoutAction,
}

impl Config {
    /// The hold limit that applies to this listener's connections and what
    /// happens when it expires; `None`: held until the filter is satisfied.
    ///
    /// `timeout=` decides the limit (0: none, whatever the default says);
    /// without it the default limit applies. `ontimeout=` decides the
    /// action at whichever limit applies; without it the default action.
    pub fn hold_limit(&self, def: TimeoutDefaults) -> Option<(u32, TimeoutAction)> {
        let ms = self.hold_timeout_ms.unwrap_or(def.ms);
        (ms != 0).then(|| (ms, self.on_timeout.unwrap_or(def.action)))
    }
}

/// Why `af_arg` was rejected. The kernel returns EINVAL for all of them; the
/// text is for its log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgError {
    /// A key this filter has never heard of.
    UnknownOption,
    /// A known key with a value it does not accept.
    BadValue,
    /// More than [`MAX_AF_ARG`] bytes before the NUL.
    TooLong,
    /// An empty item: leading, trailing or doubled comma.
    EmptyOption,
    /// A key that needs `=value` was given without one.
    MissingValue,
    /// A flag that takes no value was given one.
    UnexpectedValue,
    /// The same key twice; refused rather than guessing which one wins.
    Duplicate,
    /// A known key that belongs to another filter (e.g. `h2` on tlsready).
    WrongFilter,
    /// `prefix4`, `prefix6` or `persource` without `evict=fair`, which
    /// alone uses them.
    NeedsFair,
}

impl ArgError {
    /// A short description for logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            ArgError::UnknownOption => "unknown option",
            ArgError::BadValue => "bad option value",
            ArgError::TooLong => "argument too long",
            ArgError::EmptyOption => "empty option",
            ArgError::MissingValue => "option needs a value",
            ArgError::UnexpectedValue => "option takes no value",
            ArgError::Duplicate => "option given twice",
            ArgError::WrongFilter => "option does not apply to this filter",
            ArgError::NeedsFair => "prefix4, prefix6 and persource need evict=fair",
        }
    }
}

/// Longest `af_arg` string: `sizeof(af_arg) - 1`, since the kernel forces
/// the last byte of the 240-byte field to NUL.
pub const MAX_AF_ARG: usize = 239;

fn until_nul(bytes: &[u8]) -> &[u8] {
    match bytes.iter().position(|&b| b == 0) {
        Some(n) => bytes.get(..n).unwrap_or(bytes),
        None => bytes,
    }
}

/// Parses `struct accept_filter_arg.af_arg` for filter `kind`.
///
/// The empty string is stock semantics. Otherwise `af_arg` is a
/// comma-separated list of `key` or `key=value` items, without spaces:
///
/// | key | values | filters |
/// |---|---|---|
/// | `proxy` | `off`, `optional` (also bare `proxy`), `required` | all |
/// | `timeout` | decimal milliseconds, u32; 0 = no limit (not the default) | all |
/// | `ontimeout` | `deliver`, `drop`; applies to the default limit too | all |
/// | `methods` | `stock`, `all` | httpready |
/// | `h2` | (flag) | httpready |
/// | `parsehttpversion` | `0`, `1` | httpready |
/// | `clienthello` | (flag) | tlsready |
/// | `evict` | `oldest` (stock, the default), `fair` | all |
/// | `prefix4` | 0..=32, default 32: IPv4 sources (with `evict=fair`) | all |
/// | `prefix6` | 0..=128, default 64: IPv6 sources (with `evict=fair`) | all |
/// | `persource` | decimal u32, 0 = no cap (with `evict=fair`) | all |
///
/// Parsing stops at the first NUL.
///
/// Every extension is opt-in: each changes stock's answer for some valid
/// input (stock releases a POST and an HTTP/2 preface after two bytes, and
/// a multi-record ClientHello after its first record), and listeners that
/// ask for nothing must get exactly the FreeBSD filters they asked for.
pub fn parse_af_arg(kind: FilterKind, af_arg: &[u8]) -> Result<Config, ArgError> {
    let arg = until_nul(af_arg);
    if arg.len() > MAX_AF_ARG {
        return Err(ArgError::TooLong);
    }
    let mut cfg = Config::stock(kind);
    if arg.is_empty() {
        return Ok(cfg);
    }
    let mut seen: u16 = 0;
    for item in arg.split(|&b| b == b',') {
        if item.is_empty() {
            return Err(ArgError::EmptyOption);
        }
        let (key, value) = match item.iter().position(|&b| b == b'=') {
            Some(eq) => (
                item.get(..eq).unwrap_or_default(),
                Some(item.get(eq.saturating_add(1)..).unwrap_or_default()),
            ),
            None => (item, None),
        };
        let opt = Opt::from_key(key).ok_or(ArgError::UnknownOption)?;
        if let Some(only) = opt.only_for() {
            if only != kind {
                return Err(ArgError::WrongFilter);
            }
        }
        if seen & opt.bit() != 0 {
            return Err(ArgError::Duplicate);
        }
        seen |= opt.bit();
        opt.apply(&mut cfg, value)?;
    }
    let fair_only = Opt::Prefix4.bit() | Opt::Prefix6.bit() | Opt::PerSource.bit();
    if seen & fair_only != 0 && cfg.evict != EvictPolicy::Fair {
        return Err(ArgError::NeedsFair);
    }
    Ok(cfg)
}

#[derive(Clone, Copy)]
enum Opt {
    Proxy,
    Timeout,
    OnTimeout,
    Methods,
    H2,
    ParseHttpVersion,
    ClientHello,
    Evict,
    Prefix4,
    Prefix6,
    PerSource,
}

impl Opt {
    fn from_key(key: &[u8]) -> Option<Opt> {
        Some(match key {
            b"proxy" => Opt::Proxy,
            b"timeout" => Opt::Timeout,
            b"ontimeout" => Opt::OnTimeout,
            b"methods" => Opt::Methods,
            b"h2" => Opt::H2,
            b"parsehttpversion" => Opt::ParseHttpVersion,
            b"clienthello" => Opt::ClientHello,
            b"evict" => Opt::Evict,
            b"prefix4" => Opt::Prefix4,
            b"prefix6" => Opt::Prefix6,
            b"persource" => Opt::PerSource,
            _ => return None,
        })
    }

    fn bit(self) -> u16 {
        match self {
            Opt::Proxy => 1,
            Opt::Timeout => 2,
            Opt::OnTimeout => 4,
            Opt::Methods => 8,
            Opt::H2 => 16,
            Opt::ParseHttpVersion => 32,
            Opt::ClientHello => 64,
            Opt::Evict => 128,
            Opt::Prefix4 => 256,
            Opt::Prefix6 => 512,
            Opt::PerSource => 1024,
        }
    }

    fn only_for(self) -> Option<FilterKind> {
        match self {
            Opt::Proxy
            | Opt::Timeout
            | Opt::OnTimeout
            | Opt::Evict
            | Opt::Prefix4
            | Opt::Prefix6
            | Opt::PerSource => None,
            Opt::Methods | Opt::H2 | Opt::ParseHttpVersion => Some(FilterKind::Http),
            Opt::ClientHello => Some(FilterKind::Tls),
        }
    }

    fn apply(self, cfg: &mut Config, value: Option<&[u8]>) -> Result<(), ArgError> {
        match (self, value) {
            (Opt::Proxy, None) => cfg.proxy = ProxyMode::Optional,
            (Opt::Proxy, Some(v)) => {
                cfg.proxy = match v {
                    b"off" => ProxyMode::Off,
                    b"optional" => ProxyMode::Optional,
                    b"required" => ProxyMode::Required,
                    _ => return Err(ArgError::BadValue),
                }
            }
            (Opt::Timeout, Some(v)) => {
                cfg.hold_timeout_ms = Some(parse_u32(v).ok_or(ArgError::BadValue)?);
            }
            (Opt::OnTimeout, Some(v)) => {
                cfg.on_timeout = Some(match v {
                    b"deliver" => TimeoutAction::Deliver,
                    b"drop" => TimeoutAction::Drop,
                    _ => return Err(ArgError::BadValue),
                })
            }
            (Opt::Methods, Some(v)) => {
                cfg.http_methods = match v {
                    b"stock" => HttpMethods::Stock,
                    b"all" => HttpMethods::All,
                    _ => return Err(ArgError::BadValue),
                }
            }
            (Opt::ParseHttpVersion, Some(v)) => {
                cfg.http_parse_version = match v {
                    b"0" => false,
                    b"1" => true,
                    _ => return Err(ArgError::BadValue),
                }
            }
            (Opt::Evict, Some(v)) => {
                cfg.evict = match v {
                    b"oldest" => EvictPolicy::Oldest,
                    b"fair" => EvictPolicy::Fair,
                    _ => return Err(ArgError::BadValue),
                }
            }
            (Opt::Prefix4, Some(v)) => {
                cfg.prefix4 = parse_u32(v)
                    .filter(|&n| n <= 32)
                    .and_then(|n| u8::try_from(n).ok())
                    .ok_or(ArgError::BadValue)?;
            }
            (Opt::Prefix6, Some(v)) => {
                cfg.prefix6 = parse_u32(v)
                    .filter(|&n| n <= 128)
                    .and_then(|n| u8::try_from(n).ok())
                    .ok_or(ArgError::BadValue)?;
            }
            (Opt::PerSource, Some(v)) => {
                cfg.per_source = parse_u32(v).ok_or(ArgError::BadValue)?;
            }
            (Opt::H2, None) => cfg.http_h2 = true,
            (Opt::ClientHello, None) => cfg.tls_clienthello = true,
            (
                Opt::Timeout
                | Opt::OnTimeout
                | Opt::Methods
                | Opt::ParseHttpVersion
                | Opt::Evict
                | Opt::Prefix4
                | Opt::Prefix6
                | Opt::PerSource,
                None,
            ) => return Err(ArgError::MissingValue),
            (Opt::H2 | Opt::ClientHello, Some(_)) => return Err(ArgError::UnexpectedValue),
        }
        Ok(())
    }
}

/// Plain decimal: no sign, no spaces, no hex, so `timeout=-1` or
/// `timeout=0x10` is an error rather than a surprise.
fn parse_u32(v: &[u8]) -> Option<u32> {
    if v.is_empty() {
        return None;
    }
    let mut n: u32 = 0;
    for &b in v {
        let d = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        n = n.checked_mul(10)?.checked_add(u32::from(d))?;
    }
    Some(n)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Inner {
    Data(data::Data),
    Http(http::Http),
    Dns(dns::Dns),
    Tls(tls::Tls),
}

impl Inner {
    fn new(cfg: &Config) -> Inner {
        match cfg.kind {
            FilterKind::Data => Inner::Data(data::Data),
            FilterKind::Http => Inner::Http(http::Http::new(cfg)),
            FilterKind::Dns => Inner::Dns(dns::Dns::new()),
            FilterKind::Tls => Inner::Tls(tls::Tls::new()),
        }
    }

    fn feed(&mut self, cfg: &Config, bytes: &[u8]) -> Progress {
        if bytes.is_empty() {
            return Progress::NeedMore;
        }
        match self {
            Inner::Data(s) => s.feed(bytes),
            Inner::Http(s) => s.feed(cfg, bytes),
            Inner::Dns(s) => s.feed(bytes),
            Inner::Tls(s) => s.feed(cfg, bytes),
        }
    }
}

/// Where a connection is: a PROXY header and the filter never need their
/// states at the same time (the filter starts from its initial state once
/// the header is done), so they share the space; the kernel keeps one of
/// these per held connection (listenq(4) "The secondary queue").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Proxy(proxy::Proxy),
    Filter(Inner),
    Ready,
}

/// Per-connection parser state: fixed size, no pointers, no allocation.
///
/// Feed it every byte the connection receives, in order, exactly once, with
/// the listener's [`Config`] (the same one given to [`Conn::new`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conn {
    stage: Stage,
}

impl Conn {
    /// State for a new connection on a listener configured with `cfg`.
    pub fn new(cfg: &Config) -> Conn {
        let stage = match cfg.proxy {
            ProxyMode::Off => Stage::Filter(Inner::new(cfg)),
            ProxyMode::Optional | ProxyMode::Required => Stage::Proxy(proxy::Proxy::new(cfg.proxy)),
        };
        Conn { stage }
    }

    /// Feed the bytes that arrived since the last call (the caller tracks the
    /// offset and passes only NEW bytes, possibly in several chunks per
    /// upcall, one per mbuf). O(`bytes.len()`) time, O(1) state: earlier
    /// bytes are never looked at again. Bytes after the one that made the
    /// connection Ready are ignored.
    pub fn feed(&mut self, cfg: &Config, bytes: &[u8]) -> Progress {
        // The filter's own bytes, on every upcall of every connection:
        // the PROXY header's stage, once per connection, stays out of
        // line and keeps its registers to itself.
        let progress = match &mut self.stage {
            Stage::Ready => return Progress::Ready,
            Stage::Filter(inner) => inner.feed(cfg, bytes),
            Stage::Proxy(_) => self.feed_proxy(cfg, bytes),
        };
        if progress == Progress::Ready {
            self.stage = Stage::Ready;
        }
        progress
    }

    #[inline(never)]
    fn feed_proxy(&mut self, cfg: &Config, bytes: &[u8]) -> Progress {
        let Stage::Proxy(p) = &mut self.stage else {
            return Progress::NeedMore;
        };
        match p.feed(cfg.proxy, bytes) {
            proxy::Step::NeedMore => Progress::NeedMore,
            proxy::Step::Invalid => Progress::Ready,
            proxy::Step::Pass { replay, rest } => {
                let mut inner = Inner::new(cfg);
                let progress = match inner.feed(cfg, replay) {
                    Progress::Ready => Progress::Ready,
                    Progress::NeedMore => inner.feed(cfg, rest),
                };
                self.stage = Stage::Filter(inner);
                progress
            }
        }
    }

    /// Once Ready, stays Ready.
    pub fn is_ready(&self) -> bool {
        self.stage == Stage::Ready
    }
}
