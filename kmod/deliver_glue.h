/*
 * listenq: a released connection to its listener's completed queue, see
 * deliver_glue.c.
 */
#ifndef LISTENQ_DELIVER_GLUE_H
#define LISTENQ_DELIVER_GLUE_H

#include <sys/types.h>

struct socket;

/* lq_deliver_begin(): which locks it took; or that the task must deliver. */
#define	LQ_DELIVER_TOOK_HEAD	0x1
#define	LQ_DELIVER_TOOK_SO	0x2
#define	LQ_DELIVER_DEFER	(-1)

/*
 * From listenq's receive upcall (the connection's receive buffer locked,
 * the filter state's mutex held, `head' the listener the state is attached
 * to): the locks an in-place delivery needs, with listenq's upcall taken
 * off `so' (its argument in *upcall_arg); or LQ_DELIVER_DEFER, nothing
 * changed.
 */
int	lq_deliver_begin(struct socket *head, struct socket *so,
	    void **upcall_arg);
/* Moves `so' to sol_comp, wakes the listener, drops what begin took. */
void	lq_deliver_finish(struct socket *head, struct socket *so, int took);

#endif
