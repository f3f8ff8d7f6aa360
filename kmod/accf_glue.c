/*
 * listenq accept filters: the C half. Registration with uipc_accf.c, the
 * receive-buffer and queue manipulation that needs socket macros, and the
 * deferred work (terminate or deliver a held connection) that must run
 * without the locks an upcall holds. Decisions are made in Rust (accf.rs).
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

MALLOC_DECLARE(M_LISTENQ);

/*
 * Taking a name off the accept filter list.
 *
 * uipc_accf.c never removes an entry from its list, its lock
 * (accept_filter_mtx) is static, and readers compare names with strcmp()
 * under that lock: accept_filt_get() for setsockopt(2), accept_filt_add()
 * for a module that registers. listenq cannot take that lock, so it
 * renames its entry in place such that no reader can ever see a name that
 * matches anything but the entry's old name:
 *
 * - The buried name is 16 non-NUL bytes (the old name, padded with
 *   LQ_TOMB_FILL). accept_filt_setopt() forces af_name[15] to NUL, so
 *   every name a reader looks for ends by index 15; strcmp() stops at the
 *   first difference, which is at the latest that NUL, so no name can
 *   match and no comparison reads past accf_name.
 * - Order: the bytes after the old NUL (at index L) are written first;
 *   while index L still holds the NUL they are past the end of the string
 *   and no reader looks at them. Then the NUL itself is overwritten, in a
 *   single byte store: from then on every byte is non-NUL. strcmp()
 *   (libkern) reads bytes in ascending order, and amd64 makes stores
 *   visible in program order and does not reorder loads, so a reader that
 *   sees the new byte at L also sees the bytes after it. Every state a
 *   reader can observe is thus "the old name" or "no name at all"; it is
 *   never torn into another filter's name.
 * - Reviving (a refused unload) is the same in reverse: the NUL at L is
 *   written first, the padding after it is then past the end.
 * - Before burying, accf_create becomes nullop(), which returns 0 (NULL):
 *   a setsockopt(2) that looked the entry up just before the rename fails
 *   with EINVAL instead of attaching, and nothing attached can reach the
 *   module (unregister refuses while any listener uses a listenq filter).
 *   The callback is nullop() too: kernel code, never module code.
 *
 * A later listenq load, or a stock accf module, registers the real name
 * anew (the buried entry no longer matches it), so each unload leaves one
 * 48-byte M_ACCF entry per name behind; a refused unload revives its own
 * entries (lq_buried[]) in place.
 */
#define	LQ_NAMELEN	16	/* sizeof(accf_name) */
#define	LQ_TOMB_FILL	'~'
#define	LQ_MAX_FILTERS	8

CTASSERT(sizeof(((struct accept_filter *)0)->accf_name) == LQ_NAMELEN);

static struct accept_filter *lq_buried[LQ_MAX_FILTERS];

static void
lq_name_bury(char *name)
{
	size_t l, i;

	l = strnlen(name, LQ_NAMELEN);
	if (l >= LQ_NAMELEN)
		return;
	for (i = LQ_NAMELEN - 1; i > l; i--)
		atomic_store_rel_char(&name[i], LQ_TOMB_FILL);
	atomic_store_rel_char(&name[l], LQ_TOMB_FILL);
}

/* Whether `buried' is `name' buried by lq_name_bury(). */
static bool
lq_name_is_buried(const char *buried, const char *name)
{
	size_t l = strnlen(name, LQ_NAMELEN - 1), i;

	if (memcmp(buried, name, l) != 0)
		return (false);
	for (i = l; i < LQ_NAMELEN; i++)
		if (buried[i] != LQ_TOMB_FILL)
			return (false);
	return (true);
}

static void
lq_name_revive(char *name, size_t l)
{
	size_t i;

	atomic_store_rel_char(&name[l], '\0');
	for (i = l + 1; i < LQ_NAMELEN; i++)
		atomic_store_rel_char(&name[i], '\0');
}

int
lq_accf_register(const char *name, lq_accf_cb_t *cb, lq_accf_create_t *create,
    lq_accf_destroy_t *destroy)
{
	struct accept_filter *p, *mine;
	int error, i;

	p = accept_filt_get(__DECONST(char *, name));
	if (p != NULL && p->accf_callback != NULL)
		return (EEXIST);	/* a stock accf module (or another) has it */

	/* Buried by a refused unload of this same load: bring it back. */
	for (i = 0; i < LQ_MAX_FILTERS && p == NULL; i++) {
		mine = lq_buried[i];
		if (mine == NULL || !lq_name_is_buried(mine->accf_name, name))
			continue;
		lq_buried[i] = NULL;
		mine->accf_destroy = destroy;
		mine->accf_callback = cb;
		atomic_store_rel_ptr((volatile uintptr_t *)&mine->accf_create,
		    (uintptr_t)create);
		lq_name_revive(mine->accf_name, strnlen(name, LQ_NAMELEN - 1));
		return (0);
	}

	/*
	 * A stock tombstone (a stock accf module unloaded with
	 * net.accf.unloadable=1: callback NULL, create and destroy still
	 * pointing into the unloaded module): accept_filt_add() below copies
	 * only our callback into it, under its lock. Its create and destroy
	 * become ours first, so that no setsockopt(2) finding the entry from
	 * then on can call into the unloaded module through them.
	 */
	if (p != NULL) {
		atomic_store_rel_ptr((volatile uintptr_t *)&p->accf_create,
		    (uintptr_t)create);
		atomic_store_rel_ptr((volatile uintptr_t *)&p->accf_destroy,
		    (uintptr_t)destroy);
	}

	/* Like accept_filt_generic_mod_event(): the list keeps this forever. */
	mine = malloc(sizeof(*mine), M_ACCF, M_WAITOK | M_ZERO);
	strlcpy(mine->accf_name, name, sizeof(mine->accf_name));
	mine->accf_callback = cb;
	mine->accf_create = create;
	mine->accf_destroy = destroy;
	return (accept_filt_add(mine));
}

/*
 * Takes `name' off the list as described above. The caller has made sure
 * no listener uses it and no new one can (accf.rs unregister()).
 */
void
lq_accf_unregister(const char *name, lq_accf_cb_t *cb)
{
	struct accept_filter *p;
	int i;

	p = accept_filt_get(__DECONST(char *, name));
	if (p == NULL || p->accf_callback != cb)
		return;
	atomic_store_rel_ptr((volatile uintptr_t *)&p->accf_create,
	    (uintptr_t)(lq_accf_create_t *)nullop);
	p->accf_destroy = NULL;
	atomic_store_rel_ptr((volatile uintptr_t *)&p->accf_callback,
	    (uintptr_t)(lq_accf_cb_t *)nullop);
	lq_name_bury(p->accf_name);
	for (i = 0; i < LQ_MAX_FILTERS; i++) {
		if (lq_buried[i] == NULL) {
			lq_buried[i] = p;
			break;
		}
	}
}

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

/*
 * Takes listenq's receive upcall off `so' if it has it, returning its
 * argument (the listener state it names, which the upcall kept alive),
 * NULL if it had another or none.
 */
static void *
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

int
lq_so_tag(struct socket *so)
{
	SOCK_LOCK_ASSERT(so);
	if (so->so_dtor != NULL)
		return (0);
	so->so_dtor = lq_so_dtor;
	return (1);
}

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
	 * call from soisconnected(), under its socket lock, while it is on
	 * sol_incomp, before it ever reaches sol_comp; solisten_dequeue()
	 * took the socket off sol_comp under both locks afterwards, so this
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

/* Console lines an unprivileged user can cause: at most a few a second. */
int
lq_log_ratecheck(void)
{
	static struct timeval last;
	static int count;

	return (ppsratecheck(&last, &count, 5));
}

/* Knobs, under kern.ipc.listenq; loader tunables as well. */
u_int lq_hold_timeout_ms = 0;
SYSCTL_DECL(_kern_ipc_listenq);
SYSCTL_UINT(_kern_ipc_listenq, OID_AUTO, hold_timeout_ms, CTLFLAG_RWTUN,
    &lq_hold_timeout_ms, 0,
    "Default accept filter hold timeout in ms (0: hold until the filter is satisfied)");
int lq_hold_timeout_drop = 0;
SYSCTL_INT(_kern_ipc_listenq, OID_AUTO, hold_timeout_drop, CTLFLAG_RWTUN,
    &lq_hold_timeout_drop, 0,
    "At the default hold timeout: 0 delivers the connection, 1 drops it");
