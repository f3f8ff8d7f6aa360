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
#include <sys/fail.h>
#include <net/vnet.h>

#include "glue.h"
#include "accf_glue.h"
#include "work_glue.h"

MALLOC_DECLARE(M_LISTENQ);

/*
 * Deferred work: terminate or deliver one held connection.
 *
 * Each held connection gets its work item when it is admitted, so that
 * terminating or delivering it later never needs memory: a connection
 * listenq cannot give an item to is not held at all (it passes, as with
 * no filter), and one it holds can always be let go.
 */

struct lq_work {
	struct task	 w_task;
	struct socket	*w_head;
	struct socket	*w_so;
	int		 w_deliver;
	int		 w_detached;	/* lq_work_evict_now(): only soabort() left */
};

/* 56 bytes, a 64-byte malloc(9) bucket per held connection: listenq(4). */
CTASSERT(sizeof(struct lq_work) == 56);

static volatile u_int lq_work_pending;

u_int
lq_work_pending_count(void)
{
	return (atomic_load_int(&lq_work_pending));
}

struct lq_work *
lq_work_alloc(void)
{
	struct lq_work *w;

	KFAIL_POINT_CODE_FLAGS(DEBUG_FP, listenq_work_alloc,
	    FAIL_POINT_NONSLEEPABLE, return (NULL));
	w = malloc(sizeof(*w), M_LISTENQ, M_NOWAIT | M_ZERO);
	return (w);
}

void
lq_work_free(struct lq_work *w)
{
	free(w, M_LISTENQ);
}

static void
lq_work_run(void *arg, int pending __unused)
{
	struct lq_work *w = arg;
	struct socket *head = w->w_head, *so = w->w_so;
	void *uarg, *harg;
	bool ours;

	CURVNET_SET(head->so_vnet);
	if (so == NULL) {
		sorele(head);
		goto out;
	}
	if (w->w_detached) {
		/*
		 * Off the queue already (counted then); the references are
		 * the ones the queue held: soabort() consumes the socket's,
		 * the listener's goes last.
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
	SOLISTEN_LOCK(head);
	SOCK_LOCK(so);
	ours = so->so_listen == head && so->so_qstate == SQ_INCOMP;
	if (ours) {
		SOCK_RECVBUF_LOCK(so);
		uarg = lq_so_upcall_take(so);
		SOCK_RECVBUF_UNLOCK(so);
		TAILQ_REMOVE(&head->sol_incomp, so, so_list);
		head->sol_incqlen--;
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
		listenq_rs_work_done(harg, uarg, so, w->w_deliver);
	}
	if (ours && w->w_deliver) {
		/* What soisconnected() does once a filter is satisfied. */
		TAILQ_INSERT_TAIL(&head->sol_comp, so, so_list);
		head->sol_qlen++;
		so->so_qstate = SQ_COMP;
		SOCK_UNLOCK(so);
		solisten_wakeup(head);	/* unlocks */
	} else if (ours) {
		/* What solisten_enqueue() does to the oldest incomplete one. */
		so->so_qstate = SQ_NONE;
		so->so_listen = NULL;
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
	free(w, M_LISTENQ);
	atomic_subtract_int(&lq_work_pending, 1);
}

/*
 * Queues `w' (always consumed), holding a reference on both sockets until
 * it has run. Callers hold listenq's registry lock, under which a held
 * socket cannot finish sofree() (its destructor needs that lock), so its
 * memory is valid here; a count already at zero means it is being freed:
 * leave it alone (ESRCH).
 */
int
lq_work_schedule(struct lq_work *w, struct socket *head, struct socket *so,
    int deliver)
{
	if (!refcount_acquire_if_not_zero(&head->so_count)) {
		free(w, M_LISTENQ);
		return (ESRCH);
	}
	if (!refcount_acquire_if_not_zero(&so->so_count))
		so = NULL;	/* the task only drops the head reference */
	w->w_head = head;
	w->w_so = so;
	w->w_deliver = deliver;
	atomic_add_int(&lq_work_pending, 1);
	TASK_INIT(&w->w_task, 0, lq_work_run, w);
	taskqueue_enqueue(taskqueue_thread, &w->w_task);
	return (so != NULL ? 0 : ESRCH);
}

/*
 * Evicts a held connection at once, from the accept filter upcall that
 * admits a newer one: that upcall runs inside soisconnected() with the
 * listener locked, so the connection can leave sol_incomp right there, as
 * solisten_enqueue() does with the oldest incomplete one. Then the
 * incomplete queue never holds more than the hold queue admits once
 * soisconnected() is done, however many CPUs feed it; deferring the whole
 * eviction left it on the queue until the task ran on another CPU.
 * soabort() needs the listener unlocked, so only that is deferred, with
 * `w' (the connection's own item: no allocation here); the task inherits
 * the references the queue held (on `so', which soabort() consumes, and on
 * the listener), so a close of the listener meanwhile finds nothing of
 * listenq's on its queues and cannot free either socket under the task.
 *
 * The upcall also holds the new connection's receive-buffer lock and
 * listenq's registry lock, both taken after socket locks everywhere else,
 * so `so' can only be try-locked here; when that fails, or the listener is
 * not locked by this thread, the whole eviction is deferred as before
 * (lq_work_schedule). Returns 1 when `so' left the queue now (the caller
 * counts it: the registry lock it holds is the one the task would take),
 * 0 otherwise (counted by the task if it still finds it, or the kernel
 * already took it away). `w' is always consumed. `head' and `so' are live
 * for the reason given at lq_work_schedule().
 */
int
lq_work_evict_now(struct lq_work *w, struct socket *head, struct socket *so)
{
	if (!mtx_owned(SOCK_MTX(head)) || !mtx_trylock(SOCK_MTX(so))) {
		(void)lq_work_schedule(w, head, so, 0);
		return (0);
	}
	if (so->so_listen != head || so->so_qstate != SQ_INCOMP) {
		SOCK_UNLOCK(so);
		free(w, M_LISTENQ);
		return (0);
	}
	TAILQ_REMOVE(&head->sol_incomp, so, so_list);
	head->sol_incqlen--;
	so->so_qstate = SQ_NONE;
	so->so_listen = NULL;
	SOCK_UNLOCK(so);
	w->w_head = head;
	w->w_so = so;
	w->w_deliver = 0;
	w->w_detached = 1;
	atomic_add_int(&lq_work_pending, 1);
	TASK_INIT(&w->w_task, 0, lq_work_run, w);
	taskqueue_enqueue(taskqueue_thread, &w->w_task);
	return (1);
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

void
lq_tick_start(int ms)
{
	lq_tick_ms = ms;
	callout_init(&lq_tick_callout, 1);
	callout_reset(&lq_tick_callout, MAX(1, ms * hz / 1000), lq_tick, NULL);
}

void
lq_tick_stop(void)
{
	callout_drain(&lq_tick_callout);
}
