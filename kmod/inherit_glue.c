/*
 * listenq accept filters on a kernel whose new connections do not inherit
 * SO_ACCEPTFILTER.
 *
 * soisconnected() hands a connection on a listener's incomplete queue to
 * the listener's accept filter only if the connection carries
 * SO_ACCEPTFILTER. FreeBSD 14 as released never gives it one:
 * solisten_clone() leaves the flag out of the options a connection
 * inherits, and solisten_enqueue() does not set it. There soisconnected()
 * moves every connection of a filtered listener straight to sol_comp, and
 * every accept filter, stock or not, fails open (README, "Supported
 * FreeBSD versions"). A patched kernel sets the flag in
 * solisten_enqueue().
 *
 * listenq finds out at load which kind it runs on (lq_inherit_probe()).
 * On one that does not inherit, its listen upcall, which solisten_wakeup()
 * calls right after the connection reached sol_comp, puts the connection
 * back and runs listenq's filter on it (lq_accf_rescue()). On one that
 * inherits, nothing here runs: soisconnected() calls the filter as it
 * always did, so no connection is filtered twice.
 */
#include <sys/param.h>
#include <sys/systm.h>
#include <sys/kernel.h>
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
#include <sys/sysctl.h>
#include <sys/ucred.h>
#include <sys/jail.h>
#include <net/vnet.h>

#include "glue.h"
#include "accf_glue.h"
#include "tag_glue.h"
#include "inherit_glue.h"
#include "soqueue_glue.h"

static int lq_accf_inherit = LQ_INHERIT_UNKNOWN;
/* Read inline by listenq's listen upcall (socket_glue.c) on every completion. */
volatile u_int lq_rescue_on;

SYSCTL_DECL(_kern_ipc_listenq);
SYSCTL_INT(_kern_ipc_listenq, OID_AUTO, accf_inherit, CTLFLAG_RD,
    &lq_accf_inherit, 0,
    "Whether this kernel's new connections inherit SO_ACCEPTFILTER: 1 the "
    "kernel runs accept filters (soisconnected()), 0 listenq's filters "
    "hold connections from its listen upcall, -1 not found out (as 0)");

/* Never registered: only its address is set on the probe's listener. */
static struct accept_filter lq_probe_filter = {
	.accf_name = "listenq-probe",
};

/*
 * The probe runs the two functions that decide, on a listener nobody else
 * can reach: a local stream socket made a listener by solisten_proto()
 * alone (not bound, so not in any namespace, and no peer can connect to
 * it), given a filter the way accept_filt_setopt() gives one (its
 * sol_accept_filter and SO_ACCEPTFILTER, under the listener lock). A
 * connection made by sonewconn(), as a local connect(2) makes one, tells
 * whether it got the flag, whichever way the kernel was patched (the clone's
 * inherited options or solisten_enqueue()). The connection then leaves as
 * solisten_enqueue() drops the oldest incomplete one (soabort()), the
 * listener loses its filter before soclose() (so sofree() calls no
 * accf_destroy) and is closed. Nothing is left, and no listenq hook sees
 * either socket: the protocol switches are not hooked yet. Neither socket
 * is TCP, has a peer or has an upcall ((T), (U) in work_glue.c).
 */
int
lq_inherit_probe(void)
{
	struct thread *td = curthread;
	struct socket *head, *so;
	int error, inherit = LQ_INHERIT_UNKNOWN;

	/* The vnet socreate() gives the socket (its credential's). */
	CURVNET_SET(TD_TO_VNET(td));
	error = socreate(PF_LOCAL, &head, SOCK_STREAM, 0, td->td_ucred, td);
	if (error != 0)
		goto out;
	SOCK_LOCK(head);
	error = solisten_proto_check(head);
	if (error == 0) {
		solisten_proto(head, 1);
		head->sol_accept_filter = &lq_probe_filter;
		head->so_options |= SO_ACCEPTFILTER;
	}
	SOCK_UNLOCK(head);
	if (error != 0)
		goto close;
	/* solisten_clone(), pr_attach, solisten_enqueue(so, 0). */
	so = sonewconn(head, 0);
	if (so != NULL) {
		SOLISTEN_LOCK(head);
		SOCK_LOCK(so);
		inherit = (so->so_options & SO_ACCEPTFILTER) != 0 ?
		    LQ_INHERIT_YES : LQ_INHERIT_NO;
		/* Only this thread knows `head': still where it was put. */
		MPASS(so->so_listen == head && so->so_qstate == SQ_INCOMP);
		lq_soqueue_detach(head, so);
		SOCK_UNLOCK(so);
		head->sol_accept_filter = NULL;
		head->so_options &= ~SO_ACCEPTFILTER;
		sorele_locked(head);	/* the queue's reference; unlocks */
		soabort(so);		/* consumes the connection's */
	} else {
		SOCK_LOCK(head);
		head->sol_accept_filter = NULL;
		head->so_options &= ~SO_ACCEPTFILTER;
		SOCK_UNLOCK(head);
	}
close:
	(void)soclose(head);
out:
	CURVNET_RESTORE();
	lq_accf_inherit = inherit;
	atomic_store_rel_int(&lq_rescue_on, inherit != LQ_INHERIT_YES);
	return (inherit);
}

/*
 * From listenq's listen upcall, which solisten_wakeup() calls with the
 * listener locked right after a connection reached sol_comp, on a kernel
 * that does not inherit SO_ACCEPTFILTER. If the listener's filter is
 * listenq's and that connection has not met it, the connection goes back
 * to sol_incomp and the filter runs on it as soisconnected()'s filter
 * branch would run it: the filter's upcall set on the receive buffer, the
 * filter called once with the connection, its buffer and the listener
 * locked. Held (SU_OK): 1, and the caller makes no wakeup. Satisfied at
 * once: it stays on sol_comp, 0.
 *
 * Which connection: each insertion into sol_comp is followed by
 * solisten_wakeup() under the same hold of the listener lock, so the new
 * one is the last. It has met listenq's filter if it carries listenq's
 * tag (accf.rs admit(): every connection the filter holds is tagged until
 * accept(2), and the deferred work delivers only those); the filter's
 * removal (accept_filt_setopt()) releases connections with no filter left
 * on the listener, which this leaves alone.
 *
 * No visible window. sol_comp is read only under the listener lock:
 * solisten_dequeue() for accept(2), sopoll_generic() for poll(2) and
 * select(2), filt_soread() for kevent(2) (a listener's knlist lock is its
 * socket lock), SO_LISTENQLEN. soisconnected() took that lock before it
 * inserted the connection and solisten_wakeup() drops it only after this
 * returns, so no reader can find the connection on sol_comp. The wakeups:
 * select and kevent waiters are woken by listenq's upcall itself, which
 * makes none for a connection held here; solisten_wakeup()'s
 * wakeup_one(&sol_comp) after the unlock wakes a thread blocked in
 * accept(2), which finds sol_comp as it was and sleeps again
 * (solisten_dequeue()'s loop); a SS_ASYNC listener gets a SIGIO with
 * nothing to accept, as after any connection aborted before accept(2).
 *
 * Lock order: the listener's lock, then the connection's, then its
 * receive buffer's, then the filter state's, as in soisconnected().
 * The connection only moves between the two queues here; timers and
 * upcalls: (T) and (U) in work_glue.c.
 */
int
lq_accf_rescue(struct socket *head)
{
	struct accept_filter *af;
	struct socket *so;
	void *arg;
	int ret;

	SOLISTEN_LOCK_ASSERT(head);
	af = head->sol_accept_filter;
	if (af == NULL || af->accf_callback != listenq_accf_callback)
		return (0);
	so = TAILQ_LAST(&head->sol_comp, accept_queue);
	if (so == NULL)
		return (0);
	SOCK_LOCK(so);
	if (so->so_listen != head || so->so_qstate != SQ_COMP ||
	    so->so_dtor == lq_so_dtor_ptr) {
		SOCK_UNLOCK(so);
		return (0);
	}
	TAILQ_REMOVE(&head->sol_comp, so, so_list);
	head->sol_qlen--;
	TAILQ_INSERT_TAIL(&head->sol_incomp, so, so_list);
	head->sol_incqlen++;
	so->so_qstate = SQ_INCOMP;
	arg = head->sol_accept_filter_arg;
	SOCK_RECVBUF_LOCK(so);
	soupcall_set(so, SO_RCV, af->accf_callback, arg);
	ret = af->accf_callback(so, arg, M_NOWAIT);
	if (ret == SU_ISCONNECTED) {
		soupcall_clear(so, SO_RCV);
		SOCK_RECVBUF_UNLOCK(so);
		lq_soqueue_complete(head, so);
		SOCK_UNLOCK(so);
		return (0);
	}
	SOCK_RECVBUF_UNLOCK(so);
	SOCK_UNLOCK(so);
	return (1);
}
