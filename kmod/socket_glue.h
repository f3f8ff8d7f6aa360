/*
 * Sockets: accessors standing in for the socket macros and inline
 * functions, references, the walk over existing TCP listeners, and the
 * listen upcall.
 */
#ifndef LISTENQ_SOCKET_GLUE_H
#define LISTENQ_SOCKET_GLUE_H

#include <sys/types.h>

struct socket;
struct sysctl_req;

/* A listener's queue state, read under its lock. */
struct lq_qsample {
	u_int	qlen;
	u_int	incqlen;
	u_int	qlimit;
	int	overcount;
	int64_t	lastover_sec;
	int64_t	lastover_usec;
};

/* A socket's local address, for the listeners table. */
struct lq_local {
	int	family;		/* AF_INET, AF_INET6, AF_LOCAL or 0 */
	uint16_t port;		/* host byte order */
	uint8_t	len;		/* bytes of addr used */
	uint8_t	addr[104];	/* in_addr, in6_addr or the whole sun_path */
};

/* lq_so_inp_versions(): the IP versions a TCP socket's pcb takes. */
#define	LQ_INP_IPV4	0x01	/* INP_IPV4 in inp_vflag */
#define	LQ_INP_IPV6	0x02	/* INP_IPV6 in inp_vflag */

/* A listener's owner (so_cred): user id and jail id. */
struct lq_owner {
	uint32_t uid;
	int32_t	jid;
};

/* Queue state of a listening socket; takes and drops SOLISTEN_LOCK. */
int	lq_solisten_sample(struct socket *so, struct lq_qsample *out);
/* Queue state of a listening socket whose lock the caller holds. */
void	lq_solisten_sample_locked(struct socket *so, struct lq_qsample *out);
void	lq_so_local(struct socket *so, struct lq_local *out);
/* LQ_INP_IPV4 | LQ_INP_IPV6 of a TCP listener; 0 for other sockets. */
int	lq_so_inp_versions(struct socket *so);
/* A connection's source for fair eviction (socket locked); see the .c. */
uint64_t lq_so_source(struct socket *so, int plen4, int plen6);
void	lq_soref(struct socket *so);
void	lq_sorele(struct socket *so);
void	lq_so_owner(struct socket *so, struct lq_owner *out);
/* Only `ours' references left: soclose() has run, no descriptor is left. */
int	lq_so_orphaned(struct socket *so, u_int ours);
/* EINVAL for listen(2) on a TCP connection that is not over (half closed). */
int	lq_tcp_listen_check(struct socket *so);
/* After a TCP listen(2) succeeded: stops timers a racing half-close left. */
void	lq_tcp_listen_done(struct socket *so);
/* The name of the accept filter on a listener (any module's), or "". */
void	lq_so_filter_name(struct socket *so, char out[16]);
/* pr_close of a TCP listener, after TCP's: empties its queues, then waits. */
int	lq_tcp_listen_close(struct socket *head);
/* Listener locked: it has no listen upcall, or listenq's. */
int	lq_sol_upcall_is_ours(struct socket *head);
/* Listener locked, with such an upcall: solisten_wakeup() before its unlock. */
void	lq_listen_wakeup_locked(struct socket *head);
/* Whether the reader of `req' may see `so' (netstat/sockstat rules). */
int	lq_so_visible(struct socket *so, struct sysctl_req *req);

/*
 * Every TCP listener of every vnet, for listenq_rs_adopt(); called with
 * the inpcb read-locked.
 */
void	lq_tcp_listeners_foreach(void);
/*
 * Every local stream/seqpacket listener a process holds a descriptor of,
 * for listenq_rs_adopt(); called with a reference on the descriptor's file
 * and no lock held. Module load only (sleeps).
 */
void	lq_local_listeners_foreach(void);

/*
 * The listen upcall: listenq sets it on listeners nobody else claimed, to
 * see each connection reach the completed queue. It does the wakeups
 * solisten_wakeup() skips when an upcall is present. Its argument is the
 * listener's own state (kmod/src/kern/pending.rs), so the upcall finds it
 * without a search. Install returns 1 if it set the upcall (nobody else
 * had one); remove clears it only if it is listenq's with argument `arg',
 * and returns 1 if it did. Both take the listen lock the upcall runs
 * with, so no upcall runs with `arg' once remove returned.
 */
int	lq_listen_upcall_install(struct socket *so, void *arg);
int	lq_listen_upcall_remove(struct socket *so, void *arg);
/* While closed (unload), lq_listen_upcall_install() installs nothing. */
void	lq_listen_upcalls_close(void);

/* Rust (kmod/src/kern/entry/upcall.rs). */
void	listenq_rs_sol_upcall(struct socket *head, void *arg);
void	listenq_rs_adopt(struct socket *so);

#endif
