/*
 * listenq accept filters: the deferred work that terminates or delivers a
 * held connection, which needs the listener lock an upcall may not take,
 * and the hold-timeout clock.
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
#include <sys/epoch.h>
#include <net/vnet.h>

#include "glue.h"
#include "accf_glue.h"
#include "tag_glue.h"

MALLOC_DECLARE(M_LISTENQ);
#include "work_glue.h"
#include "soqueue_glue.h"

/*
 * Deferred work: terminate or deliver the held connections a listener's
 * hold queue let go (evicted, or timed out), which wait on its leaving
 * list (policy/src/holdq.rs) for this.
 *
 * Each listener's filter state has one task, embedded in it (struct
 * lq_leave, kern/filter_arg.rs), queued when a connection joins the
 * leaving list and not already queued. So letting a held connection go
 * never needs memory, and holding one allocates nothing of its own.
 * A queued task holds a name on the state (it outlives the task) and one
 * count in lq_work_pending, which unload waits for.
 */

/*
 * Why no TCP timer and no upcall can reach a socket listenq lets go
 * (issue 22's page fault: a tcpcb timer ran tcp_output() on a socket
 * that had become a listener; its cause was stock listen(2) on a
 * half-closed connection, which lq_tcp_listen_check() in socket_glue.c
 * now refuses, not any path here). The argument each path below refers
 * to:
 *
 * (T) listenq never frees, zeroes or reuses socket memory and never makes
 *     a socket a listener. Each path that ends a connection calls
 *     soabort() (pr_abort, then sorele()) on a socket already off its
 *     listener's queues, with the one reference that queue held, as
 *     solisten_enqueue() does with the oldest incomplete connection; each
 *     path that keeps one (deliver, rescue, and the filter's own delivery
 *     in deliver_glue.c) only moves it between sol_incomp and sol_comp
 *     under both socket locks. A socket's memory
 *     goes only through sofree(), which runs pr_detach first: for TCP
 *     tcp_usr_detach() -> tcp_discardcb() stops every timer under the
 *     inpcb write lock, and tcp_timer_enter() runs with that lock held
 *     (callout_init_rw), so a stopped timer cannot fire afterwards. A TCP
 *     connection that soabort() drops but that the stack still needs
 *     (INP_SOCKREF) keeps a reference of TCP's own and is freed by TCP.
 * (U) listenq's receive upcall names the listener's filter state. It is
 *     cleared, under the receive-buffer lock, before a connection is
 *     aborted or delivered (lq_so_upcall_take()); whatever path the
 *     kernel takes instead (the listener's close aborting it, filter
 *     removal), the tagged socket's destructor clears it in sofree()
 *     before pr_detach, and the filter state outlives every socket whose
 *     upcall still names it (kern/filter_arg.rs). So no upcall runs on a
 *     freed socket, and none names a freed state.
 * (W) is about the listener, not the connection: no listenq path has the
 *     kernel wake a listener it does not keep alive (deliver_glue.c).
 */

/*
 * Connections one run lets go before it queues itself again: a flood of
 * evictions on one listener must not keep the other listeners' tasks
 * waiting.
 */
#define	LQ_LEAVE_BATCH	16

static volatile u_int lq_work_pending;

u_int
lq_work_pending_count(void)
{
	return (atomic_load_int(&lq_work_pending));
}

static void lq_leave_run(void *arg, int pending);

/*
 * listenq's own taskqueue, with one thread, from load (the tick's start)
 * to unload (its stop): taskqueue_free(9) waits until its thread has
 * run every task and left, so no thread is still returning through a
 * task function of this module when the module goes. (On the shared
 * taskqueue_thread, a task's last act, the pending count's decrement,
 * left its thread a few instructions inside module code.)
 */
static struct taskqueue *lq_tq;

void
lq_leave_init(struct lq_leave *lv, void *state)
{
	lv->lv_state = state;
	TASK_INIT(&lv->lv_task, 0, lq_leave_run, lv);
}

void
lq_leave_enqueue(struct lq_leave *lv)
{
	atomic_add_int(&lq_work_pending, 1);
	taskqueue_enqueue(lq_tq, &lv->lv_task);
}

/*
 * References on a listener and one connection of its hold queue, so that
 * the task can use both once it drops the state's mutex. Called with that
 * mutex held (listenq_rs_leave_next), under which the connection cannot
 * finish sofree(): its destructor takes the mutex to take its key out of
 * the queue (kern/held_conns.rs says why every key names such a socket), so its
 * memory is valid here; a count already at zero means it is being freed:
 * leave it alone. ESRCH: the listener is being freed (nothing to do);
 * otherwise *so is NULL when only the listener's reference was taken.
 */
int
lq_leave_hold(struct socket *head, struct socket **so)
{
	if (!refcount_acquire_if_not_zero(&head->so_count))
		return (ESRCH);
	if (!refcount_acquire_if_not_zero(&(*so)->so_count))
		*so = NULL;	/* the task only drops the head reference */
	return (0);
}

/*
 * Lets one connection go, as listenq_rs_leave_next() handed it over (no
 * timer or upcall reaches it afterwards: (T) and (U) above): with
 * LQ_LEAVE_DETACHED the references are the ones the incomplete queue held
 * (lq_evict_now); otherwise lq_leave_hold()'s.
 */
static void
lq_leave_one(struct socket *head, struct socket *so, int how)
{
	void *uarg, *harg;
	bool ours, deliver;

	CURVNET_SET(head->so_vnet);
	if (so == NULL) {
		sorele(head);
		goto out;
	}
	if (how == LQ_LEAVE_DETACHED) {
		/*
		 * Off the queue already (counted then): soabort() consumes the
		 * socket's reference, the listener's goes last.
		 */
		SOCK_LOCK(so);
		SOCK_RECVBUF_LOCK(so);
		uarg = lq_so_upcall_take(so);
		SOCK_RECVBUF_UNLOCK(so);
		SOCK_UNLOCK(so);
		if (uarg != NULL)
			listenq_rs_upcall_gone(uarg, so);
		soabort(so);
		sorele(head);
		goto out;
	}
	deliver = how == LQ_LEAVE_DELIVER;
	SOLISTEN_LOCK(head);
	SOCK_LOCK(so);
	ours = so->so_listen == head && so->so_qstate == SQ_INCOMP;
	if (ours) {
		SOCK_RECVBUF_LOCK(so);
		uarg = lq_so_upcall_take(so);
		SOCK_RECVBUF_UNLOCK(so);
		/*
		 * Counted here, where it happens, and before anyone can see
		 * it: a connection the kernel took away in the meantime
		 * (aborted, or moved by filter removal) is not listenq's doing.
		 * The listener's own state, if it still has a listenq filter,
		 * is alive while its lock is held (accf_destroy needs it).
		 */
		harg = NULL;
		if (head->sol_accept_filter != NULL &&
		    head->sol_accept_filter->accf_callback ==
		    listenq_accf_callback)
			harg = head->sol_accept_filter_arg;
		listenq_rs_work_done(harg, uarg, so, deliver);
	}
	if (ours && deliver) {
		/*
		 * What soisconnected() does once a filter is satisfied. The
		 * reference lq_leave_hold() took keeps `head' alive through
		 * solisten_wakeup()'s reads after its unlock ((W)).
		 */
		lq_soqueue_complete(head, so);
		SOCK_UNLOCK(so);
		solisten_wakeup(head);	/* unlocks */
	} else if (ours) {
		lq_soqueue_detach(head, so);
		SOCK_UNLOCK(so);
		sorele_locked(head);	/* the queue's reference; unlocks */
		soabort(so);		/* consumes the queue's reference */
	} else {
		SOCK_UNLOCK(so);
		SOLISTEN_UNLOCK(head);
	}
	sorele(so);
	sorele(head);
out:
	CURVNET_RESTORE();
}

/*
 * The task of the filter state `arg': lets go of its leaving connections
 * one at a time, each popped (and referenced) under the state's mutex and
 * let go without it (the listener lock comes first everywhere).
 */
static void
lq_leave_run(void *arg, int pending __unused)
{
	struct lq_leave *lv = arg;
	struct socket *head, *so;
	int how, n;

	for (n = 0; n < LQ_LEAVE_BATCH; n++) {
		how = listenq_rs_leave_next(lv->lv_state, &head, &so);
		if (how == LQ_LEAVE_NONE) {
			/*
			 * Finding nothing left, listenq_rs_leave_next() gave
			 * up this task's name on the state, which may have
			 * freed the state and this task with it (the last name
			 * of a detached state): neither is touched again. That
			 * is safe for taskqueue(9) too: once this returns,
			 * taskqueue_run_locked() (sys/kern/subr_taskqueue.c)
			 * only passes the task's address to wakeup(9), a
			 * channel it does not read through. The pending count
			 * goes last: unload waits for it to reach zero, and
			 * then for this thread to have returned
			 * (taskqueue_free() in lq_work_stop()).
			 */
			atomic_subtract_int(&lq_work_pending, 1);
			return;
		}
		lq_leave_one(head, so, how);
	}
	/*
	 * More may wait: this task runs again after the others queued
	 * meanwhile, keeping its name on the state and its pending count
	 * (it is still queued as far as the state knows), so the state and
	 * `lv' stay alive. taskqueue(9) allows a running task to queue
	 * itself.
	 */
	taskqueue_enqueue(lq_tq, &lv->lv_task);
}

/*
 * Evicts a held connection at once, from the accept filter upcall that
 * admits a newer one: that upcall runs inside soisconnected() with the
 * listener locked, so the connection can leave sol_incomp right there, as
 * solisten_enqueue() does with the oldest incomplete one. Then the
 * incomplete queue never holds more than the hold queue admits once
 * soisconnected() is done, however many CPUs feed it; deferring the whole
 * eviction left it on the queue until the task ran on another CPU.
 * soabort() needs the listener unlocked, so only that is deferred: the
 * connection's hold queue entry moves to the leaving list as
 * LQ_LEAVE_DETACHED and inherits the references the queue held (on `so',
 * which soabort() consumes, and on the listener), so a close of the
 * listener meanwhile finds nothing of listenq's on its queues and cannot
 * free either socket under the task.
 *
 * The upcall also holds the new connection's receive-buffer lock and the
 * listener's filter state mutex, both taken after socket locks everywhere
 * else, so `so' can only be try-locked here; when that fails, or the
 * listener is not locked by this thread, the whole eviction is deferred
 * (LQ_LEAVE_ABORT: the task takes references and counts it if it still
 * finds it). LQ_LEAVE_DETACHED: `so' left the queue now (the caller counts
 * it). LQ_LEAVE_NONE: the kernel already took it away, nothing to do.
 * `head' and `so' are live for the reason given at lq_leave_hold(); the
 * detached connection keeps the queue's reference until lq_leave_one()
 * aborts it ((T) above).
 */
int
lq_evict_now(struct socket *head, struct socket *so)
{
	if (!mtx_owned(SOCK_MTX(head)) || !mtx_trylock(SOCK_MTX(so)))
		return (LQ_LEAVE_ABORT);
	if (so->so_listen != head || so->so_qstate != SQ_INCOMP) {
		SOCK_UNLOCK(so);
		return (LQ_LEAVE_NONE);
	}
	lq_soqueue_detach(head, so);
	SOCK_UNLOCK(so);
	return (LQ_LEAVE_DETACHED);
}

/*
 * A TCP listener's last reference, given back one network-epoch grace
 * period after its close (socket_glue.c lq_tcp_listen_close() says why).
 * The epoch callback runs in a thread of the kernel's, outside the epoch
 * and with no lock held, and may free the listener there (sofree(9) of a
 * listener takes mutexes only, as it does when a TCP input drops the last
 * reference). Not counted in lq_work_pending, which refuses unload: a
 * close that just happened must not make kldunload fail; unload drains the
 * callbacks instead (lq_close_fini()), once no pr_close of listenq's can
 * run any more.
 */
struct lq_close {
	struct epoch_context	lc_ctx;
	struct socket		*lc_head;
};

static void
lq_close_grace(epoch_context_t ctx)
{
	struct lq_close *lc = __containerof(ctx, struct lq_close, lc_ctx);
	struct socket *head = lc->lc_head;

	free(lc, M_LISTENQ);
	/* sofree() runs in the socket's vnet (a callback has none). */
	CURVNET_SET(head->so_vnet);
	sorele(head);
	CURVNET_RESTORE();
}

int
lq_close_defer(struct socket *head)
{
	struct lq_close *lc;

	lc = malloc(sizeof(*lc), M_LISTENQ, M_NOWAIT | M_ZERO);
	if (lc == NULL)
		return (ENOMEM);
	/* The closing descriptor's reference is still held. */
	soref(head);
	lc->lc_head = head;
	NET_EPOCH_CALL(lq_close_grace, &lc->lc_ctx);
	return (0);
}

void
lq_close_fini(void)
{
	NET_EPOCH_DRAIN_CALLBACKS();
}

/* The hold-timeout clock: one callout for the module. */
static struct callout lq_tick_callout;
static int lq_tick_ms;

static void
lq_tick(void *arg __unused)
{
	listenq_rs_tick();
	callout_schedule(&lq_tick_callout, MAX(1, lq_tick_ms * hz / 1000));
}

/* The filter states' taskqueue, then the hold-timeout callout. */
void
lq_work_start(int ms)
{
	lq_tq = taskqueue_create("listenq", M_WAITOK, taskqueue_thread_enqueue,
	    &lq_tq);
	taskqueue_start_threads(&lq_tq, 1, PWAIT, "listenq taskq");
	lq_tick_ms = ms;
	callout_init(&lq_tick_callout, 1);
	callout_reset(&lq_tick_callout, MAX(1, ms * hz / 1000), lq_tick, NULL);
}

void
lq_work_stop(void)
{
	callout_drain(&lq_tick_callout);
	taskqueue_free(lq_tq);
	lq_tq = NULL;
}

/*
 * Knobs, under kern.ipc.listenq; loader tunables as well. Their OIDs are
 * added with the module's other handlers (sysctl_glue.c
 * lq_sysctl_attach()), which range-check them.
 */
u_int lq_hold_timeout_ms = 0;
int lq_hold_timeout_drop = 0;
