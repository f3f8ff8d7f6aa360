/*
 * listenq C glue: the moves between a listener's queues that
 * uipc_socket.c makes inline (soisconnected(), solisten_enqueue()), for
 * the glue that hands held connections on (deliver_glue.c, work_glue.c,
 * inherit_glue.c). See soqueue_glue.h.
 */
#include <sys/param.h>
#include <sys/systm.h>
#include <sys/lock.h>
#include <sys/mutex.h>
#include <sys/socket.h>
#include <sys/socketvar.h>

#include "soqueue_glue.h"

/*
 * What soisconnected() does once a connection's filter is satisfied: off
 * the incomplete queue and onto the completed one, the listener's and the
 * connection's locks held. The caller wakes the listener.
 */
void
lq_soqueue_complete(struct socket *head, struct socket *so)
{
	SOLISTEN_LOCK_ASSERT(head);
	SOCK_LOCK_ASSERT(so);
	TAILQ_REMOVE(&head->sol_incomp, so, so_list);
	head->sol_incqlen--;
	TAILQ_INSERT_TAIL(&head->sol_comp, so, so_list);
	head->sol_qlen++;
	so->so_qstate = SQ_COMP;
}

/*
 * What solisten_enqueue() does to the oldest incomplete connection: off
 * the incomplete queue and no longer its listener's, both locks held. The
 * queue's references (on `so' and on the listener) are now the caller's.
 */
void
lq_soqueue_detach(struct socket *head, struct socket *so)
{
	SOLISTEN_LOCK_ASSERT(head);
	SOCK_LOCK_ASSERT(so);
	TAILQ_REMOVE(&head->sol_incomp, so, so_list);
	head->sol_incqlen--;
	so->so_qstate = SQ_NONE;
	so->so_listen = NULL;
}
