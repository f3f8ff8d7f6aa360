//! Sizes and offsets of the FreeBSD structures (struct kld_file_stat,
//! struct accept_filter_arg) and listenq.h's struct xlistenq that the
//! runner reads and writes, and listenq.h's constants: computed by clang
//! from SYSDIR's headers at build time (build.rs), none typed by hand.

include!(concat!(env!("OUT_DIR"), "/layout.rs"));
