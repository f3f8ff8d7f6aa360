/* listenq: a held connection's receive buffer, see sockbuf_glue.c. */
#ifndef LISTENQ_SOCKBUF_GLUE_H
#define LISTENQ_SOCKBUF_GLUE_H

#include <sys/types.h>

struct socket;

/*
 * Copies up to `len' of the data bytes a reader would get, from the
 * `off'th on, across records, skipping address and control mbufs;
 * returns how many it copied.
 */
u_int	lq_sb_copy(struct socket *so, u_int off, void *buf, u_int len);

#endif
