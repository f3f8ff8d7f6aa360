/* listenq accept filters: C half, see accf_glue.c. */
#ifndef LISTENQ_ACCF_GLUE_H
#define LISTENQ_ACCF_GLUE_H

#include <sys/types.h>

struct socket;
struct lq_work;

typedef int	lq_accf_cb_t(struct socket *so, void *arg, int waitflag);
typedef void	*lq_accf_create_t(struct socket *so, char *arg);
typedef void	lq_accf_destroy_t(struct socket *so);

struct lq_sbstate {
	u_int	avail;		/* data bytes a reader would get (lq_sb_copy) */
	int	full;		/* no space left in the receive buffer */
	int	eof;		/* SBS_CANTRCVMORE */
	int	sock_locked;	/* SOCK_LOCK held: called from soisconnected() */
	int	readable;	/* soreadable(): sb_lowat bytes, an error or EOF */
	int	queued;		/* on its listener's incomplete queue (SQ_INCOMP) */
};

int	lq_accf_register(const char *name, lq_accf_cb_t *cb,
	    lq_accf_create_t *create, lq_accf_destroy_t *destroy);
void	lq_accf_unregister(const char *name, lq_accf_cb_t *cb);
void	lq_sb_state(struct socket *so, struct lq_sbstate *out);
/*
 * Copies up to `len' of the data bytes a reader would get, from the
 * `off'th on, across records, skipping address and control mbufs;
 * returns how many it copied.
 */
u_int	lq_sb_copy(struct socket *so, u_int off, void *buf, u_int len);
/* Installs listenq's so_dtor; 0 if the socket already has another. */
int	lq_so_tag(struct socket *so);
void	lq_so_untag_locked(struct socket *so);
/* 1 if it had listenq's destructor; *upcall_arg: see lq_so_upcall_take. */
int	lq_so_untag(struct socket *so, void **upcall_arg);
/* The work item a held connection is admitted with (NULL: no memory). */
struct lq_work *lq_work_alloc(void);
void	lq_work_free(struct lq_work *w);
/* Consumes `w'; ESRCH if a socket is already being freed. */
int	lq_work_schedule(struct lq_work *w, struct socket *head,
	    struct socket *so, int deliver);
int	lq_work_evict_now(struct lq_work *w, struct socket *head,
	    struct socket *so);
u_int	lq_work_pending_count(void);
/*
 * Clears listenq's upcall on every connection of `head''s incomplete
 * queue and flags it for release; *argp gets the listener's filter state.
 * Returns how many had that state as their upcall argument.
 */
u_int	lq_accf_release_all(struct socket *head, void **argp);
/* ppsratecheck(9) for console lines users can cause: 1 to print. */
int	lq_log_ratecheck(void);
void	lq_tick_start(int ms);
void	lq_tick_stop(void);
extern u_int lq_hold_timeout_ms;
extern int lq_hold_timeout_drop;

/* Rust. */
int	listenq_accf_callback(struct socket *so, void *arg, int waitflag);
void	listenq_accf_destroy(struct socket *so);
void	listenq_rs_held_gone(struct socket *so, void *upcall_arg);
void	listenq_rs_upcall_gone(void *upcall_arg, struct socket *so);
void	listenq_rs_work_done(void *head_arg, void *upcall_arg,
	    struct socket *so, int delivered);
void	listenq_rs_tick(void);

#endif
