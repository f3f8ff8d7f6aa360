/* listenq: letting held connections go, see work_glue.c. */
#ifndef LISTENQ_WORK_GLUE_H
#define LISTENQ_WORK_GLUE_H

#include <sys/types.h>
#include <sys/_task.h>

struct socket;

/*
 * The deferred work of one listener's filter state, embedded in it
 * (kern/filter_arg.rs): terminates or delivers the connections on its
 * hold queue's leaving list.
 */
struct lq_leave {
	struct task	lv_task;
	void		*lv_state;	/* the filter state it is embedded in */
};

/* How a connection leaves (policy/src/holdq.rs Leave); NONE: nothing. */
#define	LQ_LEAVE_NONE		0
#define	LQ_LEAVE_ABORT		1
#define	LQ_LEAVE_DELIVER	2
#define	LQ_LEAVE_DETACHED	3

/* `state' is what the task hands listenq_rs_leave_next(). */
void	lq_leave_init(struct lq_leave *lv, void *state);
/* With the state's mutex held, when the task is not queued yet. */
void	lq_leave_enqueue(struct lq_leave *lv);
/* With the state's mutex held: ESRCH, or 0 (*so NULL: head's ref only). */
int	lq_leave_hold(struct socket *head, struct socket **so);
/* An LQ_LEAVE_* for the victim `so' of an admission to `head'. */
int	lq_evict_now(struct socket *head, struct socket *so);
u_int	lq_work_pending_count(void);

/* The hold-timeout clock: calls listenq_rs_tick() every `ms'. */
void	lq_work_start(int ms);
void	lq_work_stop(void);

/* Rust. */
/* The next connection to let go, LQ_LEAVE_NONE when there is none. */
int	listenq_rs_leave_next(void *state, struct socket **head,
	    struct socket **so);
void	listenq_rs_work_done(void *head_arg, void *upcall_arg,
	    struct socket *so, int delivered);
void	listenq_rs_tick(void);

/*
 * Keeps a closing TCP listener for one network-epoch grace period (a
 * reference an epoch callback gives back); ENOMEM if it cannot. Never
 * sleeps.
 */
int	lq_close_defer(struct socket *head);
/* Unload, once no pr_close of listenq's can run: waits for those pending. */
void	lq_close_fini(void);

/* Knobs (kern.ipc.listenq.hold_timeout_*; sysctl_glue.c adds their OIDs). */
extern u_int lq_hold_timeout_ms;
extern int lq_hold_timeout_drop;

#endif
