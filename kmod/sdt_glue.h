/*
 * The listenq DTrace provider (listenq(4) "DTRACE PROBES"): listenq:::hold,
 * release, evict, timeout and overflow. Each function fires its probe when
 * DTrace has enabled it and costs a load and a branch otherwise.
 */
#ifndef LISTENQ_SDT_GLUE_H
#define LISTENQ_SDT_GLUE_H

#include <sys/types.h>

/* The probes about one held connection: listener, connection, a word. */
enum lq_sdt_conn {
	LQ_SDT_HOLD,		/* the filter's name */
	LQ_SDT_RELEASE,		/* why: ready, eof, full */
	LQ_SDT_EVICT,		/* which rule: oldest, fair */
	LQ_SDT_TIMEOUT,		/* what then: deliver, drop */
};
void	lq_sdt_conn(enum lq_sdt_conn which, uintptr_t head, uintptr_t so,
	    const char *what);
void	lq_sdt_overflow(uintptr_t head, uint64_t count);

#endif
