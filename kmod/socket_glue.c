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
#include <sys/file.h>
#include <sys/sbuf.h>
#include <sys/sx.h>
#include <sys/user.h>
#include <sys/refcount.h>
#include <sys/socket.h>
#include <sys/socketvar.h>
#include <sys/protosw.h>
#include <sys/domain.h>
#include <sys/selinfo.h>
#include <sys/event.h>
#include <sys/sysctl.h>
#include <sys/fail.h>
#include <sys/un.h>
#include <sys/unpcb.h>
#include <sys/jail.h>
#include <sys/ucred.h>
#include <sys/epoch.h>
#include <net/vnet.h>
#include <netinet/in.h>
#include <netinet/in_pcb.h>
#include <netinet/tcp_fsm.h>
#include <netinet/tcp_var.h>

#include "socket_glue.h"
#include "work_glue.h"
#include "inherit_glue.h"

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

/* The top `plen' bits of a big-endian address of `len' bytes, folded to 64. */
static uint64_t
lq_prefix(const uint8_t *a, int len, int plen)
{
	uint64_t hi = 0, lo = 0;
	int i, bit;

	for (i = 0; i < len; i++) {
		uint8_t b = a[i];

		bit = i * 8;
		if (bit >= plen)
			b = 0;
		else if (bit + 8 > plen)
			b &= (uint8_t)(0xff << (8 - (plen - bit)));
		if (i < 8)
			hi = hi << 8 | b;
		else
			lo = lo << 8 | b;
	}
	/* /64 and shorter use the high half alone; longer ones mix in the rest. */
	return (hi ^ (lo * 0x9E3779B97F4A7C15ULL));
}

/*
 * Which source a connection comes from, for fair eviction: its peer's
 * address under a prefix (TCP), or its peer's uid (local sockets, from the
 * credentials unp_connectat() copied before the connection completed).
 * The family is in the top bits so that sources of different kinds do not
 * meet. Called with the socket locked; an established connection's
 * foreign address and peer credentials do not change.
 */
uint64_t
lq_so_source(struct socket *so, int plen4, int plen6)
{
	int family = so->so_proto->pr_domain->dom_family;

	switch (family) {
	case AF_INET:
	case AF_INET6: {
		struct inpcb *inp = sotoinpcb(so);

		if (inp == NULL)
			return (0);
		if (inp->inp_vflag & INP_IPV6)
			return ((uint64_t)2 << 62 ^ lq_prefix(
			    (const uint8_t *)&inp->inp_inc.inc6_faddr, 16,
			    plen6));
		return ((uint64_t)1 << 62 | lq_prefix(
		    (const uint8_t *)&inp->inp_inc.inc_faddr, 4, plen4));
	}
	case AF_LOCAL: {
		struct unpcb *unp = sotounpcb(so);

		if (unp == NULL || (unp->unp_flags & UNP_HAVEPC) == 0)
			return ((uint64_t)3 << 62);
		return ((uint64_t)3 << 62 | (uint64_t)unp->unp_peercred.cr_uid);
	}
	}
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

/*
 * Which IP versions a TCP listener takes, as netstat(1) reads them to say
 * tcp4, tcp6 or tcp46 (usr.bin/netstat/inet.c). Read without the inpcb
 * lock, as lq_so_local() reads the address: inp_vflag does not change
 * while the socket listens. IPV6_V6ONLY, the one option that sets it
 * (ip6_ctloutput()), is refused with EINVAL once the pcb has a local port
 * or address, and a listener has both (listen(2) binds an unbound
 * socket); tcp6_usr_listen() sets it from IPV6_V6ONLY only when it binds.
 * So the value at listen(2), or at adoption for a listener older than
 * listenq, is the value for the listener's whole life.
 */
int
lq_so_inp_versions(struct socket *so)
{
	int family = so->so_proto->pr_domain->dom_family;
	struct inpcb *inp;
	int v = 0;

	if ((family != AF_INET && family != AF_INET6) ||
	    so->so_proto->pr_protocol != IPPROTO_TCP)
		return (0);
	inp = sotoinpcb(so);
	if (inp == NULL)
		return (0);
	if (inp->inp_vflag & INP_IPV4)
		v |= LQ_INP_IPV4;
	if (inp->inp_vflag & INP_IPV6)
		v |= LQ_INP_IPV6;
	return (v);
}

void
lq_soref(struct socket *so)
{
	soref(so);
}

/*
 * The reference a listeners-table row holds on its listener. The last one
 * frees the socket the kernel's way (sofree(): pr_detach, so a listening
 * tcpcb's timers stop under its inpcb lock before the memory goes; (T) in
 * work_glue.c).
 */
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

/*
 * listen(2) on a TCP socket whose connection is not over. 14's
 * tcp_usr_listen() refuses only a dropped inpcb and, through
 * solisten_proto_check(), a socket still SS_ISCONNECTED, ISCONNECTING or
 * ISDISCONNECTING. A half-closed connection passes: after
 * shutdown(SHUT_RDWR) the ACK of its FIN moves it to FIN_WAIT_2 and
 * soisdisconnected() clears all three. It then becomes a listener with
 * its timers armed, and solisten_proto() tears down so_snd and so_rcv
 * under them: the next delayed ACK runs tcp_output() on the listener and
 * takes a NULL send-buffer mutex (a page fault in the callout thread;
 * listenq(4) BUGS). Any user can do it to any socket of their own.
 *
 * EINVAL, as listen(2) gives a connected socket, unless the connection
 * is new (CLOSED) or listens already; a dropped one is left to the
 * kernel's own EINVAL. The kernel's entry takes the inpcb lock again
 * afterwards, and in between another thread of the process can still
 * connect the socket and half-close it (a CLOSED tcpcb that connects,
 * gets its FIN acknowledged and is soisdisconnected() before the
 * kernel's check): lq_tcp_listen_done() below stops the timers such a
 * socket brings into LISTEN. Only the kernel fix closes that window for
 * good (listenq(4) BUGS).
 */
int
lq_tcp_listen_check(struct socket *so)
{
	struct inpcb *inp = sotoinpcb(so);
	struct tcpcb *tp;
	int error = 0;

	if (inp == NULL)
		return (0);	/* the kernel's entry asserts it */
	INP_WLOCK(inp);
	if ((inp->inp_flags & INP_DROPPED) == 0) {
		tp = intotcpcb(inp);
		if (tp->t_state != TCPS_CLOSED && tp->t_state != TCPS_LISTEN)
			error = EINVAL;
	}
	INP_WUNLOCK(inp);
	return (error);
}

/*
 * After the kernel's pr_listen made `so' a TCP listener: a listener's
 * tcpcb has no timer armed, unless the race above let a half-closed
 * connection through; stop them, so that none runs tcp_output() on the
 * listener (no send buffer: the page fault). One lock round trip per
 * listen(2).
 */
void
lq_tcp_listen_done(struct socket *so)
{
	struct inpcb *inp = sotoinpcb(so);
	struct tcpcb *tp;
	bool armed = false;
	int i;

	if (inp == NULL)
		return;
	INP_WLOCK(inp);
	if ((inp->inp_flags & INP_DROPPED) == 0) {
		tp = intotcpcb(inp);
		for (i = 0; i < TT_N; i++)
			if (tp->t_timers[i] != SBT_MAX)
				armed = true;
		if (armed && tp->t_state == TCPS_LISTEN) {
			tcp_timer_stop(tp);	/* may drop and retake the lock */
			for (i = 0; i < TT_N; i++) {
				tp->t_timers[i] = SBT_MAX;
				tp->t_precisions[i] = 0;
			}
		}
	}
	INP_WUNLOCK(inp);
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

/*
 * Local sockets: uipc_usrreq.c keeps its pcb lists static, and the file
 * table walk of kern.file uses fdhold()/fddrop(), static as well. What the
 * kernel exports for modules is the walk procstat(1) reads,
 * kern_proc_filedesc_out(), and fget_remote(). So, per process:
 * kern_proc_filedesc_out() writes one kinfo_file per descriptor into an
 * sbuf whose drain (lq_adopt_drain) picks the AF_LOCAL stream/seqpacket
 * sockets; fget_remote() then takes a reference on that descriptor's file
 * (the socket cannot be closed while it is held), and the socket itself
 * is checked again before listenq_rs_adopt(), which takes the row's
 * soref(9). A kinfo_file only says where to look, never what to trust.
 *
 * Locks: kern_proc_filedesc_out() calls the sbuf (and so the drain) only
 * with the process and file table unlocked (export_file_to_sb() and
 * export_vnode_to_sb() drop FILEDESC_SLOCK/PWDDESC_XLOCK around it), and
 * the walk holds nothing else, so fget_remote() can take PROC_LOCK and
 * FILEDESC_SLOCK, listenq_rs_adopt() the socket lock and the registry, and
 * fdrop() even the last reference (soclose()) as in any system call. The
 * process is held (PHOLD) across its walk, so fget_remote() never sees it
 * freed; an exiting one (P_WEXIT) is skipped, its descriptors are going.
 *
 * A socket reached through several descriptors or processes is adopted
 * once: the registry keys rows by socket, and listenq_rs_adopt() of a
 * known socket drops the extra reference. TCP is left to the pcb walk.
 * Missed: a listener no descriptor holds at that moment (in flight in an
 * SCM_RIGHTS message, or moved between descriptors during the walk); it
 * appears at its next listen(2).
 */
struct lq_adopt_walk {
	struct thread	*td;
	struct proc	*p;
};

static int
lq_adopt_drain(void *arg, const char *data, int len)
{
	struct lq_adopt_walk *w = arg;
	const struct kinfo_file *kif;
	struct file *fp;
	struct socket *so;
	int off, type;

	/*
	 * Without KERN_FILEDESC_PACK_KINFO every record is a whole struct
	 * (a multiple of 8 bytes), the buffer (malloc(9), so aligned) holds
	 * exactly one, and sbuf_drain() always passes the buffer's start:
	 * each call gets one aligned record.
	 */
	CTASSERT(sizeof(*kif) % sizeof(uint64_t) == 0);
	for (off = 0; len - off >= (int)sizeof(*kif); off += sizeof(*kif)) {
		kif = (const struct kinfo_file *)(const void *)(data + off);
		type = kif->kf_un.kf_sock.kf_sock_type0;
		if (kif->kf_type != KF_TYPE_SOCKET ||
		    kif->kf_un.kf_sock.kf_sock_domain0 != AF_LOCAL ||
		    (type != SOCK_STREAM && type != SOCK_SEQPACKET))
			continue;
		if (fget_remote(w->td, w->p, kif->kf_fd, &fp) != 0)
			continue;
		if (fp->f_type == DTYPE_SOCKET) {
			so = fp->f_data;
			if (so->so_proto->pr_domain->dom_family == AF_LOCAL &&
			    SOLISTENING(so))
				listenq_rs_adopt(so);
		}
		fdrop(fp, w->td);
	}
	/* Never less than everything: 0 would stop the walk (EDEADLK). */
	return (len);
}

void
lq_local_listeners_foreach(void)
{
	struct lq_adopt_walk w;
	struct sbuf sb;
	struct proc *p;
	pid_t *pids;
	char *buf;
	int cap, i, n, tries;

	/* Load time, nothing locked: M_WAITOK. */
	buf = malloc(sizeof(struct kinfo_file) + 1, M_TEMP, M_WAITOK);
	pids = NULL;
	n = cap = 0;
	/*
	 * The pids first (allproc_lock is not held while files are
	 * dropped); processes forked meanwhile inherit descriptors of ones
	 * already counted, and a fork storm only costs its newest.
	 */
	for (tries = 0; tries < 4 && (pids == NULL || n > cap); tries++) {
		free(pids, M_TEMP);
		cap = MAX(n, nprocs) + 32;
		pids = malloc(cap * sizeof(*pids), M_TEMP, M_WAITOK);
		n = 0;
		sx_slock(&allproc_lock);
		FOREACH_PROC_IN_SYSTEM(p) {
			if (n < cap)
				pids[n] = p->p_pid;
			n++;
		}
		sx_sunlock(&allproc_lock);
	}
	n = MIN(n, cap);
	w.td = curthread;
	for (i = 0; i < n; i++) {
		if (pget(pids[i], PGET_HOLD | PGET_NOTWEXIT, &p) != 0)
			continue;
		w.p = p;
		sbuf_new(&sb, buf, sizeof(struct kinfo_file) + 1,
		    SBUF_FIXEDLEN);
		sbuf_set_drain(&sb, lq_adopt_drain, &w);
		PROC_LOCK(p);
		/* Returns with the process unlocked. */
		(void)kern_proc_filedesc_out(p, &sb, -1, 0);
		(void)sbuf_finish(&sb);
		sbuf_delete(&sb);
		PRELE(p);
	}
	free(pids, M_TEMP);
	free(buf, M_TEMP);
}

static int
lq_sol_upcall(struct socket *head, void *arg, int waitflag __unused)
{
	SOLISTEN_LOCK_ASSERT(head);
	/* On a kernel that does not inherit SO_ACCEPTFILTER (inherit_glue.c). */
	if (__predict_false(lq_rescue_on != 0) && lq_accf_rescue(head))
		return (SU_OK);	/* held: nothing new to accept or wake for */
	listenq_rs_sol_upcall(head, arg);
	/* What solisten_wakeup() does when no upcall is set. */
	selwakeuppri(&head->so_rdsel, PSOCK);
	KNOTE_LOCKED(&head->so_rdsel.si_note, 0);
	return (SU_OK);
}

/*
 * A listener's close (listenq's pr_close, after the protocol's own); only
 * TCP's matters here. A connection of a listener with an accept filter
 * completes in the connection's own TCP input, not under the listener's
 * pcb lock: soisconnected() from the final ACK (TF_SONOTCONN, where a
 * filtered listener's connection always goes) or from a filter's
 * SU_ISCONNECTED, and solisten_wakeup() reads the listener after unlocking
 * it ((W) in deliver_glue.c). If soclose() frees the listener in that
 * window, that reader reads freed memory. So the close takes one more
 * reference on the listener here and gives it back only after a
 * network-epoch grace period (work_glue.c lq_close_defer()): every TCP
 * input runs in the network epoch, so such a reader has left
 * solisten_wakeup() by then. soclose() goes on as without listenq: it
 * empties the queues, aborts the connections and drops the descriptor's
 * reference, which is no longer the last.
 *
 * Nothing here sleeps: soclose() is also reached with a mutex held (a
 * unix socket's SCM_RIGHTS carrying the last descriptor of a TCP listener,
 * disposed of by unp_connect() under its pcb lock; the syscall fuzzer's
 * finding 9). ENOMEM when the deferral could not be allocated: the close
 * is then the kernel's own, as without listenq.
 */
int
lq_tcp_listen_close(struct socket *head)
{
	if (head->so_proto->pr_protocol != IPPROTO_TCP || !SOLISTENING(head))
		return (0);
	return (lq_close_defer(head));
}

/*
 * Whether a listener has no listen upcall or listenq's (listener locked):
 * only then does an in-place delivery (deliver_glue.c) wake it, under the
 * connection's locks, with lq_listen_wakeup_locked().
 */
int
lq_sol_upcall_is_ours(struct socket *head)
{
	SOLISTEN_LOCK_ASSERT(head);
	return (head->sol_upcall == NULL || head->sol_upcall == lq_sol_upcall);
}

/*
 * What solisten_wakeup() does under the listener lock, for a connection
 * listenq's filter delivers in place: listenq's listen upcall without its
 * rescue (the connection is tagged, so the rescue would leave it alone,
 * but it locks the connection first, which the caller's receive-buffer
 * lock forbids), or the kernel's wakeup for a listener without an upcall.
 */
void
lq_listen_wakeup_locked(struct socket *head)
{
	SOLISTEN_LOCK_ASSERT(head);
	if (head->sol_upcall == lq_sol_upcall)
		listenq_rs_sol_upcall(head, head->sol_upcallarg);
	selwakeuppri(&head->so_rdsel, PSOCK);
	KNOTE_LOCKED(&head->so_rdsel.si_note, 0);
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
lq_listen_upcalls_close(void)
{
	atomic_store_rel_int(&lq_upcalls_closed, 1);
}

int
lq_listen_upcall_install(struct socket *so, void *arg)
{
	int done = 0;

	/*
	 * For the test of the window below: debug.fail_point.
	 * listenq_listen_upcall ("1*sleep(ms)") stalls here, before the lock,
	 * as a thread preempted after the kernel's listen would.
	 */
	KFAIL_POINT_CODE(DEBUG_FP, listenq_listen_upcall, );
	SOCK_LOCK(so);
	if (SOLISTENING(so) && so->sol_upcall == NULL &&
	    atomic_load_acq_int(&lq_upcalls_closed) == 0) {
		solisten_upcall_set(so, lq_sol_upcall, arg);
		done = 1;
		/*
		 * Connections that completed between the kernel's listen and
		 * now never called this upcall: record them now, under the
		 * same lock the upcall runs with, or their accept(2) goes
		 * uncounted (the fuzzer's finding 8).
		 */
		if (!TAILQ_EMPTY(&so->sol_comp))
			listenq_rs_sol_upcall(so, arg);
	}
	SOCK_UNLOCK(so);
	return (done);
}

int
lq_listen_upcall_remove(struct socket *so, void *arg)
{
	int done = 0;

	SOCK_LOCK(so);
	if (SOLISTENING(so) && so->sol_upcall == lq_sol_upcall &&
	    so->sol_upcallarg == arg) {
		solisten_upcall_set(so, NULL, NULL);
		done = 1;
	}
	SOCK_UNLOCK(so);
	return (done);
}
