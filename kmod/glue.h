/*
 * The C side of listenq: what Rust cannot express (DECLARE_MODULE, SYSCTL,
 * MALLOC_DEFINE) and small functions standing in for kernel macros and
 * inline functions (locks, KNOTE, SYSCTL_OUT, pcb address access).
 *
 * Every lq_* function is a thin translation; policy lives in Rust.
 */
#ifndef LISTENQ_GLUE_H
#define LISTENQ_GLUE_H

#include <sys/types.h>

struct socket;
struct mtx;
struct sysctl_req;
struct protosw;

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
	uint8_t	addr[64];	/* in_addr, in6_addr or sun_path */
};

/* A listener's owner (so_cred): user id and jail id. */
struct lq_owner {
	uint32_t uid;
	int32_t	jid;
};

/* printf(9) / panic(9) with a length, so Rust needs no NUL terminator. */
void	lq_log(const char *msg, size_t len);
void	lq_panic(const char *msg, size_t len) __dead2;

/* malloc(9) with the module's own type, never sleeping. */
void	*lq_malloc(size_t size, size_t align);
void	lq_free(void *p);

/* mtx(9): Rust owns the storage. */
size_t	lq_mtx_size(void);
void	lq_mtx_init(struct mtx *m, const char *name);
void	lq_mtx_destroy(struct mtx *m);
void	lq_mtx_lock(struct mtx *m);
void	lq_mtx_unlock(struct mtx *m);

/* Monotonic time in microseconds (getbinuptime). */
uint64_t lq_uptime_us(void);
/* Sleep for about `ms' milliseconds (pause(9)); no locks may be held. */
void	lq_pause_ms(int ms);

/* Socket accessors. */
struct protosw *lq_so_proto(struct socket *so);
int	lq_so_listening(struct socket *so);
/* Queue state of a listening socket; takes and drops SOLISTEN_LOCK. */
int	lq_solisten_sample(struct socket *so, struct lq_qsample *out);
/* Queue state of a listening socket whose lock the caller holds. */
void	lq_solisten_sample_locked(struct socket *so, struct lq_qsample *out);
void	lq_so_local(struct socket *so, struct lq_local *out);
void	lq_soref(struct socket *so);
void	lq_sorele(struct socket *so);
void	lq_so_owner(struct socket *so, struct lq_owner *out);
/* Only `ours' references left: soclose() has run, no descriptor is left. */
int	lq_so_orphaned(struct socket *so, u_int ours);
/* The name of the accept filter on a listener (any module's), or "". */
void	lq_so_filter_name(struct socket *so, char out[16]);
/* Whether the reader of `req' may see `so' (netstat/sockstat rules). */
int	lq_so_visible(struct socket *so, struct sysctl_req *req);
/* Whether the reader may see every socket of the host (global counters). */
int	lq_sysctl_sees_all(struct sysctl_req *req);

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

/* kern.ipc.listenq.unloadable */
extern int lq_unloadable;

/*
 * The listen upcall: listenq sets it on listeners nobody else claimed, to
 * see each connection reach the completed queue. It does the wakeups
 * solisten_wakeup() skips when an upcall is present.
 */
void	lq_listen_upcall_install(struct socket *so);
void	lq_listen_upcall_remove(struct socket *so);
/* While closed (unload), lq_listen_upcall_install() installs nothing. */
void	lq_listen_upcalls_close(int closed);

/*
 * The sysctls whose handlers run module code (listeners, xlisteners,
 * stats.*, allocs) are dynamic: removing them waits for running handlers.
 */
void	lq_sysctl_attach(void);
int	lq_sysctl_detach(void);

/* SYSCTL_OUT. */
int	lq_sysctl_out(struct sysctl_req *req, const void *p, size_t len);
/* True when the sysctl request only asks for the size. */
int	lq_sysctl_sizing(struct sysctl_req *req);

void	listenq_glue_anchor(void);

/* Implemented in Rust, called from glue.c. */
int	listenq_rs_load(void);
int	listenq_rs_quiesce(void);
int	listenq_rs_unload(void);
uint64_t listenq_rs_allocs(void);
void	listenq_rs_completed(struct socket *head, struct socket *child);
struct socket *listenq_rs_newest_completed(struct socket *head);
void	listenq_rs_adopt(struct socket *so);
int	listenq_rs_sysctl_listeners(struct sysctl_req *req);
int	listenq_rs_sysctl_xlisteners(struct sysctl_req *req);
int	listenq_rs_sysctl_stat(struct sysctl_req *req, int which);

#endif
