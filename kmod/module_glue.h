/*
 * The module (DECLARE_MODULE, its malloc type) and the kernel services the
 * Rust half uses everywhere, as functions Rust can call in place of
 * macros: printf(9), panic(9), malloc(9), mtx(9), time.
 */
#ifndef LISTENQ_MODULE_GLUE_H
#define LISTENQ_MODULE_GLUE_H

#include <sys/types.h>

struct mtx;

/* printf(9) / panic(9) with a length, so Rust needs no NUL terminator. */
void	lq_log(const char *msg, size_t len);
void	lq_panic(const char *msg, size_t len) __dead2;

/* malloc(9) with the module's own type, never sleeping. */
void	*lq_malloc(size_t size, size_t align);
void	lq_free(void *p);

/* mtx(9): Rust owns the storage. */
void	lq_mtx_init(struct mtx *m, const char *name);
void	lq_mtx_destroy(struct mtx *m);

/* ppsratecheck(9) for console lines users can cause: 1 to print. */
int	lq_log_ratecheck(void);
/* The same for all listeners' lines together, a few more a second. */
int	lq_log_ratecheck_all(void);

/*
 * log(9) at kern.ipc.listenq.logprio (none when it is -1), for messages
 * about what a user or a peer did: with a length, as lq_log().
 */
void	lq_log_event(const char *msg, size_t len);
extern int lq_logprio;

/* Who the current thread acts for: its process, user and jail. */
struct lq_caller {
	int32_t		pid;
	uint32_t	uid;
	int32_t		jid;
};
void	lq_caller(struct lq_caller *out);

/* Monotonic time in microseconds (getbinuptime). */
uint64_t lq_uptime_us(void);
/* 1 while debug.fail_point.listenq_ring_full fires. */
int	lq_fail_ring_full(void);
/* Sleep for about `ms' milliseconds (pause(9)); no locks may be held. */
void	lq_pause_ms(int ms);

void	listenq_glue_anchor(void);

/* Rust (kmod/src/kern/entry/module.rs). */
int	listenq_rs_load(void);
int	listenq_rs_quiesce(void);
int	listenq_rs_unload(void);

#endif
