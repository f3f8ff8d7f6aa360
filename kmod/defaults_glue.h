/* Per-filter default af_arg: C half, see defaults_glue.c. */
#ifndef LISTENQ_DEFAULTS_GLUE_H
#define LISTENQ_DEFAULTS_GLUE_H

#include <sys/types.h>

/* The filters (listenq-accf's FilterKind::ALL, which a Rust assertion keeps equal). */
#define	LQ_NFILTERS		4
/* sizeof(struct accept_filter_arg.af_arg): the same limit as af_arg. */
#define	LQ_DEFAULT_ARG_LEN	240

/*
 * Copies filter's default af_arg into buf (NUL-terminated, at most len - 1
 * bytes) under the defaults mutex; returns its length (0: none). Never
 * sleeps: called from accf_create with the listener locked.
 */
size_t	lq_default_arg(int filter, char *buf, size_t len);

/* Rust: filter's name (kern.ipc.listenq.<name>), NULL past the last. */
const char	*listenq_rs_filter_name(int filter);

/* Rust: 0 if arg (len bytes, no NUL) is a valid af_arg, else EINVAL. */
int	listenq_rs_default_arg_check(int filter, const char *arg, size_t len);

#endif
