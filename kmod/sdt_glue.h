/*
 * The listenq DTrace provider (listenq(4) "DTRACE PROBES"): listenq:::hold,
 * release, evict, timeout and overflow. Each function fires its probe when
 * DTrace has enabled it and costs a load and a branch otherwise.
 */
#ifndef LISTENQ_SDT_GLUE_H
#define LISTENQ_SDT_GLUE_H

#include <sys/types.h>

void	lq_sdt_hold(uintptr_t head, uintptr_t so, const char *filter);
void	lq_sdt_release(uintptr_t head, uintptr_t so, const char *reason);
void	lq_sdt_evict(uintptr_t head, uintptr_t so, const char *reason);
void	lq_sdt_timeout(uintptr_t head, uintptr_t so, const char *action);
void	lq_sdt_overflow(uintptr_t head, uint64_t count);

#endif
