/*
 * listenq C glue: sockets. Accessors standing in for the socket macros,
 * references, the walk over existing TCP listeners, and the listen upcall.
 * See socket_glue.h.
 */
#include <sys/param.h>
#include <sys/systm.h>
#include <sys/kernel.h>
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
#include <sys/un.h>
#include <sys/unpcb.h>
#include <sys/jail.h>
#include <sys/ucred.h>
#include <net/vnet.h>
#include <netinet/in.h>
#include <netinet/in_pcb.h>
#include <netinet/tcp_var.h>

#include "socket_glue.h"

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

void
lq_so_owner(struct socket *so, struct lq_owner *out)
{
	/* so_cred is set at creation and never changes. */
	out->uid = so->so_cred->cr_uid;
	out->jid = so->so_cred->cr_prison->pr_id;
}

/*
 * soclose() releases the descriptor's reference and those of the queued
 * connections; no flag says it ran. A socket that only listenq's own
 * references (`ours') keep alive has no descriptor left: it is closed for
 * good.
 */
int
lq_so_orphaned(struct socket *so, u_int ours)
{
	return (refcount_load(&so->so_count) <= ours);
}

void
lq_so_filter_name(struct socket *so, char out[16])
{
	const char *name;

	memset(out, 0, 16);
	SOCK_LOCK(so);
	if (SOLISTENING(so) && so->sol_accept_filter != NULL) {
		name = so->sol_accept_filter->accf_name;
		memcpy(out, name, strnlen(name, 15));
	}
	SOCK_UNLOCK(so);
}

/*
 * The rules netstat(1) and sockstat(1) get from the kernel: in_pcblist()
 * lists only the reader's vnet (V_tcbinfo) and asks cr_canseeinpcb(),
 * unp_pcblist() asks cr_canseesocket(). cr_canseesocket() covers what
 * cr_canseeinpcb() does for a socket's credential: prison_check() (a jail
 * sees its own and its children's sockets), MAC, and
 * security.bsd.see_other_uids/see_other_gids/see_jail_proc.
 */
int
lq_so_visible(struct socket *so, struct sysctl_req *req)
{
	int family = so->so_proto->pr_domain->dom_family;

	if ((family == AF_INET || family == AF_INET6) &&
	    so->so_vnet != TD_TO_VNET(req->td))
		return (0);
	return (cr_canseesocket(req->td->td_ucred, so) == 0);
}

/*
 * The walk of in_pcb.c's own users (e.g. tcp_pcblist()): inp_next() with
 * an INP_ALL_ITERATOR returns each inpcb read-locked, so its socket stays
 * attached while listenq_rs_adopt() looks at it. Lock order: inpcb, then
 * socket, then listenq's registry, as tcp_usr_listen() takes them. A
 * dropped inpcb (INP_DROPPED: its socket was closed) is skipped.
 */
void
lq_tcp_listeners_foreach(void)
{
	VNET_ITERATOR_DECL(vnet_iter);
	struct inpcb *inp;
	struct socket *so;

	VNET_LIST_RLOCK();
	VNET_FOREACH(vnet_iter) {
		CURVNET_SET(vnet_iter);
		struct inpcb_iterator inpi = INP_ALL_ITERATOR(&V_tcbinfo,
		    INPLOOKUP_RLOCKPCB);

		while ((inp = inp_next(&inpi)) != NULL) {
			so = inp->inp_socket;
			if (so == NULL || (inp->inp_flags & INP_DROPPED) != 0 ||
			    !SOLISTENING(so))
				continue;
			listenq_rs_adopt(so);
		}
		CURVNET_RESTORE();
	}
	VNET_LIST_RUNLOCK();
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

/*
 * Set before unload takes the upcalls back, and read under the listener's
 * lock: a pr_listen that registered a listener just before unload took
 * the registry installs its upcall either before unload's removal (which
 * then takes it off, under the same lock) or after it, and then sees the
 * flag, since the flag was set before that lock was taken.
 */
static volatile u_int lq_upcalls_closed;

void
lq_listen_upcalls_close(int closed)
{
	atomic_store_rel_int(&lq_upcalls_closed, closed != 0);
}

void
lq_listen_upcall_install(struct socket *so)
{
	SOCK_LOCK(so);
	if (SOLISTENING(so) && so->sol_upcall == NULL &&
	    atomic_load_acq_int(&lq_upcalls_closed) == 0)
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
