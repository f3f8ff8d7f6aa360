//! The child index's lock-free ring (children.rs `ChildRing`) under loom:
//! every interleaving of a filer, takers and a reuse of the slot by a later
//! generation. Run by the host tests as
//! `RUSTFLAGS="--cfg loom" cargo test -p listenq-policy --test loom_ring --release`.
#![cfg(loom)]

use listenq_policy::children::{ChildRing, RingFiled};
use loom::sync::Arc;
use loom::thread;

/// Generations 2 and 4 share slot 0 of a 2-slot ring.
const G: u64 = 2;
const LATER: u64 = 4;

/// accept(2) racing the upcall that files its connection: it takes the
/// whole entry or nothing, and an entry it did not take stays for later.
#[test]
fn a_take_racing_the_filing_sees_the_whole_entry_or_none() {
    loom::model(|| {
        let ring = Arc::new(ChildRing::<2>::new());
        let r = ring.clone();
        let filer = thread::spawn(move || r.file(G, 0xA, 10));
        let r = ring.clone();
        let taker = thread::spawn(move || r.take(G).map(|c| (c.node, c.since)));
        let filed = filer.join().unwrap();
        let took = taker.join().unwrap();
        assert_eq!(filed, RingFiled::New);
        match took {
            Some(e) => {
                assert_eq!(e, (0xA, 10));
                assert!(ring.take(G).is_none(), "taken twice");
            }
            None => assert_eq!(ring.take(G).map(|c| (c.node, c.since)), Some((0xA, 10))),
        }
    });
}

/// Two takers of one entry (an accept and a listener's close), the winner
/// reusing the slot for a later generation at once: one of them gets the
/// entry, whole; the other gets nothing, never a mix of the two entries.
#[test]
fn one_taker_wins_and_a_reuse_cannot_tear_the_entry() {
    loom::model(|| {
        let ring = Arc::new(ChildRing::<2>::new());
        assert_eq!(ring.file(G, 0xA, 10), RingFiled::New);
        let a = ring.clone();
        let t1 = thread::spawn(move || a.take(G).map(|c| (c.node, c.since)));
        let b = ring.clone();
        let t2 = thread::spawn(move || {
            let got = b.take(G).map(|c| (c.node, c.since));
            if got.is_some() {
                assert_eq!(b.file(LATER, 0xB, 20), RingFiled::New);
            }
            got
        });
        let (x, y) = (t1.join().unwrap(), t2.join().unwrap());
        assert!(
            x.is_some() != y.is_some(),
            "exactly one winner: {x:?} {y:?}"
        );
        for e in [x, y].into_iter().flatten() {
            assert_eq!(e, (0xA, 10));
        }
    });
}
