/*
 * What listenq leaves on a connection it holds: its destructor (the tag),
 * so that it learns when the socket goes, and its receive upcall, whose
 * argument names the listener's filter state; taking both off again (on
 * accept, on the destructor, on filter removal). Decisions are made in
 * Rust (accf.rs, filters.rs).
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
#include <sys/taskqueue.h>
#include <sys/callout.h>
#include <sys/sysctl.h>
#include <sys/fail.h>
#include <sys/time.h>
#include <net/vnet.h>

#include "glue.h"
#include "accf_glue.h"
#include "tag_glue.h"

/*
 * Takes listenq's receive upcall off `so' if it has it, returning its
 * argument (the listener state it names, which the upcall kept alive),
 * NULL if it had another or none.
 */
void *
lq_so_upcall_take(struct socket *so)
{
	void *arg = NULL;

	SOCK_RECVBUF_LOCK_ASSERT(so);
	if (so->so_rcv.sb_upcall == (so_upcall_t *)listenq_accf_callback) {
		arg = so->so_rcv.sb_upcallarg;
		soupcall_clear(so, SO_RCV);
	}
	return (arg);
}

/*
 * Held sockets carry this destructor so listenq learns when they go. A
 * socket taken off its listener's queue by soclose() of the listener (or
 * aborted while evicted) still has listenq's upcall: nothing else clears
 * it, and the listener state it names lives until this says it is gone.
 * sofree() calls it with no lock held and the buffers still set up.
 */
static void
lq_so_dtor(struct socket *so)
{
	void *arg;

	SOCK_RECVBUF_LOCK(so);
	arg = lq_so_upcall_take(so);
	SOCK_RECVBUF_UNLOCK(so);
	listenq_rs_held_gone(so, arg);
}

/*
 * For lq_so_untag()'s first look, made from Rust (kern/socket.rs), and for
 * the tag itself, set from Rust with the socket locked (kern/sockbuf.rs
 * SockLocked::tag, where so_dtor is NULL).
 */
void (*const lq_so_dtor_ptr)(struct socket *) = lq_so_dtor;

void
lq_so_untag_locked(struct socket *so)
{
	SOCK_LOCK_ASSERT(so);
	if (so->so_dtor == lq_so_dtor)
		so->so_dtor = NULL;
}

/*
 * An accepted socket: off with listenq's destructor, and with its upcall
 * if it still has it (accepted between the upcall's SU_ISCONNECTED and
 * soisconnected(), or any path listenq did not foresee), which would
 * otherwise keep its listener state alive with no destructor to free it.
 */
int
lq_so_untag(struct socket *so, void **upcall_arg)
{
	int was = 0;

	*upcall_arg = NULL;
	/*
	 * Most accepted sockets were never held: a first look without the
	 * socket lock spares them a lock round trip on every accept(2). It
	 * cannot miss a tag: listenq tags a socket only in the accept filter
	 * call from soisconnected() (or from the rescue, inherit_glue.c,
	 * which first takes it back off sol_comp), under its socket lock and
	 * its listener's, while it is on sol_incomp; solisten_dequeue() took
	 * the socket off sol_comp under both locks afterwards, so this
	 * thread sees the store. Nothing tags it after that.
	 */
	if (atomic_load_ptr(&so->so_dtor) != lq_so_dtor)
		return (0);
	SOCK_LOCK(so);
	/* Only a held socket gets the upcall, and it is tagged then. */
	if (so->so_dtor == lq_so_dtor) {
		so->so_dtor = NULL;
		was = 1;
		SOCK_RECVBUF_LOCK(so);
		*upcall_arg = lq_so_upcall_take(so);
		SOCK_RECVBUF_UNLOCK(so);
	}
	SOCK_UNLOCK(so);
	return (was);
}

/*
 * Filter removal. accf_destroy runs with the listener locked, before
 * accept_filt_setopt() moves the sockets still flagged SO_ACCEPTFILTER to
 * the completed queue. Flagging every socket listenq holds makes that loop
 * release them too (stock leaves a socket that has already seen its filter
 * waiting for data forever).
 *
 * A flagged socket listenq does not hold has not been through
 * soisconnected() yet (its filter branch clears the flag), and may be
 * inside it right now: when soisconnected() cannot try-lock the listener
 * it unlocks the socket, waits for the listener lock (held here) and then
 * re-checks only so_listen. Moved to sol_comp meanwhile, it would be taken
 * off sol_incomp, which it is no longer on, and sol_comp corrupted ("Bad
 * tailq NEXT(...) != NULL"; stock accf_data does it under load, see
 * t_stress.rs removal_race). Unflagged, it stays on sol_incomp and
 * soisconnected(), which TCP (TF_SONOTCONN), local sockets and SCTP all
 * call once connected, moves it as for a listener without a filter.
 * Either way the kernel only moves it to sol_comp; listenq's upcall is off
 * it first ((U) in work_glue.c).
 */
u_int
lq_accf_release_all(struct socket *head, void **argp)
{
	struct socket *sp;
	void *arg;
	u_int n = 0;

	SOLISTEN_LOCK_ASSERT(head);
	*argp = head->sol_accept_filter_arg;
	TAILQ_FOREACH(sp, &head->sol_incomp, so_list) {
		SOCK_LOCK(sp);
		SOCK_RECVBUF_LOCK(sp);
		arg = lq_so_upcall_take(sp);
		if (arg != NULL)
			sp->so_options |= SO_ACCEPTFILTER;
		else
			sp->so_options &= ~SO_ACCEPTFILTER;
		SOCK_RECVBUF_UNLOCK(sp);
		SOCK_UNLOCK(sp);
		/*
		 * Every upcall on this queue names this listener's state;
		 * one that did not (none should) is given back on its own.
		 */
		if (arg == *argp)
			n++;
		else if (arg != NULL)
			listenq_rs_upcall_gone(arg, sp);
	}
	return (n);
}
