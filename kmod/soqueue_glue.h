/*
 * The moves between a listener's queues that uipc_socket.c makes inline,
 * under the locks socketvar.h's key names for them.
 */
#ifndef LISTENQ_SOQUEUE_GLUE_H
#define LISTENQ_SOQUEUE_GLUE_H

struct socket;

/* Both locked: `so' from head's incomplete queue to its completed one. */
void	lq_soqueue_complete(struct socket *head, struct socket *so);
/* Both locked: `so' off head's incomplete queue, head's no longer. */
void	lq_soqueue_detach(struct socket *head, struct socket *so);

#endif
