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

#endif
