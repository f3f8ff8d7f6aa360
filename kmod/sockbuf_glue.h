/* listenq: a held connection's receive buffer, see sockbuf_glue.c. */
#ifndef LISTENQ_SOCKBUF_GLUE_H
#define LISTENQ_SOCKBUF_GLUE_H

#include <sys/param.h>
#include <sys/lock.h>
#include <sys/mutex.h>
#include <sys/pcpu.h>
#include <sys/socket.h>
#include <sys/socketvar.h>

/*
 * Where the fields the accept filter callback reads sit in struct socket
 * (and curthread in struct pcpu), so that kmod/src/kern/sockbuf.rs reads
 * each with one load instead of a call into the glue: the callback runs
 * twice for every filtered connection. Computed by the compiler from
 * these very headers when bindgen runs (as offsets_glue.h).
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
	/* (b): listenq's destructor goes here (accf_glue.c lq_so_dtor). */
	LQ_SB_OFF_SO_DTOR = __offsetof(struct socket, so_dtor),
	/* SOCK_MTX(so)->mtx_lock, for mtx_owned(). */
	LQ_SB_OFF_SO_LOCK = __offsetof(struct socket, so_lock.mtx_lock),
	LQ_SB_OFF_PC_CURTHREAD = __offsetof(struct pcpu, pc_curthread),
	LQ_SB_SQ_INCOMP = SQ_INCOMP,
	LQ_SB_SBS_CANTRCVMORE = SBS_CANTRCVMORE,
	LQ_SB_SB_STOP = SB_STOP,
	LQ_SB_MTX_FLAGMASK = MTX_FLAGMASK,
};

/*
 * Copies up to `len' of the data bytes a reader would get, from the
 * `off'th on, across records, skipping address and control mbufs;
 * returns how many it copied.
 */
u_int	lq_sb_copy(struct socket *so, u_int off, void *buf, u_int len);

#endif
