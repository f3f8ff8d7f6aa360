/*
 * listenq C glue: the kern.ipc.listenq sysctl tree (the static node and
 * knobs, the dynamic OIDs whose handlers run Rust) and SYSCTL_OUT. See
 * sysctl_glue.h.
 */
#include <sys/param.h>
#include <sys/systm.h>
#include <sys/kernel.h>
#include <sys/counter.h>
#include <sys/fail.h>
#include <sys/lock.h>
#include <sys/malloc.h>
#include <sys/mutex.h>
#include <sys/pcpu.h>
#include <sys/proc.h>
#include <sys/jail.h>
#include <sys/priv.h>
#include <sys/ucred.h>
#include <sys/smp.h>
#include <sys/sysctl.h>
#include <sys/syslog.h>
#include <sys/limits.h>

#include "glue.h"
#include "sysctl_glue.h"
#include "accf_glue.h"
#include "work_glue.h"

MALLOC_DECLARE(M_LISTENQ);

static char listenq_version[] = LISTENQ_VERSION;

SYSCTL_DECL(_kern_ipc);
SYSCTL_NODE(_kern_ipc, OID_AUTO, listenq, CTLFLAG_RD | CTLFLAG_MPSAFE, 0,
    "listenq: listen queues and accept filters in Rust");
SYSCTL_STRING(_kern_ipc_listenq, OID_AUTO, version, CTLFLAG_RD,
    listenq_version, 0, "listenq version");

/*
 * Unloading is opt-in, as for the stock accept filters
 * (net.accf.unloadable): see listenq(4) UNLOADING and lifecycle.rs for
 * why the kernel cannot prove that no thread is about to enter the module.
 */
int lq_unloadable = 0;

/*
 * An int knob that takes min to max (arg1 points at it; an unsigned one
 * is read as int, which its bounds keep positive). sysctl(8) and the
 * loader hand over any int; a value out of range is refused with EINVAL
 * and the old one stays, the same for a loader tunable (the kernel then
 * prints "Setting sysctl ... failed: 22" and the knob keeps its
 * default; a tunable that is not an int at all is dropped by the kernel
 * without that line). Module code: its OIDs are dynamic (below).
 */
int
lq_sysctl_int_between(struct sysctl_oid *oidp, void *arg1, int min, int max,
    struct sysctl_req *req)
{
	int v, error;

	v = atomic_load_int((volatile u_int *)arg1);
	error = sysctl_handle_int(oidp, &v, 0, req);
	if (error != 0 || req->newptr == NULL)
		return (error);
	if (v < min || v > max)
		return (EINVAL);
	atomic_store_int((volatile u_int *)arg1, v);
	return (0);
}

/* 0 to arg2. */
int
lq_sysctl_int_range(SYSCTL_HANDLER_ARGS)
{
	return (lq_sysctl_int_between(oidp, arg1, 0, arg2, req));
}

/* A syslog(3) priority, 0 (LOG_EMERG) to 7 (LOG_DEBUG), or -1 for none. */
static int
lq_sysctl_logprio(SYSCTL_HANDLER_ARGS)
{
	return (lq_sysctl_int_between(oidp, &lq_logprio, -1, LOG_DEBUG, req));
}

/*
 * The global counters sum every listener of the host, so only a reader
 * that could see every socket may read them: not jailed, and allowed to
 * see other users' and groups' sockets (see_other_uids/gids, or the
 * privilege to override them).
 */
int
lq_sysctl_sees_all(struct sysctl_req *req)
{
	struct ucred *cred = req->td->td_ucred;
	int uids = 1, gids = 1;
	size_t len = sizeof(int);

	if (jailed(cred))
		return (0);
	if (priv_check_cred(cred, PRIV_SEEOTHERUIDS) != 0 &&
	    (kernel_sysctlbyname(req->td, "security.bsd.see_other_uids", &uids,
	    &len, NULL, 0, NULL, 0) != 0 || uids == 0))
		return (0);
	len = sizeof(int);
	if (priv_check_cred(cred, PRIV_SEEOTHERGIDS) != 0 &&
	    (kernel_sysctlbyname(req->td, "security.bsd.see_other_gids", &gids,
	    &len, NULL, 0, NULL, 0) != 0 || gids == 0))
		return (0);
	return (1);
}

int
lq_sysctl_out(struct sysctl_req *req, const void *p, size_t len)
{
	return (SYSCTL_OUT(req, p, len));
}

/*
 * Handlers that run module code hang off dynamic OIDs: a static OID's
 * handler runs without the sysctl lock and nothing counts it, so it could
 * still be inside listenq while unload destroys the registry (or after
 * the linker freed the module). sysctl_ctx_free() waits for every running
 * handler of a dynamic OID (oid_running) and no new one can start after.
 */
static struct sysctl_ctx_list lq_sysctl_ctx;

uint64_t *lq_counters[LQ_NSTATS];

void
lq_stats_init(void)
{
	u_int i;

	for (i = 0; i < nitems(lq_counters); i++)
		lq_counters[i] = counter_u64_alloc(M_WAITOK);
}

/* Module unload, once no thread of listenq's can run (InFlight drained). */
void
lq_stats_fini(void)
{
	u_int i;

	for (i = 0; i < nitems(lq_counters); i++) {
		if (lq_counters[i] != NULL)
			counter_u64_free(lq_counters[i]);
		lq_counters[i] = NULL;
	}
}

uint64_t
lq_stat_fetch(enum lq_stat which)
{
	if ((u_int)which >= nitems(lq_counters) || lq_counters[which] == NULL)
		return (0);
	return (counter_u64_fetch(lq_counters[which]));
}

static int
sysctl_allocs(SYSCTL_HANDLER_ARGS)
{
	uint64_t n;

	/* It grows with every listener of the host: a global total. */
	if (!lq_sysctl_sees_all(req))
		return (EPERM);
	n = listenq_rs_allocs();
	return (sysctl_handle_64(oidp, &n, 0, req));
}

/*
 * Bytes of malloc(9) memory type M_LISTENQ in use: what vmstat -m shows as
 * listenq's MemUse (every allocation of that type, Rust's or C's,
 * counted at its malloc(9) bucket size), read without kern.malloc_stats'
 * MAXCPU-sized records.
 */
static int
sysctl_memuse(SYSCTL_HANDLER_ARGS)
{
	struct malloc_type_stats *mts;
	uint64_t alloced = 0, freed = 0, n;
	int i;

	if (!lq_sysctl_sees_all(req))
		return (EPERM);
	CPU_FOREACH(i) {
		mts = zpcpu_get_cpu(M_LISTENQ->ks_mti.mti_stats, i);
		alloced += mts->mts_memalloced;
		freed += mts->mts_memfreed;
	}
	n = alloced >= freed ? alloced - freed : 0;
	return (sysctl_handle_64(oidp, &n, 0, req));
}

static int
sysctl_listeners(SYSCTL_HANDLER_ARGS)
{
	return (listenq_rs_sysctl_listeners(req));
}

static int
sysctl_xlisteners(SYSCTL_HANDLER_ARGS)
{
	return (listenq_rs_sysctl_xlisteners(req));
}

static int
sysctl_stat(SYSCTL_HANDLER_ARGS)
{
	return (listenq_rs_sysctl_stat(req, arg2));
}

/* kern.ipc.listenq.stats.*, by enum lq_stat (the sysctl's arg2). */
static const struct {
	const char	*name;
	const char	*descr;
} lq_stats[LQ_NSTATS] = {
	[LQ_STAT_LISTENS] = { "listens", "Successful listen(2) calls seen" },
	[LQ_STAT_CLOSES] = { "closes", "Listeners closed" },
	[LQ_STAT_COMPLETED] = { "completed",
	    "Connections that reached a completed queue" },
	[LQ_STAT_ACCEPTED] = { "accepted", "Connections returned by accept(2)" },
	[LQ_STAT_OVERFLOWS] = { "overflows",
	    "Connections refused because a completed queue was full" },
	[LQ_STAT_HELD] = { "held",
	    "Connections held by a listenq accept filter" },
	[LQ_STAT_RELEASED] = { "released",
	    "Held connections released to the completed queue" },
	[LQ_STAT_EVICTED] = { "evicted",
	    "Held connections terminated to make room (oldest first)" },
	[LQ_STAT_TIMEOUTS] = { "timeouts",
	    "Held connections that reached the hold timeout" },
	[LQ_STAT_NOMEM] = { "nomem",
	    "Times listenq could not allocate and fell back to stock behaviour" },
};

void
lq_sysctl_attach(void)
{
	struct sysctl_oid_list *top = SYSCTL_STATIC_CHILDREN(_kern_ipc_listenq);
	struct sysctl_oid *stats;
	u_int i;

	sysctl_ctx_init(&lq_sysctl_ctx);
	/* Knobs with a range; CTLFLAG_TUN fetches the loader's value now. */
	SYSCTL_ADD_PROC(&lq_sysctl_ctx, top, OID_AUTO, "unloadable",
	    CTLTYPE_INT | CTLFLAG_RWTUN | CTLFLAG_MPSAFE, &lq_unloadable, 1,
	    lq_sysctl_int_range, "I",
	    "Allow kldunload of listenq, 0 or 1 (not recommended, see listenq(4))");
	SYSCTL_ADD_PROC(&lq_sysctl_ctx, top, OID_AUTO, "hold_timeout_ms",
	    CTLTYPE_INT | CTLFLAG_RWTUN | CTLFLAG_MPSAFE, &lq_hold_timeout_ms,
	    INT_MAX, lq_sysctl_int_range, "I",
	    "Default accept filter hold timeout in ms, 0 to 2147483647 (0: hold until the filter is satisfied)");
	SYSCTL_ADD_PROC(&lq_sysctl_ctx, top, OID_AUTO, "hold_timeout_drop",
	    CTLTYPE_INT | CTLFLAG_RWTUN | CTLFLAG_MPSAFE, &lq_hold_timeout_drop,
	    1, lq_sysctl_int_range, "I",
	    "At the default hold timeout: 0 delivers the connection, 1 drops it");
	SYSCTL_ADD_PROC(&lq_sysctl_ctx, top, OID_AUTO, "logprio",
	    CTLTYPE_INT | CTLFLAG_RWTUN | CTLFLAG_MPSAFE, &lq_logprio, 0,
	    lq_sysctl_logprio, "I",
	    "Log priority of listenq's messages about users and peers (bad af_arg), "
	    "0 to 7 as syslog(3); -1 for none");
	SYSCTL_ADD_PROC(&lq_sysctl_ctx, top, OID_AUTO, "allocs",
	    CTLTYPE_U64 | CTLFLAG_RD | CTLFLAG_MPSAFE, NULL, 0, sysctl_allocs,
	    "QU", "Live allocations made by listenq");
	SYSCTL_ADD_PROC(&lq_sysctl_ctx, top, OID_AUTO, "memuse",
	    CTLTYPE_U64 | CTLFLAG_RD | CTLFLAG_MPSAFE, NULL, 0, sysctl_memuse,
	    "QU", "Bytes of memory listenq has allocated (vmstat -m MemUse)");
	SYSCTL_ADD_PROC(&lq_sysctl_ctx, top, OID_AUTO, "listeners",
	    CTLTYPE_STRING | CTLFLAG_RD | CTLFLAG_MPSAFE, NULL, 0,
	    sysctl_listeners, "A",
	    "Listening sockets seen by listenq (table)");
	SYSCTL_ADD_PROC(&lq_sysctl_ctx, top, OID_AUTO, "xlisteners",
	    CTLTYPE_OPAQUE | CTLFLAG_RD | CTLFLAG_MPSAFE, NULL, 0,
	    sysctl_xlisteners, "S,xlistenq",
	    "Listening sockets seen by listenq (struct xlistenq[], listenq.h)");
	stats = SYSCTL_ADD_NODE(&lq_sysctl_ctx, top, OID_AUTO, "stats",
	    CTLFLAG_RD | CTLFLAG_MPSAFE, 0, "listenq global counters");
	for (i = 0; i < nitems(lq_stats); i++)
		SYSCTL_ADD_PROC(&lq_sysctl_ctx, SYSCTL_CHILDREN(stats),
		    OID_AUTO, lq_stats[i].name,
		    CTLTYPE_U64 | CTLFLAG_RD | CTLFLAG_MPSAFE, NULL, i,
		    sysctl_stat, "QU", lq_stats[i].descr);
}

int
lq_sysctl_detach(void)
{
	/*
	 * debug.fail_point.listenq_sysctl_detach (any return term): the
	 * sysctls stay and unload is refused, as when sysctl_ctx_free()
	 * refuses, so that a test sees unload back out after it has retired
	 * the filters (accf.rs reopen()). Never success without the free.
	 */
	KFAIL_POINT_CODE(DEBUG_FP, listenq_sysctl_detach, return (EBUSY));
	return (sysctl_ctx_free(&lq_sysctl_ctx));
}
