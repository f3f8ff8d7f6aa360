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

void
lq_sdt_hold(uintptr_t head, uintptr_t so, const char *filter)
{
	lq_sdt_fire(sdt_listenq___hold, head, so, (uintptr_t)filter);
}

void
lq_sdt_release(uintptr_t head, uintptr_t so, const char *reason)
{
	lq_sdt_fire(sdt_listenq___release, head, so, (uintptr_t)reason);
}

void
lq_sdt_evict(uintptr_t head, uintptr_t so, const char *reason)
{
	lq_sdt_fire(sdt_listenq___evict, head, so, (uintptr_t)reason);
}

void
lq_sdt_timeout(uintptr_t head, uintptr_t so, const char *action)
{
	lq_sdt_fire(sdt_listenq___timeout, head, so, (uintptr_t)action);
}

void
lq_sdt_overflow(uintptr_t head, uint64_t count)
{
	lq_sdt_fire(sdt_listenq___overflow, head, (uintptr_t)count, 0);
}
