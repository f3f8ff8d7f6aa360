/*
 * Where the fields the per-connection paths read sit in struct socket and
 * struct pcpu, so that kmod/src/kern reads each with one load instead of a
 * call into the glue (a connection passes listenq's hooks four times).
 * Offsets rather than accessors, computed by the compiler from these very
 * headers when bindgen runs; only bindings/wrapper.h includes this file.
 */
#ifndef LISTENQ_OFFSETS_GLUE_H
#define LISTENQ_OFFSETS_GLUE_H

#include <sys/param.h>
#include <sys/lock.h>
#include <sys/mutex.h>
#include <sys/pcpu.h>
#include <sys/socket.h>
#include <sys/socketvar.h>

enum lq_offsets {
	/* (a): set at creation, never changes. */
	LQ_OFF_SO_PROTO = __offsetof(struct socket, so_proto),
	/* (b): SO_ACCEPTCONN, set by solisten_proto() with the socket locked. */
	LQ_OFF_SO_OPTIONS = __offsetof(struct socket, so_options),
	/* (h): set in soalloc(), never changes. */
	LQ_OFF_SO_GENCNT = __offsetof(struct socket, so_gencnt),
	/* (b) */
	LQ_OFF_SO_DTOR = __offsetof(struct socket, so_dtor),
	/* (e): the listener's. */
	LQ_OFF_SOL_OVERCOUNT = __offsetof(struct socket, sol_overcount),
	LQ_OFF_SOL_LASTOVER = __offsetof(struct socket, sol_lastover),
	/* (e): a listener's completed queue, and a connection's link on it. */
	LQ_OFF_SOL_COMP = __offsetof(struct socket, sol_comp),
	LQ_OFF_SO_LIST = __offsetof(struct socket, so_list),
	LQ_OFF_PC_CPUID = __offsetof(struct pcpu, pc_cpuid),
	LQ_SO_ACCEPTCONN = SO_ACCEPTCONN,
};

/*
 * Where the fields the accept filter callback reads sit in struct socket
 * (and curthread in struct pcpu), so that kmod/src/kern/sockbuf.rs reads
 * each with one load instead of a call into the glue: the callback runs
 * twice for every filtered connection. Computed by the compiler from
 * these very headers when bindgen runs (as the enum above).
 */
enum lq_sb_offsets {
	/* (a) of the receive buffer: its lock is held in the callback. */
	LQ_SB_OFF_RCV_STATE = __offsetof(struct socket, so_rcv.sb_state),
	LQ_SB_OFF_RCV_FLAGS = __offsetof(struct socket, so_rcv.sb_flags),
	LQ_SB_OFF_RCV_ACC = __offsetof(struct socket, so_rcv.sb_acc),
	LQ_SB_OFF_RCV_CCC = __offsetof(struct socket, so_rcv.sb_ccc),
	LQ_SB_OFF_RCV_MBCNT = __offsetof(struct socket, so_rcv.sb_mbcnt),
	LQ_SB_OFF_RCV_HIWAT = __offsetof(struct socket, so_rcv.sb_hiwat),
	LQ_SB_OFF_RCV_LOWAT = __offsetof(struct socket, so_rcv.sb_lowat),
	LQ_SB_OFF_RCV_MBMAX = __offsetof(struct socket, so_rcv.sb_mbmax),
	/* (f), read unlocked as soreadable() does. */
	LQ_SB_OFF_SO_ERROR = __offsetof(struct socket, so_error),
	LQ_SB_OFF_SO_RERROR = __offsetof(struct socket, so_rerror),
	/* (b), read unlocked: see RcvLocked::queued(). */
	LQ_SB_OFF_SO_QSTATE = __offsetof(struct socket, so_qstate),
	/* SOCK_MTX(so)->mtx_lock, for mtx_owned(). */
	LQ_SB_OFF_SO_LOCK = __offsetof(struct socket, so_lock.mtx_lock),
	LQ_SB_OFF_PC_CURTHREAD = __offsetof(struct pcpu, pc_curthread),
	LQ_SB_SQ_INCOMP = SQ_INCOMP,
	LQ_SB_SBS_CANTRCVMORE = SBS_CANTRCVMORE,
	LQ_SB_SB_STOP = SB_STOP,
	LQ_SB_MTX_FLAGMASK = MTX_FLAGMASK,
};

#endif
