/*
 * listenq C glue. See glue.h for why each piece is here rather than in Rust.
 */
#include <sys/param.h>
#include <sys/systm.h>
#include <sys/kernel.h>
#include <sys/malloc.h>
#include <sys/module.h>
#include <sys/lock.h>
#include <sys/mutex.h>
#include <sys/proc.h>
#include <sys/refcount.h>
#include <sys/socket.h>
#include <sys/socketvar.h>
#include <sys/protosw.h>
#include <sys/domain.h>
#include <sys/selinfo.h>
#include <sys/event.h>
#include <sys/sysctl.h>
#include <sys/fail.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/unpcb.h>
#include <net/vnet.h>
#include <netinet/in.h>
#include <netinet/in_pcb.h>

#include "glue.h"

MALLOC_DEFINE(M_LISTENQ, "listenq", "listenq listen queues and accept filters");

/*
 * Anchors ld -r: kmod/build-ko.sh pulls this object out of the Rust
 * staticlib by this name. A function, not a string: a string could be
 * merged with a module name in mod_metadata, and link_elf_obj reads module
 * metadata before it resolves relocations against global symbols.
 */
void
listenq_glue_anchor(void)
{
}

void
lq_log(const char *msg, size_t len)
{
	printf("listenq: %.*s\n", (int)len, msg);
}

void
lq_panic(const char *msg, size_t len)
{
	panic("listenq: %.*s", (int)len, msg);
}

void *
lq_malloc(size_t size, size_t align)
{
	/*
	 * Every allocation Rust makes (upcalls, hooks, the tick) comes here,
	 * so debug.fail_point.listenq_malloc fails any of them (fail(9)).
	 */
	KFAIL_POINT_CODE_FLAGS(DEBUG_FP, listenq_malloc,
	    FAIL_POINT_NONSLEEPABLE, return (NULL));
	/*
	 * malloc(9) aligns power-of-2 sizes to their size and everything to at
	 * least 16 bytes; only larger alignments need malloc_aligned(9).
	 */
	if (align <= 16)
		return (malloc(size, M_LISTENQ, M_NOWAIT));
	if (align > PAGE_SIZE)
		return (NULL);
	return (malloc_aligned(size, align, M_LISTENQ, M_NOWAIT));
}

void
lq_free(void *p)
{
	free(p, M_LISTENQ);
}

size_t
lq_mtx_size(void)
{
	return (sizeof(struct mtx));
}

void
lq_mtx_init(struct mtx *m, const char *name)
{
	mtx_init(m, name, NULL, MTX_DEF);
}

void
lq_mtx_destroy(struct mtx *m)
{
	mtx_destroy(m);
}

void
lq_mtx_lock(struct mtx *m)
{
	mtx_lock(m);
}

void
lq_mtx_unlock(struct mtx *m)
{
	mtx_unlock(m);
}

uint64_t
lq_uptime_us(void)
{
	struct bintime bt;
	struct timeval tv;

	getbinuptime(&bt);
	bintime2timeval(&bt, &tv);
	return ((uint64_t)tv.tv_sec * 1000000 + tv.tv_usec);
}

void
lq_pause_ms(int ms)
{
	pause("lqdrain", MAX(1, (ms * hz) / 1000));
}

struct protosw *
lq_so_proto(struct socket *so)
{
	return (so->so_proto);
}

int
lq_so_listening(struct socket *so)
{
	return (SOLISTENING(so));
}

void
lq_solisten_sample_locked(struct socket *so, struct lq_qsample *out)
{
	SOLISTEN_LOCK_ASSERT(so);
	out->qlen = so->sol_qlen;
	out->incqlen = so->sol_incqlen;
	out->qlimit = so->sol_qlimit;
	out->overcount = so->sol_overcount;
	out->lastover_sec = so->sol_lastover.tv_sec;
	out->lastover_usec = so->sol_lastover.tv_usec;
}

int
lq_solisten_sample(struct socket *so, struct lq_qsample *out)
{
	SOCK_LOCK(so);
	if (!SOLISTENING(so)) {
		SOCK_UNLOCK(so);
		return (EINVAL);
	}
	lq_solisten_sample_locked(so, out);
	SOCK_UNLOCK(so);
	return (0);
}

void
lq_so_local(struct socket *so, struct lq_local *out)
{
	int family = so->so_proto->pr_domain->dom_family;

	bzero(out, sizeof(*out));
	switch (family) {
	case AF_INET:
	case AF_INET6: {
		/* A listener's bound address does not change while it listens. */
		struct inpcb *inp = sotoinpcb(so);

		if (inp == NULL)
			break;
		if (inp->inp_vflag & INP_IPV6) {
			out->family = AF_INET6;
			out->len = sizeof(struct in6_addr);
			memcpy(out->addr, &inp->inp_inc.inc6_laddr, out->len);
		} else {
			out->family = AF_INET;
			out->len = sizeof(struct in_addr);
			memcpy(out->addr, &inp->inp_inc.inc_laddr, out->len);
		}
		out->port = ntohs(inp->inp_inc.inc_lport);
		break;
	}
	case AF_LOCAL: {
		struct unpcb *unp = sotounpcb(so);
		size_t n;

		out->family = AF_LOCAL;
		if (unp == NULL || unp->unp_addr == NULL)
			break;
		n = unp->unp_addr->sun_len - offsetof(struct sockaddr_un,
		    sun_path);
		n = MIN(n, sizeof(out->addr));
		memcpy(out->addr, unp->unp_addr->sun_path, n);
		out->len = strnlen((const char *)out->addr, n);
		break;
	}
	}
}

void
lq_soref(struct socket *so)
{
	soref(so);
}

void
lq_sorele(struct socket *so)
{
	CURVNET_SET(so->so_vnet);
	sorele(so);
	CURVNET_RESTORE();
}

static int
lq_sol_upcall(struct socket *head, void *arg __unused, int waitflag __unused)
{
	struct socket *so, *first, *newest;

	SOLISTEN_LOCK_ASSERT(head);
	/*
	 * Not only TAILQ_LAST: accept_filt_setopt() moves every connection
	 * a removed filter held in one go, then wakes up once. Sockets join
	 * sol_comp at its tail and leave it at its head (accept), so all
	 * those behind the one listenq recorded last are new.
	 */
	newest = listenq_rs_newest_completed(head);
	first = NULL;
	TAILQ_FOREACH_REVERSE(so, &head->sol_comp, accept_queue, so_list) {
		if (so == newest)
			break;
		first = so;
	}
	for (so = first; so != NULL; so = TAILQ_NEXT(so, so_list))
		listenq_rs_completed(head, so);
	/* What solisten_wakeup() does when no upcall is set. */
	selwakeuppri(&head->so_rdsel, PSOCK);
	KNOTE_LOCKED(&head->so_rdsel.si_note, 0);
	return (SU_OK);
}

void
lq_listen_upcall_install(struct socket *so)
{
	SOCK_LOCK(so);
	if (SOLISTENING(so) && so->sol_upcall == NULL)
		solisten_upcall_set(so, lq_sol_upcall, NULL);
	SOCK_UNLOCK(so);
}

void
lq_listen_upcall_remove(struct socket *so)
{
	SOCK_LOCK(so);
	if (SOLISTENING(so) && so->sol_upcall == lq_sol_upcall)
		solisten_upcall_set(so, NULL, NULL);
	SOCK_UNLOCK(so);
}

int
lq_sysctl_out(struct sysctl_req *req, const void *p, size_t len)
{
	return (SYSCTL_OUT(req, p, len));
}

int
lq_sysctl_sizing(struct sysctl_req *req)
{
	return (req->oldptr == NULL);
}

/* Module and sysctl declarations. */

static int
listenq_modevent(module_t mod __unused, int what, void *arg __unused)
{
	switch (what) {
	case MOD_LOAD:
		return (listenq_rs_load());
	case MOD_QUIESCE:
		return (listenq_rs_quiesce());
	case MOD_UNLOAD:
		return (listenq_rs_unload());
	case MOD_SHUTDOWN:
		return (0);
	default:
		return (EOPNOTSUPP);
	}
}

static moduledata_t listenq_mod = {
	"listenq",
	listenq_modevent,
	NULL
};
DECLARE_MODULE(listenq, listenq_mod, SI_SUB_PROTO_END, SI_ORDER_ANY);
MODULE_VERSION(listenq, 1);

static char listenq_version[] = LISTENQ_VERSION;

SYSCTL_DECL(_kern_ipc);
SYSCTL_NODE(_kern_ipc, OID_AUTO, listenq, CTLFLAG_RD | CTLFLAG_MPSAFE, 0,
    "listenq: listen queues and accept filters in Rust");
SYSCTL_STRING(_kern_ipc_listenq, OID_AUTO, version, CTLFLAG_RD,
    listenq_version, 0, "listenq version");

static int
sysctl_allocs(SYSCTL_HANDLER_ARGS)
{
	uint64_t n = listenq_rs_allocs();

	return (sysctl_handle_64(oidp, &n, 0, req));
}
SYSCTL_PROC(_kern_ipc_listenq, OID_AUTO, allocs,
    CTLTYPE_U64 | CTLFLAG_RD | CTLFLAG_MPSAFE, NULL, 0, sysctl_allocs, "QU",
    "Live allocations made by listenq");

static int
sysctl_listeners(SYSCTL_HANDLER_ARGS)
{
	return (listenq_rs_sysctl_listeners(req));
}
SYSCTL_PROC(_kern_ipc_listenq, OID_AUTO, listeners,
    CTLTYPE_STRING | CTLFLAG_RD | CTLFLAG_MPSAFE, NULL, 0, sysctl_listeners,
    "A", "Listening sockets seen by listenq (table)");

static int
sysctl_xlisteners(SYSCTL_HANDLER_ARGS)
{
	return (listenq_rs_sysctl_xlisteners(req));
}
SYSCTL_PROC(_kern_ipc_listenq, OID_AUTO, xlisteners,
    CTLTYPE_OPAQUE | CTLFLAG_RD | CTLFLAG_MPSAFE, NULL, 0, sysctl_xlisteners,
    "S,xlistenq", "Listening sockets seen by listenq (struct xlistenq[])");

SYSCTL_NODE(_kern_ipc_listenq, OID_AUTO, stats, CTLFLAG_RD | CTLFLAG_MPSAFE,
    0, "listenq global counters");

static int
sysctl_stat(SYSCTL_HANDLER_ARGS)
{
	return (listenq_rs_sysctl_stat(req, arg2));
}
#define	LQ_STAT(name, n, descr)						\
	SYSCTL_PROC(_kern_ipc_listenq_stats, OID_AUTO, name,		\
	    CTLTYPE_U64 | CTLFLAG_RD | CTLFLAG_MPSAFE, NULL, n, sysctl_stat, \
	    "QU", descr)
LQ_STAT(listens, 0, "Successful listen(2) calls seen");
LQ_STAT(closes, 1, "Listeners closed");
LQ_STAT(completed, 2, "Connections that reached a completed queue");
LQ_STAT(accepted, 3, "Connections returned by accept(2)");
LQ_STAT(overflows, 4, "Connections refused because a completed queue was full");
LQ_STAT(held, 5, "Connections held by a listenq accept filter");
LQ_STAT(released, 6, "Held connections released to the completed queue");
LQ_STAT(evicted, 7, "Held connections terminated to make room (oldest first)");
LQ_STAT(timeouts, 8, "Held connections that reached the hold timeout");
LQ_STAT(nomem, 9, "Times listenq could not allocate and fell back to stock behaviour");
