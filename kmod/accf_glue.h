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
/* Rust. */
int	listenq_accf_callback(struct socket *so, void *arg, int waitflag);
void	listenq_accf_destroy(struct socket *so);

#endif
