/*
 * The kern.ipc.listenq sysctl tree: the static node and knobs, and the
 * dynamic OIDs whose handlers run module code (removing them waits for
 * running handlers).
 */
#ifndef LISTENQ_SYSCTL_GLUE_H
#define LISTENQ_SYSCTL_GLUE_H

#include <sys/types.h>

struct sysctl_req;

/*
 * kern.ipc.listenq.stats.*: numbered here only. The SYSCTL declarations
 * pass the number as arg2 and Rust reads it through bindgen
 * (kmod/src/kern/stat.rs).
 */
enum lq_stat {
	LQ_STAT_LISTENS,
	LQ_STAT_CLOSES,
	LQ_STAT_COMPLETED,
	LQ_STAT_ACCEPTED,
	LQ_STAT_OVERFLOWS,
	LQ_STAT_HELD,
	LQ_STAT_RELEASED,
	LQ_STAT_EVICTED,
	LQ_STAT_TIMEOUTS,
	LQ_STAT_NOMEM,
	LQ_NSTATS
};

/*
 * counter(9) for the counters connections bump outside any global lock
 * (accept filter events); a stat's value is the registry's count plus
 * this one. lq_stats_init() sleeps (module load).
 */
void	lq_stats_init(void);
void	lq_stats_fini(void);
/*
 * The counters themselves (counter_u64_t, per-CPU offsets), so that the
 * connection paths add to them as counter_u64_add() does, in Rust
 * (kmod/src/kern/stat.rs), without a call: NULL outside init..fini.
 */
extern uint64_t *lq_counters[LQ_NSTATS];
uint64_t lq_stat_fetch(enum lq_stat which);

/* kern.ipc.listenq.unloadable */
extern int lq_unloadable;

/*
 * Handlers of an int knob bounded to min..max, and to 0..arg2
 * (sysctl_glue.c).
 */
struct sysctl_oid;
int	lq_sysctl_int_between(struct sysctl_oid *oidp, void *arg1, int min,
	    int max, struct sysctl_req *req);
int	lq_sysctl_int_range(struct sysctl_oid *oidp, void *arg1, intmax_t arg2,
	    struct sysctl_req *req);
void	lq_sysctl_attach(void);
int	lq_sysctl_detach(void);

/* SYSCTL_OUT. */
int	lq_sysctl_out(struct sysctl_req *req, const void *p, size_t len);
/* Whether the reader may see every socket of the host (global counters). */
int	lq_sysctl_sees_all(struct sysctl_req *req);

/* Rust (kmod/src/kern/entry/sysctl.rs). */
int	listenq_rs_sysctl_listeners(struct sysctl_req *req);
int	listenq_rs_sysctl_xlisteners(struct sysctl_req *req);
int	listenq_rs_sysctl_stat(struct sysctl_req *req, int which);
uint64_t listenq_rs_allocs(void);

#endif
