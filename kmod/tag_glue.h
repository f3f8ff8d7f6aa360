/* The held-connection tag and upcall: C half, see tag_glue.c. */
#ifndef LISTENQ_TAG_GLUE_H
#define LISTENQ_TAG_GLUE_H

#include <sys/types.h>

struct socket;

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


/* Rust. */
void	listenq_rs_held_gone(struct socket *so, void *upcall_arg);
void	listenq_rs_upcall_gone(void *upcall_arg, struct socket *so);

#endif
