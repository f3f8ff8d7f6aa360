/* listenq accept filters: C half, see accf_glue.c. */
#ifndef LISTENQ_ACCF_GLUE_H
#define LISTENQ_ACCF_GLUE_H

#include <sys/types.h>

struct socket;

typedef int	lq_accf_cb_t(struct socket *so, void *arg, int waitflag);
typedef void	*lq_accf_create_t(struct socket *so, char *arg);
typedef void	lq_accf_destroy_t(struct socket *so);

int	lq_accf_register(const char *name, lq_accf_cb_t *cb,
	    lq_accf_create_t *create, lq_accf_destroy_t *destroy);
/* Unregistering in steps: see accf_glue.c and accf.rs unregister(). */
int	lq_accf_bury(const char *name, lq_accf_cb_t *cb);
void	lq_accf_revive_all(void);
void	lq_accf_retire_all(void);
int	lq_accf_unretire(const char *name, lq_accf_cb_t *cb,
	    lq_accf_create_t *create, lq_accf_destroy_t *destroy);
/* Fail points for the tests of that window. */
void	lq_fail_accf_create(void);
int	lq_bury_margin_ms(int dflt);
void	lq_so_untag_locked(struct socket *so);
/*
 * Takes listenq's receive upcall off `so' (receive buffer locked); its
 * argument, or NULL if it had another or none.
 */
void	*lq_so_upcall_take(struct socket *so);
/* 1 if it had listenq's destructor; *upcall_arg: see lq_so_upcall_take. */
int	lq_so_untag(struct socket *so, void **upcall_arg);
/*
 * listenq's destructor (kern/sockbuf.rs SockLocked::tag sets it): a socket
 * without it was never held.
 */
extern void (*const lq_so_dtor_ptr)(struct socket *);
/*
 * Clears listenq's upcall on every connection of `head''s incomplete
 * queue and flags it for release; *argp gets the listener's filter state.
 * Returns how many had that state as their upcall argument.
 */
u_int	lq_accf_release_all(struct socket *head, void **argp);
/* ppsratecheck(9) for console lines users can cause: 1 to print. */
int	lq_log_ratecheck(void);
extern u_int lq_hold_timeout_ms;
extern int lq_hold_timeout_drop;

/* Rust. */
int	listenq_accf_callback(struct socket *so, void *arg, int waitflag);
void	listenq_accf_destroy(struct socket *so);
void	listenq_rs_held_gone(struct socket *so, void *upcall_arg);
void	listenq_rs_upcall_gone(void *upcall_arg, struct socket *so);

#endif
