/*
 * Per-filter defaults: kern.ipc.listenq.<filter>.default_arg, a loader
 * tunable and a sysctl, used by accf_create when a listener's af_arg is
 * empty (nginx, Apache and haproxy never pass one). The value is checked by
 * the same parser as af_arg (Rust, defaults.rs) before it is stored, so a
 * stored value is always one that create() accepts.
 */
#include <sys/param.h>
#include <sys/systm.h>
#include <sys/kernel.h>
#include <sys/lock.h>
#include <sys/mutex.h>
#include <sys/sysctl.h>

#include "defaults_glue.h"

/*
 * accf_create runs with the listener's socket lock held and must not sleep,
 * so the values are guarded by a default mutex (taken after socket locks,
 * never before) and only ever copied under it: create() cannot see half of
 * a value that a sysctl write is replacing.
 */
static struct mtx lq_defaults_mtx;
static char lq_defaults[LQ_NFILTERS][LQ_DEFAULT_ARG_LEN];
static bool lq_defaults_ready;

/*
 * The sysctls are dynamic OIDs: a static OID's handler runs without the
 * sysctl lock and nothing counts it, so it could still be inside this file
 * (asleep in copyin) when the module is freed; sysctl_ctx_free() waits for
 * every running handler of a dynamic OID and no new one can start after.
 */
static struct sysctl_ctx_list lq_defaults_ctx;

static int
sysctl_default_arg(SYSCTL_HANDLER_ARGS)
{
	char buf[LQ_DEFAULT_ARG_LEN];
	int error, filter = arg2;

	if (filter < 0 || filter >= LQ_NFILTERS)
		return (EINVAL);
	mtx_lock(&lq_defaults_mtx);
	strlcpy(buf, lq_defaults[filter], sizeof(buf));
	mtx_unlock(&lq_defaults_mtx);
	/* Copies out the old value and in the new one, unlocked: may sleep. */
	error = sysctl_handle_string(oidp, buf, sizeof(buf), req);
	if (error != 0 || req->newptr == NULL)
		return (error);
	error = listenq_rs_default_arg_check(filter, buf, strnlen(buf,
	    sizeof(buf)));
	if (error != 0)
		return (error);
	mtx_lock(&lq_defaults_mtx);
	strlcpy(lq_defaults[filter], buf, sizeof(lq_defaults[filter]));
	mtx_unlock(&lq_defaults_mtx);
	return (0);
}

SYSCTL_DECL(_kern_ipc_listenq);

/*
 * Before DECLARE_MODULE (SI_SUB_PROTO_END, SI_ORDER_ANY) calls MOD_LOAD,
 * so a listener never sets a filter before its default is in place. Adding
 * a CTLFLAG_TUN OID fetches the loader tunable through the handler, which
 * checks it like any other write.
 */
static void
lq_defaults_init(void *arg __unused)
{
	struct sysctl_oid *node;
	const char *name;
	int i;

	mtx_init(&lq_defaults_mtx, "listenq defaults", NULL, MTX_DEF);
	lq_defaults_ready = true;
	sysctl_ctx_init(&lq_defaults_ctx);
	for (i = 0; i < LQ_NFILTERS; i++) {
		name = listenq_rs_filter_name(i);
		if (name == NULL)
			continue;
		node = SYSCTL_ADD_NODE(&lq_defaults_ctx,
		    SYSCTL_STATIC_CHILDREN(_kern_ipc_listenq), OID_AUTO,
		    name, CTLFLAG_RW | CTLFLAG_MPSAFE, 0,
		    "listenq accept filter");
		if (node == NULL)
			continue;
		SYSCTL_ADD_PROC(&lq_defaults_ctx, SYSCTL_CHILDREN(node),
		    OID_AUTO, "default_arg",
		    CTLTYPE_STRING | CTLFLAG_RWTUN | CTLFLAG_MPSAFE, NULL, i,
		    sysctl_default_arg, "A",
		    "af_arg used by listeners of this filter that pass an empty one");
	}
}
SYSINIT(lq_defaults, SI_SUB_PROTO_END, SI_ORDER_FIRST, lq_defaults_init, NULL);

/* After MOD_UNLOAD succeeded: no accept filter of ours is left to call. */
static void
lq_defaults_fini(void *arg __unused)
{
	sysctl_ctx_free(&lq_defaults_ctx);
	lq_defaults_ready = false;
	mtx_destroy(&lq_defaults_mtx);
}
SYSUNINIT(lq_defaults, SI_SUB_PROTO_END, SI_ORDER_FIRST, lq_defaults_fini,
    NULL);

size_t
lq_default_arg(int filter, char *buf, size_t len)
{
	size_t n;

	if (filter < 0 || filter >= LQ_NFILTERS || len == 0 ||
	    !lq_defaults_ready)
		return (0);
	mtx_lock(&lq_defaults_mtx);
	n = strlcpy(buf, lq_defaults[filter], len);
	mtx_unlock(&lq_defaults_mtx);
	return (MIN(n, len - 1));
}
