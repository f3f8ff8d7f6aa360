/*
 * Accept filters on a kernel whose new connections do not inherit
 * SO_ACCEPTFILTER (FreeBSD 14 as released: solisten_clone() masks it out
 * and solisten_enqueue() does not set it). See inherit_glue.c.
 */
#ifndef LISTENQ_INHERIT_GLUE_H
#define LISTENQ_INHERIT_GLUE_H

struct socket;

/* lq_inherit_probe() results; also kern.ipc.listenq.accf_inherit. */
#define	LQ_INHERIT_UNKNOWN	(-1)	/* the probe failed: rescue, to be safe */
#define	LQ_INHERIT_NO		0	/* listenq's listen upcall holds them */
#define	LQ_INHERIT_YES		1	/* soisconnected() runs the filter */

/*
 * At load, before the protocol switches are hooked: which kind of kernel
 * this is, found by running solisten_clone() and solisten_enqueue() on a
 * private local listener with a filter. Sleeps (socreate, soclose).
 * Turns the rescue on unless the answer is LQ_INHERIT_YES.
 */
int	lq_inherit_probe(void);
/*
 * From listenq's listen upcall (listener locked): 1 if the connection
 * that just reached sol_comp was put back and is now held by listenq's
 * filter, 0 if nothing changed.
 */
int	lq_accf_rescue(struct socket *head);
/*
 * Nonzero unless the probe found a kernel that inherits: the upcall looks
 * at it before calling lq_accf_rescue(), so that a patched kernel's
 * completions pay one load. Written once, at load, before any upcall.
 */
extern volatile u_int lq_rescue_on;

#endif
