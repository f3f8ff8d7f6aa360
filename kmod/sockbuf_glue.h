/* listenq: a held connection's receive buffer, see sockbuf_glue.c. */
#ifndef LISTENQ_SOCKBUF_GLUE_H
#define LISTENQ_SOCKBUF_GLUE_H

#include <sys/types.h>

struct socket;

struct lq_sbstate {
	u_int	avail;		/* data bytes a reader would get (lq_sb_copy) */
	int	full;		/* no space left in the receive buffer */
	int	eof;		/* SBS_CANTRCVMORE */
	int	sock_locked;	/* SOCK_LOCK held: called from soisconnected() */
	int	readable;	/* soreadable(): sb_lowat bytes, an error or EOF */
	int	queued;		/* on its listener's incomplete queue (SQ_INCOMP) */
};

void	lq_sb_state(struct socket *so, struct lq_sbstate *out);
/*
 * Copies up to `len' of the data bytes a reader would get, from the
 * `off'th on, across records, skipping address and control mbufs;
 * returns how many it copied.
 */
u_int	lq_sb_copy(struct socket *so, u_int off, void *buf, u_int len);

#endif
