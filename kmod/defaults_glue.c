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
#include <sys/limits.h>
#include <sys/lock.h>
#include <sys/mutex.h>
#include <sys/sysctl.h>
#include <sys/socket.h>
#include <sys/socketvar.h>

#include <net/vnet.h>

#include "defaults_glue.h"
#include "work_glue.h"
#include "sysctl_glue.h"

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
 * Per-VNET overrides, kern.ipc.listenq.vnet.*: the root of a jail with its
 * own vnet sets its defaults there (sysctl(8) lets it write CTLFLAG_VNET
 * OIDs of the vnet it owns, and no other jail), and its listeners use them
 * instead of the host-wide ones above. -1 (a number) or "" (default_arg)
 * leaves the host-wide value in force; "-" is no default_arg in that vnet.
 * Every vnet starts with nothing overridden. A listener's own vnet
 * (so_vnet) decides, whoever runs the code that reads it.
 */
VNET_DEFINE_STATIC(int, lq_vnet_hold_timeout_ms) = -1;
VNET_DEFINE_STATIC(int, lq_vnet_hold_timeout_drop) = -1;
VNET_DEFINE_STATIC(char, lq_vnet_default_arg[LQ_NFILTERS][LQ_DEFAULT_ARG_LEN]);
#define	V_lq_vnet_default_arg	VNET(lq_vnet_default_arg)

/*
 * The sysctls are dynamic OIDs: a static OID's handler runs without the
 * sysctl lock and nothing counts it, so it could still be inside this file
 * (asleep in copyin) when the module is freed; sysctl_ctx_free() waits for
 * every running handler of a dynamic OID and no new one can start after.
 */
static struct sysctl_ctx_list lq_defaults_ctx;

/* The host-wide slot of a filter's default, or the reader's vnet's. */
static char *
lq_default_slot(int filter, bool vnet)
{
	return (vnet ? V_lq_vnet_default_arg[filter] : lq_defaults[filter]);
}

/*
 * kern.ipc.listenq.<filter>.default_arg (vnet false) and
 * kern.ipc.listenq.vnet.<filter>.default_arg (vnet true, which also takes
 * "" and "-" unchecked). The value is copied out and in unlocked (that may
 * sleep) and checked before it is stored.
 */
static int
lq_default_arg_handle(struct sysctl_oid *oidp, int filter, bool vnet,
    struct sysctl_req *req)
{
	char buf[LQ_DEFAULT_ARG_LEN];
	size_t n;
	int error;

	if (filter < 0 || filter >= LQ_NFILTERS)
		return (EINVAL);
	mtx_lock(&lq_defaults_mtx);
	strlcpy(buf, lq_default_slot(filter, vnet), sizeof(buf));
	mtx_unlock(&lq_defaults_mtx);
	error = sysctl_handle_string(oidp, buf, sizeof(buf), req);
	if (error != 0 || req->newptr == NULL)
		return (error);
	n = strnlen(buf, sizeof(buf));
	if (!vnet || (n != 0 && strcmp(buf, "-") != 0)) {
		error = listenq_rs_default_arg_check(filter, vnet, buf, n);
		if (error != 0)
			return (error);
	}
	mtx_lock(&lq_defaults_mtx);
	strlcpy(lq_default_slot(filter, vnet), buf, LQ_DEFAULT_ARG_LEN);
	mtx_unlock(&lq_defaults_mtx);
	return (0);
}

static int
sysctl_default_arg(SYSCTL_HANDLER_ARGS)
{
	return (lq_default_arg_handle(oidp, arg2, false, req));
}

/* kern.ipc.listenq.vnet.<filter>.default_arg, of the reader's vnet. */
static int
sysctl_vnet_default_arg(SYSCTL_HANDLER_ARGS)
{
	return (lq_default_arg_handle(oidp, arg2, true, req));
}

/* An int of the reader's vnet (arg1, already relocated), -1 to arg2. */
static int
sysctl_vnet_int(SYSCTL_HANDLER_ARGS)
{
	return (lq_sysctl_int_between(oidp, arg1, -1, arg2, req));
}

SYSCTL_DECL(_kern_ipc_listenq);

static void
lq_vnet_sysctls(void)
{
	struct sysctl_oid *vnode, *node;
	const char *name;
	int i;

	vnode = SYSCTL_ADD_NODE(&lq_defaults_ctx,
	    SYSCTL_STATIC_CHILDREN(_kern_ipc_listenq), OID_AUTO, "vnet",
	    CTLFLAG_RW | CTLFLAG_MPSAFE, 0,
	    "This vnet's own defaults (-1 or empty: the host-wide value)");
	if (vnode == NULL)
		return;
	SYSCTL_ADD_PROC(&lq_defaults_ctx, SYSCTL_CHILDREN(vnode), OID_AUTO,
	    "hold_timeout_ms",
	    CTLTYPE_INT | CTLFLAG_RW | CTLFLAG_VNET | CTLFLAG_MPSAFE,
	    &VNET_NAME(lq_vnet_hold_timeout_ms), INT_MAX, sysctl_vnet_int, "I",
	    "This vnet's kern.ipc.listenq.hold_timeout_ms, -1 for the host-wide value");
	SYSCTL_ADD_PROC(&lq_defaults_ctx, SYSCTL_CHILDREN(vnode), OID_AUTO,
	    "hold_timeout_drop",
	    CTLTYPE_INT | CTLFLAG_RW | CTLFLAG_VNET | CTLFLAG_MPSAFE,
	    &VNET_NAME(lq_vnet_hold_timeout_drop), 1, sysctl_vnet_int, "I",
	    "This vnet's kern.ipc.listenq.hold_timeout_drop, -1 for the host-wide value");
	for (i = 0; i < LQ_NFILTERS; i++) {
		name = listenq_rs_filter_name(i);
		if (name == NULL)
			continue;
		node = SYSCTL_ADD_NODE(&lq_defaults_ctx, SYSCTL_CHILDREN(vnode),
		    OID_AUTO, name, CTLFLAG_RW | CTLFLAG_MPSAFE, 0,
		    "listenq accept filter, this vnet");
		if (node == NULL)
			continue;
		SYSCTL_ADD_PROC(&lq_defaults_ctx, SYSCTL_CHILDREN(node),
		    OID_AUTO, "default_arg",
		    CTLTYPE_STRING | CTLFLAG_RW | CTLFLAG_VNET | CTLFLAG_MPSAFE,
		    NULL, i, sysctl_vnet_default_arg, "A",
		    "This vnet's default_arg: empty for the host-wide one, - for none");
	}
}

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
	lq_vnet_sysctls();
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
lq_default_arg(struct socket *head, int filter, char *buf, size_t len)
{
	const char *v;
	size_t n;

	if (filter < 0 || filter >= LQ_NFILTERS || len == 0 ||
	    !lq_defaults_ready)
		return (0);
	mtx_lock(&lq_defaults_mtx);
	v = VNET_VNET(head->so_vnet, lq_vnet_default_arg)[filter];
	if (v[0] == '\0')
		v = lq_defaults[filter];
	else if (strcmp(v, "-") == 0)
		v = "";
	n = strlcpy(buf, v, len);
	mtx_unlock(&lq_defaults_mtx);
	return (MIN(n, len - 1));
}

void
lq_hold_timeout(struct socket *head, u_int *ms, int *drop)
{
	struct vnet *vnet = head->so_vnet;
	int v;

	v = atomic_load_int((volatile u_int *)VNET_VNET_PTR(vnet,
	    lq_vnet_hold_timeout_ms));
	*ms = v >= 0 ? (u_int)v : atomic_load_int(&lq_hold_timeout_ms);
	v = atomic_load_int((volatile u_int *)VNET_VNET_PTR(vnet,
	    lq_vnet_hold_timeout_drop));
	*drop = v >= 0 ? v : atomic_load_int((volatile u_int *)&lq_hold_timeout_drop);
}
