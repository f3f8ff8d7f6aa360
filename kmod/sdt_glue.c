/*
 * listenq's DTrace provider. See sdt_glue.h.
 *
 * The same .ko loads into kernels with and without KDTRACE_HOOKS (every
 * kernel of the test matrix has it, a custom one need not). A module built
 * outside a kernel build has no KDTRACE_HOOKS, so sys/sdt.h would make the
 * probes nothing; defined here, in this file only, it gives the probe
 * descriptions (data in the sdt_*_set linker sets, which sdt(4) finds in
 * every loaded file, whenever either is loaded). The two symbols that fire
 * a probe exist only with KDTRACE_HOOKS, so they are weak: the kernel
 * linker (link_elf_obj.c) resolves an absent weak symbol to 0, and they are
 * reached only through pointers in data (absolute relocations), never by a
 * PC-relative access, which 0 would put out of range.
 */
#ifndef KDTRACE_HOOKS
#define	KDTRACE_HOOKS	1
#endif
#include <sys/param.h>
#include <sys/systm.h>
#include <sys/sdt.h>

#include "sdt_glue.h"

#pragma weak sdt_probes_enabled
#pragma weak sdt_probe_func

static volatile bool *volatile lq_sdt_enabled = &sdt_probes_enabled;
static sdt_probe_func_t *volatile lq_sdt_func = &sdt_probe_func;

SDT_PROVIDER_DEFINE(listenq);
SDT_PROBE_DEFINE3(listenq, , , hold, "struct socket *", "struct socket *",
    "char *");
SDT_PROBE_DEFINE3(listenq, , , release, "struct socket *", "struct socket *",
    "char *");
SDT_PROBE_DEFINE3(listenq, , , evict, "struct socket *", "struct socket *",
    "char *");
SDT_PROBE_DEFINE3(listenq, , , timeout, "struct socket *", "struct socket *",
    "char *");
SDT_PROBE_DEFINE2(listenq, , , overflow, "struct socket *", "uint64_t");

static inline void
lq_sdt_fire(struct sdt_probe *p, uintptr_t a0, uintptr_t a1, uintptr_t a2)
{
	volatile bool *enabled = lq_sdt_enabled;
	sdt_probe_func_t *func = lq_sdt_func;

	if (__predict_true(enabled == NULL || !*enabled))
		return;
	if (p->id != 0 && func != NULL)
		(*func)(p->id, a0, a1, a2, 0, 0);
}

/* listenq:::hold, release, evict and timeout, by enum lq_sdt_conn. */
static struct sdt_probe *const lq_sdt_conn_probes[] = {
	[LQ_SDT_HOLD] = sdt_listenq___hold,
	[LQ_SDT_RELEASE] = sdt_listenq___release,
	[LQ_SDT_EVICT] = sdt_listenq___evict,
	[LQ_SDT_TIMEOUT] = sdt_listenq___timeout,
};

void
lq_sdt_conn(enum lq_sdt_conn which, uintptr_t head, uintptr_t so,
    const char *what)
{
	if ((u_int)which < nitems(lq_sdt_conn_probes))
		lq_sdt_fire(lq_sdt_conn_probes[which], head, so,
		    (uintptr_t)what);
}

void
lq_sdt_overflow(uintptr_t head, uint64_t count)
{
	lq_sdt_fire(sdt_listenq___overflow, head, (uintptr_t)count, 0);
}
