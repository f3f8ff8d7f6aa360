/* listenq: letting held connections go, see work_glue.c. */
#ifndef LISTENQ_WORK_GLUE_H
#define LISTENQ_WORK_GLUE_H

#include <sys/types.h>

struct socket;
struct lq_work;

/* The work item a held connection is admitted with (NULL: no memory). */
struct lq_work *lq_work_alloc(void);
void	lq_work_free(struct lq_work *w);
/* Consumes `w'; ESRCH if a socket is already being freed. */
int	lq_work_schedule(struct lq_work *w, struct socket *head,
	    struct socket *so, int deliver);
int	lq_work_evict_now(struct lq_work *w, struct socket *head,
	    struct socket *so);
u_int	lq_work_pending_count(void);
/* The hold-timeout clock: calls listenq_rs_tick() every `ms'. */
void	lq_tick_start(int ms);
void	lq_tick_stop(void);

/* Rust. */
void	listenq_rs_work_done(void *head_arg, void *upcall_arg,
	    struct socket *so, int delivered);
void	listenq_rs_tick(void);

#endif
