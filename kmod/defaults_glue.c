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
/*
 * CTLFLAG_TUN values are fetched when the sysctls are registered, which
 * kern_linker.c does before the module's SYSINITs run, so before the mutex
 * exists. Until lq_defaults_init() nothing else can reach the values
 * (the accept filters are registered at MOD_LOAD, later still, and userland
 * sees the sysctls only once they are enabled, after the SYSINITs), so that
 * one write goes in unlocked.
 */
static bool lq_defaults_ready;

static void
lq_defaults_init(void *arg __unused)
{
	mtx_init(&lq_defaults_mtx, "listenq defaults", NULL, MTX_DEF);
	lq_defaults_ready = true;
}
/* Before DECLARE_MODULE (SI_SUB_PROTO_END, SI_ORDER_ANY) calls MOD_LOAD. */
SYSINIT(lq_defaults, SI_SUB_PROTO_END, SI_ORDER_FIRST, lq_defaults_init, NULL);

static void
lq_defaults_fini(void *arg __unused)
{
	/* SYSUNINITs run after the module's sysctls are gone. */
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

static int
sysctl_default_arg(SYSCTL_HANDLER_ARGS)
{
	char buf[LQ_DEFAULT_ARG_LEN];
	int error, filter = arg2;

	if (filter < 0 || filter >= LQ_NFILTERS)
		return (EINVAL);
	if (lq_defaults_ready) {
		mtx_lock(&lq_defaults_mtx);
		strlcpy(buf, lq_defaults[filter], sizeof(buf));
		mtx_unlock(&lq_defaults_mtx);
	} else
		strlcpy(buf, lq_defaults[filter], sizeof(buf));
	/* Copies out the old value and in the new one, unlocked: may sleep. */
	error = sysctl_handle_string(oidp, buf, sizeof(buf), req);
	if (error != 0 || req->newptr == NULL)
		return (error);
	error = listenq_rs_default_arg_check(filter, buf, strnlen(buf,
	    sizeof(buf)));
	if (error != 0)
		return (error);
	if (lq_defaults_ready) {
		mtx_lock(&lq_defaults_mtx);
		strlcpy(lq_defaults[filter], buf, sizeof(lq_defaults[filter]));
		mtx_unlock(&lq_defaults_mtx);
	} else
		strlcpy(lq_defaults[filter], buf, sizeof(lq_defaults[filter]));
	return (0);
}

SYSCTL_DECL(_kern_ipc_listenq);

/* One node per filter, in the order of enum lq_filter (defaults.rs). */
#define	LQ_DEFAULT_ARG(name, idx)					\
	SYSCTL_NODE(_kern_ipc_listenq, OID_AUTO, name,			\
	    CTLFLAG_RW | CTLFLAG_MPSAFE, 0,				\
	    "listenq " #name " accept filter");				\
	SYSCTL_PROC(_kern_ipc_listenq_##name, OID_AUTO, default_arg,	\
	    CTLTYPE_STRING | CTLFLAG_RWTUN | CTLFLAG_MPSAFE, NULL, idx,	\
	    sysctl_default_arg, "A",					\
	    "af_arg used by " #name " listeners that pass an empty one")
LQ_DEFAULT_ARG(dataready, 0);
LQ_DEFAULT_ARG(httpready, 1);
LQ_DEFAULT_ARG(dnsready, 2);
LQ_DEFAULT_ARG(tlsready, 3);
