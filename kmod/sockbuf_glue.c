/*
 * listenq accept filters: reading a held connection's receive buffer,
 * with the receive-buffer lock held (the accept filter callback). Its
 * counters and flags are read in Rust (offsets_glue.h lq_sb_offsets);
 * only the walk of the mbuf chains is here.
 */

#include <sys/param.h>
#include <sys/systm.h>
#include <sys/kernel.h>
#include <sys/limits.h>
#include <sys/malloc.h>
#include <sys/lock.h>
#include <sys/mutex.h>
#include <sys/mbuf.h>
#include <sys/proc.h>
#include <sys/refcount.h>
#include <sys/socket.h>
#include <sys/socketvar.h>
#include <sys/protosw.h>
#include <sys/sockbuf.h>

#include "glue.h"
#include "sockbuf_glue.h"

/*
 * The bytes a reader of the socket would get, in order, as soreceive()
 * hands them out over successive reads: record after record (m_nextpkt),
 * the mbufs of each record (m_next), without the sender's address
 * (MT_SONAME, first in every seqpacket record) and control messages
 * (MT_CONTROL, e.g. SCM_RIGHTS), and nothing from the first mbuf that is
 * not ready yet (M_NOTAVAIL: sendfile(2) pages still being read) on.
 *
 * sbavail() is no bound for these bytes: sballoc() counts address and
 * control mbufs in sb_acc too, and m_copydata() follows only m_next, so
 * copying sbavail() bytes from sb_mb ran off the first record's chain
 * ("m_copydata, length > size of mbuf chain") as soon as the buffer held
 * two. Only the chain itself bounds this walk.
 *
 * Skips `off' such bytes, then copies up to `len' into `buf'; returns how
 * many it copied.
 */
static u_int
lq_sb_data(struct sockbuf *sb, u_int off, char *buf, u_int len)
{
	struct mbuf *rec, *m;
	u_int n = 0, k;

	SOCKBUF_LOCK_ASSERT(sb);
	for (rec = sb->sb_mb; rec != NULL; rec = rec->m_nextpkt) {
		for (m = rec; m != NULL; m = m->m_next) {
			if ((m->m_flags & M_NOTAVAIL) != 0)
				return (n);
			if (m->m_type == MT_SONAME || m->m_type == MT_CONTROL ||
			    m->m_len <= 0)
				continue;
			if (off >= (u_int)m->m_len) {
				off -= m->m_len;
				continue;
			}
			k = MIN((u_int)m->m_len - off, len - n);
			/* One mbuf at a time: m_copydata() knows M_EXTPG. */
			m_copydata(m, off, k, buf + n);
			n += k;
			off = 0;
			if (n == len)
				return (n);
		}
	}
	return (n);
}

u_int
lq_sb_copy(struct socket *so, u_int off, void *buf, u_int len)
{
	SOCK_RECVBUF_LOCK_ASSERT(so);
	if (buf == NULL)
		return (0);
	return (lq_sb_data(&so->so_rcv, off, buf, len));
}

/*
 * The same bytes in place, run by run, for a parser that reads each byte
 * once: lq_sb_seek() puts the cursor at the `off'th data byte (O(1) when
 * that byte is in the last mbuf, else one walk, O(mbufs), as stock
 * accf_http's own), then each lq_sb_next() hands out
 * the next contiguous run of it in an mbuf and moves on. The runs stay
 * valid while the receive-buffer lock is held: appends only add bytes
 * after them (sbcompress() writes past m_len). A run that cannot be read
 * in place (an unmapped M_EXTPG mbuf) ends the walk: the caller copies
 * from there (lq_sb_copy(), which knows how).
 */
static bool
lq_sb_data_mbuf(const struct mbuf *m)
{
	return (m->m_type != MT_SONAME && m->m_type != MT_CONTROL &&
	    m->m_len > 0);
}

void
lq_sb_seek(struct socket *so, u_int off, struct lq_sb_cursor *c)
{
	struct sockbuf *sb = &so->so_rcv;
	struct mbuf *rec, *m;

	SOCK_RECVBUF_LOCK_ASSERT(so);
	c->rec = NULL;
	c->m = NULL;
	c->off = 0;
	/*
	 * A stream's new bytes are most often all in its last mbuf (a
	 * segment of its own, or sbcompress()ed onto the tail): start there,
	 * O(1) per upcall, when the buffer is one record with neither
	 * control nor not-yet-ready data, so that sb_ccc counts exactly the
	 * data bytes the walk would.
	 */
	m = sb->sb_mbtail;
	if (m != NULL && sb->sb_mb != NULL && sb->sb_mb->m_nextpkt == NULL &&
	    sb->sb_ctl == 0 && sb->sb_acc == sb->sb_ccc &&
	    (m->m_flags & (M_NOTAVAIL | M_EXTPG)) == 0 &&
	    lq_sb_data_mbuf(m) && sb->sb_ccc >= (u_int)m->m_len &&
	    off >= sb->sb_ccc - (u_int)m->m_len) {
		if (off < sb->sb_ccc) {
			c->rec = sb->sb_mb;
			c->m = m;
			c->off = off - (sb->sb_ccc - (u_int)m->m_len);
		}
		return;
	}
	for (rec = sb->sb_mb; rec != NULL; rec = rec->m_nextpkt) {
		for (m = rec; m != NULL; m = m->m_next) {
			if ((m->m_flags & M_NOTAVAIL) != 0)
				return;
			if (!lq_sb_data_mbuf(m))
				continue;
			if (off >= (u_int)m->m_len) {
				off -= m->m_len;
				continue;
			}
			c->rec = rec;
			c->m = m;
			c->off = off;
			return;
		}
	}
}

u_int
lq_sb_next(struct socket *so, struct lq_sb_cursor *c, const char **p)
{
	struct mbuf *m = c->m, *rec = c->rec;
	u_int n;

	SOCK_RECVBUF_LOCK_ASSERT(so);
	*p = NULL;
	while (m != NULL) {
		if ((m->m_flags & M_NOTAVAIL) != 0)
			break;
		if ((m->m_flags & M_EXTPG) != 0) {
			/* Left at it: lq_sb_copy() reads on from here. */
			c->m = m;
			c->rec = rec;
			return (0);
		}
		if (lq_sb_data_mbuf(m) && c->off < (u_int)m->m_len) {
			*p = mtod(m, const char *) + c->off;
			n = (u_int)m->m_len - c->off;
			/* Past this run: the next mbuf, or the next record's. */
			c->off = 0;
			if (m->m_next != NULL) {
				c->m = m->m_next;
				c->rec = rec;
			} else {
				c->rec = rec->m_nextpkt;
				c->m = c->rec;
			}
			return (n);
		}
		c->off = 0;
		if (m->m_next != NULL)
			m = m->m_next;
		else {
			rec = rec->m_nextpkt;
			m = rec;
		}
	}
	c->m = NULL;
	c->rec = NULL;
	return (0);
}
