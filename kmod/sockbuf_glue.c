/*
 * listenq accept filters: reading a held connection's receive buffer,
 * with the receive-buffer lock held (the accept filter callback).
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
 * Skips `off' such bytes, then copies up to `len' into `buf' (counts them
 * when `buf' is NULL); returns how many it copied (or counted).
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
			if (buf != NULL)
				m_copydata(m, off, k, buf + n);
			n += k;
			off = 0;
			if (n == len)
				return (n);
		}
	}
	return (n);
}

void
lq_sb_state(struct socket *so, struct lq_sbstate *out)
{
	SOCK_RECVBUF_LOCK_ASSERT(so);
	out->avail = lq_sb_data(&so->so_rcv, 0, NULL, UINT_MAX);
	out->full = sbspace(&so->so_rcv) <= 0;
	out->eof = (so->so_rcv.sb_state & SBS_CANTRCVMORE) != 0;
	out->sock_locked = mtx_owned(SOCK_MTX(so));
	out->readable = soreadable(so);
	/*
	 * so_qstate is SOCK_LOCK's (b), which cannot be taken under the
	 * receive-buffer lock; socketvar.h allows such unlocked reads with
	 * care. What matters is read right: the kernel takes a connection off
	 * the incomplete queue (soclose() of the listener, solisten_enqueue()
	 * dropping the oldest) before it aborts it in the same thread, and the
	 * abort is what calls the upcall one last time (soisdisconnected()).
	 */
	out->queued = atomic_load_int((volatile u_int *)&so->so_qstate) ==
	    SQ_INCOMP;
}

u_int
lq_sb_copy(struct socket *so, u_int off, void *buf, u_int len)
{
	SOCK_RECVBUF_LOCK_ASSERT(so);
	if (buf == NULL)
		return (0);
	return (lq_sb_data(&so->so_rcv, off, buf, len));
}
