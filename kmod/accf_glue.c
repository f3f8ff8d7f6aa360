/*
 * listenq accept filters: the C half. Registration with uipc_accf.c, the
 * tag (destructor) and upcall a held connection carries, and filter
 * removal. The receive buffer is read in sockbuf_glue.c, held connections
 * are let go in work_glue.c; decisions are made in Rust (accf.rs).
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
 * - A buried name is never seen by accept_filt_getopt(), which strcpy()s
 *   the name of a listener's filter: names are buried only while no
 *   listener uses them (accf.rs unregister(), under REGISTRY), and the
 *   accf_create that attaches a listener in the unload's window revives
 *   them first (lq_accf_revive_all(), before the kernel sets
 *   sol_accept_filter).
 * - Once unload has decided, accf_create becomes nullop(), which returns
 *   0 (NULL), and the callback nullop() too (lq_accf_retire_all()):
 *   kernel code, never module code. Only a setsockopt(2) that looked the
 *   name up before the burial and reaches accf_create after that (unload
 *   waits a margin in between) fails, with EINVAL.
 *
 * A later listenq load, or a stock accf module, registers the real name
 * anew (the buried entry no longer matches it), so each unload leaves one
 * 48-byte M_ACCF entry per name behind; a refused unload revives its own
 * entries (lq_buried[]) in place. kld_busy serializes kldload(2) and
 * kldunload(2), so no accf module loaded that way registers a name while
 * one of listenq's is buried and could still be revived. Should one come
 * another way (linker_reference_module()), it adds a new entry at the
 * head of the list; listenq's revived one is then shadowed by it, found
 * by no name, and reached only by listeners that attached to it before,
 * which keep the module busy.
 */
#define	LQ_NAMELEN	16	/* sizeof(accf_name) */
#define	LQ_TOMB_FILL	'~'
#define	LQ_MAX_FILTERS	8

CTASSERT(sizeof(((struct accept_filter *)0)->accf_name) == LQ_NAMELEN);

static struct accept_filter *lq_buried[LQ_MAX_FILTERS];
static size_t lq_buried_len[LQ_MAX_FILTERS];	/* each old strlen() */

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

	p = accept_filt_get(__DECONST(char *, name));
	if (p != NULL && p->accf_callback != NULL)
		return (EEXIST);	/* a stock accf module (or another) has it */

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
 * Takes `name' off the list as described above; its entries stay
 * listenq's until lq_accf_retire_all(). The caller holds REGISTRY and has
 * made sure no listener uses it (accf.rs unregister()). No sleeping:
 * accept_filt_get() takes only the accept filter mutex. ENOSPC: no slot
 * to remember it by, nothing done (the caller revives the others and
 * refuses the unload: a name it could not retire would reach freed code).
 */
int
lq_accf_bury(const char *name, lq_accf_cb_t *cb)
{
	struct accept_filter *p;
	int i;

	p = accept_filt_get(__DECONST(char *, name));
	if (p == NULL || p->accf_callback != cb)
		return (0);	/* not listenq's: a stock module has it */
	for (i = 0; i < LQ_MAX_FILTERS; i++) {
		if (lq_buried[i] == NULL) {
			lq_buried[i] = p;
			lq_buried_len[i] = strnlen(p->accf_name, LQ_NAMELEN - 1);
			lq_name_bury(p->accf_name);
			return (0);
		}
	}
	return (ENOSPC);
}

/*
 * Where entry `p' sends the kernel. create last: a setsockopt(2) that
 * sees the new create sees the rest (release stores, in order).
 */
static void
lq_entry_point(struct accept_filter *p, lq_accf_cb_t *cb,
    lq_accf_create_t *create, lq_accf_destroy_t *destroy)
{
	atomic_store_rel_ptr((volatile uintptr_t *)&p->accf_destroy,
	    (uintptr_t)destroy);
	atomic_store_rel_ptr((volatile uintptr_t *)&p->accf_callback,
	    (uintptr_t)cb);
	atomic_store_rel_ptr((volatile uintptr_t *)&p->accf_create,
	    (uintptr_t)create);
}

/*
 * Every name lq_accf_bury() took, back in place (REGISTRY held: an
 * accf_create in the unload's window, or the unload backing out).
 */
void
lq_accf_revive_all(void)
{
	struct accept_filter *p;
	int i;

	for (i = 0; i < LQ_MAX_FILTERS; i++) {
		p = lq_buried[i];
		if (p == NULL)
			continue;
		lq_buried[i] = NULL;
		lq_name_revive(p->accf_name, lq_buried_len[i]);
	}
}

/*
 * The buried entries no longer reach the module (REGISTRY held; unload
 * has decided). They stay in lq_buried[] so that an unload that backs out
 * later (lq_accf_unretire()) revives them.
 */
void
lq_accf_retire_all(void)
{
	int i;

	for (i = 0; i < LQ_MAX_FILTERS; i++) {
		if (lq_buried[i] != NULL)
			lq_entry_point(lq_buried[i], (lq_accf_cb_t *)nullop,
			    (lq_accf_create_t *)nullop, NULL);
	}
}

/*
 * An unload that backs out after lq_accf_retire_all() (module.rs: its
 * sysctls would not go): `name''s entry gets listenq's functions back,
 * then its name. REGISTRY is held and create() refuses (CLOSED) until the
 * caller reopens, after this: a setsockopt(2) that found the entry
 * earlier can attach only once its name is whole again. ENOENT: not
 * buried by this load.
 */
int
lq_accf_unretire(const char *name, lq_accf_cb_t *cb, lq_accf_create_t *create,
    lq_accf_destroy_t *destroy)
{
	struct accept_filter *p;
	int i;

	for (i = 0; i < LQ_MAX_FILTERS; i++) {
		p = lq_buried[i];
		if (p == NULL || !lq_name_is_buried(p->accf_name, name))
			continue;
		lq_entry_point(p, cb, create, destroy);
		lq_buried[i] = NULL;
		lq_name_revive(p->accf_name, lq_buried_len[i]);
		return (0);
	}
	return (ENOENT);
}

/*
 * For the tests of the unload's burial window (accf.rs unregister()):
 * debug.fail_point.listenq_accf_create stalls accf_create before it looks
 * at anything ("1*delay(us)"), as a setsockopt(2) preempted between its
 * lookup and its create would be; debug.fail_point.listenq_bury_margin
 * ("return(ms)") makes the window that long.
 */
void
lq_fail_accf_create(void)
{
	KFAIL_POINT_CODE_FLAGS(DEBUG_FP, listenq_accf_create,
	    FAIL_POINT_NONSLEEPABLE, );
}

int
lq_bury_margin_ms(int dflt)
{
	/* kld_sx is held meanwhile: at most 10 s, whatever is asked. */
	KFAIL_POINT_CODE(DEBUG_FP, listenq_bury_margin,
	    return (MIN(MAX(RETURN_VALUE, 0), 10000)));
	return (dflt);
}

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

/* Console lines an unprivileged user can cause: at most a few a second. */
int
lq_log_ratecheck(void)
{
	static struct timeval last;
	static int count;

	return (ppsratecheck(&last, &count, 5));
}

/*
 * Knobs, under kern.ipc.listenq; loader tunables as well. Their OIDs are
 * added with the module's other handlers (sysctl_glue.c
 * lq_sysctl_attach()), which range-check them.
 */
u_int lq_hold_timeout_ms = 0;
int lq_hold_timeout_drop = 0;
