//! kern.ipc.soacceptqueue: its bounds (1..=UINT_MAX/3) and when a change
//! takes effect. Part of the listen(2) semantic suite, and run once more
//! after listenq is unloaded. Always restores the original value.

use crate::record::Val;
use crate::sock::{self, Kind};
use crate::sys::{self, Errno};
use crate::sysctl;
use crate::t_listen::Suite;

const NAME: &str = "kern.ipc.soacceptqueue";
/// UINT_MAX / 3: the largest value the handler accepts.
const MAX_OK: i32 = (u32::MAX / 3) as i32;

pub fn soacceptqueue_checks(s: &mut Suite) {
    let orig = match sysctl::read_uint(NAME) {
        Ok(v) => v,
        Err(e) => {
            s.rec
                .obs(s.tap, format_args!("{} read", NAME), Val::err(e), Val::OK);
            return;
        }
    };
    let orig_i = orig as i32;

    // A listener made before the change keeps its limit.
    let early = sock::listener(Kind::Tcp4, -1);

    let writes: [(i32, Val); 5] = [
        (0, Val::err(Errno::EINVAL)),
        (-1, Val::err(Errno::EINVAL)),
        (MAX_OK + 1, Val::err(Errno::EINVAL)),
        (MAX_OK, Val::OK),
        (16, Val::OK),
    ];
    for (v, want) in writes {
        let r = sysctl::write_int(NAME, v);
        s.rec
            .obs(s.tap, format_args!("{} = {}", NAME, v), Val::unit(r), want);
        if v == MAX_OK {
            let r = sysctl::read_uint(NAME);
            s.rec.obs(
                s.tap,
                format_args!("{} reads back {}", NAME, v),
                Val::of(r),
                Val::Int(MAX_OK.into()),
            );
        }
    }
    let r = sysctl::read_uint(NAME);
    s.rec.obs(
        s.tap,
        format_args!("{} reads back 16", NAME),
        Val::of(r),
        Val::Int(16),
    );

    let fresh = |b: i32| sock::listener(Kind::Tcp4, b).and_then(|(fd, _)| sock::qlimit(fd.raw()));
    s.rec.obs(
        s.tap,
        format_args!("at 16: listen(-1): SO_LISTENQLIMIT"),
        Val::of(fresh(-1)),
        Val::Int(16),
    );
    s.rec.obs(
        s.tap,
        format_args!("at 16: listen(100): SO_LISTENQLIMIT"),
        Val::of(fresh(100)),
        Val::Int(16),
    );
    s.rec.obs(
        s.tap,
        format_args!("at 16: listen(9): SO_LISTENQLIMIT"),
        Val::of(fresh(9)),
        Val::Int(9),
    );
    match &early {
        Ok((fd, _)) => {
            let r = sock::qlimit(fd.raw());
            s.rec.obs(
                s.tap,
                format_args!("at 16: earlier listener keeps its limit"),
                Val::of(r),
                Val::Int(orig.into()),
            );
            let r = sys::listen(fd.raw(), -1).and_then(|_| sock::qlimit(fd.raw()));
            s.rec.obs(
                s.tap,
                format_args!("at 16: earlier listener re-listen(-1)"),
                Val::of(r),
                Val::Int(16),
            );
        }
        Err(e) => {
            s.rec
                .obs(s.tap, format_args!("early listener"), Val::err(*e), Val::OK);
        }
    }
    drop(early);

    let r = sysctl::write_int(NAME, orig_i);
    s.rec.obs(
        s.tap,
        format_args!("{} restored", NAME),
        Val::unit(r),
        Val::OK,
    );
    let r = sysctl::read_uint(NAME);
    s.rec.obs(
        s.tap,
        format_args!("{} reads back original", NAME),
        Val::of(r),
        Val::Int(orig.into()),
    );
}
