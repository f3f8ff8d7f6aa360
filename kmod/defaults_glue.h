/* Per-filter default af_arg: C half, see defaults_glue.c. */
#ifndef LISTENQ_DEFAULTS_GLUE_H
#define LISTENQ_DEFAULTS_GLUE_H

#include <sys/types.h>

/* The filters (listenq-accf's FilterKind::ALL, which a Rust assertion keeps equal). */
#define	LQ_NFILTERS		4
/* sizeof(struct accept_filter_arg.af_arg): the same limit as af_arg. */
#define	LQ_DEFAULT_ARG_LEN	240

struct socket;

/*
 * Copies filter's default af_arg for listener head (its vnet's, or the
 * host-wide one) into buf (NUL-terminated, at most len - 1 bytes) under
 * the defaults mutex; returns its length (0: none). Never sleeps: called
 * from accf_create with the listener locked.
 */
size_t	lq_default_arg(struct socket *head, int filter, char *buf, size_t len);

/*
 * The default hold timeout (ms, 0 for none) and whether it drops, for
 * listener head: its vnet's, or the host-wide kern.ipc.listenq.hold_*.
 * head must stay live for the call.
 */
void	lq_hold_timeout(struct socket *head, u_int *ms, int *drop);

/* Rust: filter's name (kern.ipc.listenq.<name>), NULL past the last. */
const char	*listenq_rs_filter_name(int filter);

/*
 * Rust: 0 if arg (len bytes, no NUL) is a valid af_arg, else EINVAL (and a
 * console line naming the per-VNET OID when vnet is 1).
 */
int	listenq_rs_default_arg_check(int filter, int vnet, const char *arg,
	    size_t len);

#endif
