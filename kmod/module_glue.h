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
