/*
 * listenq accept filters: a connection its filter released, delivered to
 * its listener's completed queue from the filter's own receive upcall,
 * and woken for as solisten_wakeup() would, but without that function's
 * unlocked tail.
 *
 * (W) Why no thread reads a listener after it may be freed (the fuzzer's
 *     finding 7, RELIABILITY.md). When an accept filter answers
 *     SU_ISCONNECTED in a receive upcall, sowakeup() calls soisconnected(),
 *     which moves the connection to sol_comp and calls solisten_wakeup().
 *     That function drops the listener lock and then reads the listener
 *     again (wakeup_one(&sol_comp), so_state, so_sigio) holding no
 *     reference of its own. The thread holds only the connection's pcb
 *     lock, and nothing keeps the listener: close(2) of the listener
 *     gives back the queued connections' references to it under its
 *     lock, without their pcb locks, and frees it. An O_ASYNC listener's
 *     so_sigio then comes from freed memory, and pgsigio() faults. Every
 *     accept filter of a kernel whose connections inherit SO_ACCEPTFILTER
 *     reaches it (tests/runner/src/t_wakeup_race.rs, listenq.repro=wakeup:
 *     FreeBSD's accf_data, no listenq); TCP's own completion path does not
 *     (solisten_enqueue() runs under the listener's pcb lock), nor does a
 *     local connect(2) (the listener's vnode lock).
 *
 *     So listenq's filters never answer SU_ISCONNECTED where the kernel
 *     would run that tail for them. A satisfied connection is delivered
 *     here instead, in the upcall: the listener lock is taken (try-locked:
 *     the upcall holds locks that come after it) and kept until the
 *     listener has been woken, and nothing reads the listener after the
 *     unlock. When the locks are busy, or the listener wants SIGIO (which
 *     pgsigio() must send without socket locks held), or has a listen
 *     upcall that is not listenq's, the state's task delivers it
 *     (work_glue.c lq_leave_one(), LQ_LEAVE_DELIVER), holding a reference
 *     on the listener across solisten_wakeup(). The one answer left is
 *     for a connection the filter could not hold at all (no memory) when
 *     neither way is open; it is the kernel's own path, as with any
 *     filter (listenq(4) BUGS).
 *
 * Lock order as in soisconnected(): the listener's lock, the connection's,
 * its receive buffer's, the filter state's. Try-locks only, since the
 * later ones are held here.
 */
#include <sys/param.h>
#include <sys/systm.h>
#include <sys/kernel.h>
#include <sys/lock.h>
#include <sys/mutex.h>
#include <sys/proc.h>
#include <sys/socket.h>
#include <sys/socketvar.h>
#include <sys/sockbuf.h>

#include "glue.h"
#include "tag_glue.h"
#include "socket_glue.h"
#include "soqueue_glue.h"
#include "inherit_glue.h"
#include "deliver_glue.h"

/*
 * `head' is live: the filter state is attached to it, and detaching needs
 * its lock, which the caller's state mutex orders after (accf_destroy runs
 * under the listener lock and takes the state's mutex). Once its lock is
 * taken here it stays live until lq_deliver_finish() drops it.
 *
 * On the first call, from soisconnected(), this thread already holds both
 * socket locks. Under the rescue of a kernel that does not inherit
 * SO_ACCEPTFILTER (inherit_glue.c) the listen upcall would lock the
 * connection again: the task delivers then.
 */
int
lq_deliver_begin(struct socket *head, struct socket *so, void **upcall_arg)
{
	int took = 0;

	SOCK_RECVBUF_LOCK_ASSERT(so);
	*upcall_arg = NULL;
	if (!mtx_owned(SOCK_MTX(head))) {
		if (!mtx_trylock(SOCK_MTX(head)))
			return (LQ_DELIVER_DEFER);
		took |= LQ_DELIVER_TOOK_HEAD;
	}
	if (!mtx_owned(SOCK_MTX(so))) {
		if (!mtx_trylock(SOCK_MTX(so)))
			goto defer;
		took |= LQ_DELIVER_TOOK_SO;
	} else if (atomic_load_acq_int(&lq_rescue_on) != 0)
		goto defer;
	if (!SOLISTENING(head) || so->so_listen != head ||
	    so->so_qstate != SQ_INCOMP)
		goto defer;
	/* pgsigio() takes the SIGIO and process locks: not under these. */
	if ((head->so_state & SS_ASYNC) != 0 && head->so_sigio != NULL)
		goto defer;
	if (!lq_sol_upcall_is_ours(head))
		goto defer;
	*upcall_arg = lq_so_upcall_take(so);
	return (took);
defer:
	if (took & LQ_DELIVER_TOOK_SO)
		SOCK_UNLOCK(so);
	if (took & LQ_DELIVER_TOOK_HEAD)
		SOLISTEN_UNLOCK(head);
	return (LQ_DELIVER_DEFER);
}

/*
 * What soisconnected() does once a filter is satisfied, and what
 * solisten_wakeup() does, all under the listener lock: no read of the
 * listener after it is dropped ((W) above). wakeup_one() under the lock
 * only means the woken accept(2) waits for it; solisten_dequeue() loops
 * on sol_comp anyway.
 */
void
lq_deliver_finish(struct socket *head, struct socket *so, int took)
{
	lq_soqueue_complete(head, so);
	if (took & LQ_DELIVER_TOOK_SO)
		SOCK_UNLOCK(so);
	lq_listen_wakeup_locked(head);
	wakeup_one(&head->sol_comp);
	if (took & LQ_DELIVER_TOOK_HEAD)
		SOLISTEN_UNLOCK(head);
}
