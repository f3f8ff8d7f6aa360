/*
 * listenq.h: the public interface of listenq(4).
 *
 * sysctl kern.ipc.listenq.xlisteners returns an array of struct xlistenq,
 * one per listener the reader may see (the rules of netstat(1) and
 * sockstat(1)). Check xl_len and xl_version before using a row: a newer
 * module may append fields (xl_len grows), add xl_proto values (skip a
 * row whose xl_proto you do not know) or change the layout (xl_version
 * changes). Installed as /usr/local/include/listenq.h.
 */
#ifndef _LISTENQ_H_
#define	_LISTENQ_H_

#include <stdint.h>

#define	XLISTENQ_VERSION	2
#define	XLISTENQ_NBUCKETS	28

/* xl_proto: the names netstat(1) gives, from the pcb's IP versions */
#define	XL_PROTO_TCP4		1	/* IPv4 only (AF_INET, or AF_INET6
					   bound to a v4-mapped address) */
#define	XL_PROTO_TCP6		2	/* IPv6 only (IPV6_V6ONLY, or bound
					   to an IPv6 address) */
#define	XL_PROTO_STREAM		3	/* local (AF_UNIX) SOCK_STREAM */
#define	XL_PROTO_SEQPACKET	4	/* local (AF_UNIX) SOCK_SEQPACKET */
#define	XL_PROTO_TCP46		5	/* AF_INET6 taking IPv4 too (no
					   IPV6_V6ONLY); appended */

/* xl_flags */
#define	XL_F_KFILTER		0x01	/* filter run by another module */

/* xl_evflags */
#define	XL_EV_FAIR		0x01	/* evict=fair: shared between sources */

struct xlistenq {
	uint32_t	xl_len;		/* sizeof(struct xlistenq) */
	uint32_t	xl_version;	/* XLISTENQ_VERSION */
	uint64_t	xl_gen;		/* table generation when read */
	uint64_t	xl_id;		/* listenq's id for the listener */
	uint8_t		xl_proto;	/* XL_PROTO_* */
	uint8_t		xl_flags;	/* XL_F_* */
	uint16_t	xl_lport;	/* local port, host byte order */
	int32_t		xl_backlog;	/* backlog given to listen(2) */
	/*
	 * in_addr (tcp4), in6_addr (tcp6, tcp46), or a local socket's path
	 * cut to its first 64 bytes (no NUL when 64 bytes or longer): use
	 * xl_path, which has all of it, when xl_len covers it.
	 */
	uint8_t		xl_laddr[64];
	uint32_t	xl_qlimit;	/* effective limit (sol_qlimit) */
	uint32_t	xl_qlen;	/* completed queue length */
	uint32_t	xl_incqlen;	/* incomplete queue length */
	uint32_t	xl_held;	/* held by a listenq accept filter */
	uint64_t	xl_accepted;	/* connections accept(2) returned */
	uint64_t	xl_overflows;	/* refused: completed queue full */
	uint64_t	xl_evicted;	/* held connections evicted/dropped */
	char		xl_filter[16];	/* accept filter name, or "" */
	uint32_t	xl_uid;		/* owner's user id (so_cred) */
	int32_t		xl_jid;		/* owner's jail id, 0 for the host */
	/*
	 * Accept latency (connection completed to accept(2)) in microseconds,
	 * measured in whole clock ticks: every latency is a multiple of
	 * 1000000 / kern.hz us. Bucket 0 counts accepts within the tick the
	 * connection completed in (up to one tick later, not < 1 us), bucket
	 * i (i >= 1) latencies in [2^(i-1), 2^i) us; the last bucket is open.
	 * At hz=1000 one tick is bucket 10, and buckets 1 to 9 stay 0.
	 */
	uint64_t	xl_lat[XLISTENQ_NBUCKETS];
	/* Appended (check xl_len): the fair eviction policy (listenq(4)). */
	uint32_t	xl_sources;	/* sources holding a connection */
	uint32_t	xl_evflags;	/* XL_EV_* */
	uint64_t	xl_evicted_fair;	/* of xl_evicted: largest source's oldest */
	uint64_t	xl_evicted_cap;	/* of xl_evicted: a source's cap (persource) */
	/*
	 * Appended (check xl_len): a local socket's whole path, up to
	 * sizeof(sun_path) (104) bytes, NUL-padded, no NUL when 104 bytes
	 * long (print it with "%.*s", (int)sizeof(xl_path)); all NUL for TCP.
	 */
	char		xl_path[104];
};

#endif /* !_LISTENQ_H_ */
