/* listenq: a held connection's receive buffer, see sockbuf_glue.c. */
#ifndef LISTENQ_SOCKBUF_GLUE_H
#define LISTENQ_SOCKBUF_GLUE_H

#include <sys/types.h>

struct mbuf;
struct socket;

/*
 * Copies up to `len' of the data bytes a reader would get, from the
 * `off'th on, across records, skipping address and control mbufs;
 * returns how many it copied.
 */
u_int	lq_sb_copy(struct socket *so, u_int off, void *buf, u_int len);

/* Where a walk of those bytes in place is (sockbuf_glue.c). */
struct lq_sb_cursor {
	struct mbuf	*rec;
	struct mbuf	*m;
	u_int		off;
};
/* Puts `c' at the `off'th data byte (c->m NULL: none there yet). */
void	lq_sb_seek(struct socket *so, u_int off, struct lq_sb_cursor *c);
/*
 * The next run of data bytes in place from `c' (*p, the returned length),
 * moving `c' past it; 0 at the end (c->m NULL), or where the bytes cannot
 * be read in place (c->m left there: the caller copies from there).
 */
u_int	lq_sb_next(struct socket *so, struct lq_sb_cursor *c, const char **p);

#endif
