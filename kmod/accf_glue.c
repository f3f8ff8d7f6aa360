/*
 * listenq accept filters' names: registration with uipc_accf.c, and taking
 * them back for unload (burial) or giving them back. The tag and upcall a
 * held connection carries, and filter removal, are in tag_glue.c; the
 * receive buffer is read in sockbuf_glue.c, held connections are let go in
 * work_glue.c; decisions are made in Rust (accf_names.rs, accf.rs).
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
 *   listener uses them (accf_names.rs unregister(), under the registry), and the
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
 * listenq's until lq_accf_retire_all(). The caller holds the registry and has
 * made sure no listener uses it (accf_names.rs unregister()). No sleeping:
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
 * Every name lq_accf_bury() took, back in place (the registry held: an
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
 * The buried entries no longer reach the module (the registry held; unload
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
 * An unload that backs out after lq_accf_retire_all() (lifecycle.rs: its
 * sysctls would not go): `name''s entry gets listenq's functions back,
 * then its name. The registry is held and create() refuses (Closed) until the
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
 * For the tests of the unload's burial window (accf_names.rs unregister()):
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
