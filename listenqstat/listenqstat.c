/*
 * listenqstat(8): the listeners listenq(4) knows, as netstat -Lan lists
 * them plus listenq's counters, once or every -w seconds as rates; text,
 * JSON, XML or HTML through libxo(3), as netstat, sockstat and vmstat.
 *
 * It reads kern.ipc.listenq.xlisteners (struct xlistenq, <listenq.h>), so
 * it sees what that sysctl lets its user see (listenq(4)): in a jail, the
 * jail's listeners.
 */
#include <sys/param.h>
#include <sys/socket.h>
#include <sys/sysctl.h>
#include <sys/un.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <inttypes.h>
#include <jail.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libxo/xo.h>

#include <listenq.h>

#define	LISTENQSTAT_XO_VERSION	"1"
#define	MIB	"kern.ipc.listenq.xlisteners"

/* A row as far as this program knows struct xlistenq. */
struct row {
	struct xlistenq	x;
	size_t		len;		/* bytes of x the module filled */
};

struct table {
	struct row	*rows;
	size_t		n;
};

static int	jid = -1;
static int	port = -1;
static volatile sig_atomic_t stop;

static void
usage(void)
{
	xo_error("usage: listenqstat [--libxo opts] [-j jail] [-p port] "
	    "[-w wait [-c count]]\n");
	xo_finish();
	exit(1);
}

static void
on_signal(int sig __unused)
{
	stop = 1;
}

/*
 * The module's rows, copied into rows of this program's struct xlistenq:
 * a newer module's longer rows are cut, an older one's shorter rows are
 * zero-filled (xl_len says how much is there), and a row of another
 * version is refused, as listenq.h asks.
 */
static void
fetch(struct table *t)
{
	char *buf = NULL;
	size_t len, off;
	uint32_t rlen, ver;
	int tries;

	for (tries = 0;; tries++) {
		if (sysctlbyname(MIB, NULL, &len, NULL, 0) != 0) {
			if (errno == ENOENT)
				xo_errx(1, "%s: not found: listenq(4) is not "
				    "loaded (kldload listenq)", MIB);
			xo_err(1, "%s", MIB);
		}
		/* Room for listeners that come while it is read. */
		len += len / 8 + 4 * sizeof(struct xlistenq);
		free(buf);
		if ((buf = malloc(len)) == NULL)
			xo_err(1, "malloc");
		if (sysctlbyname(MIB, buf, &len, NULL, 0) == 0)
			break;
		if (errno != ENOMEM || tries == 10)
			xo_err(1, "%s", MIB);
	}
	t->n = 0;
	t->rows = NULL;
	for (off = 0; off + 8 <= len; off += rlen) {
		memcpy(&rlen, buf + off, sizeof(rlen));
		memcpy(&ver, buf + off + 4, sizeof(ver));
		if (rlen < offsetof(struct xlistenq, xl_lat) ||
		    rlen > len - off)
			xo_errx(1, "%s: a row of %u bytes: not a struct xlistenq",
			    MIB, rlen);
		if (ver != XLISTENQ_VERSION)
			xo_errx(1, "%s: rows of version %u, this listenqstat "
			    "knows %u: rebuild it against the installed "
			    "listenq.h", MIB, ver, XLISTENQ_VERSION);
		t->rows = reallocarray(t->rows, t->n + 1, sizeof(*t->rows));
		if (t->rows == NULL)
			xo_err(1, "malloc");
		memset(&t->rows[t->n], 0, sizeof(t->rows[t->n]));
		t->rows[t->n].len = MIN(rlen, sizeof(struct xlistenq));
		memcpy(&t->rows[t->n].x, buf + off, t->rows[t->n].len);
		t->n++;
	}
	free(buf);
}

static bool
selected(const struct xlistenq *x)
{
	if (jid >= 0 && x->xl_jid != jid)
		return (false);
	if (port >= 0 && (x->xl_proto == XL_PROTO_STREAM ||
	    x->xl_proto == XL_PROTO_SEQPACKET || x->xl_lport != port))
		return (false);
	return (true);
}

static const char *
proto_name(const struct xlistenq *x)
{
	switch (x->xl_proto) {
	case XL_PROTO_TCP4:
		return ("tcp4");
	case XL_PROTO_TCP6:
		return ("tcp6");
	case XL_PROTO_TCP46:
		return ("tcp46");
	case XL_PROTO_STREAM:
		return ("stream");
	case XL_PROTO_SEQPACKET:
		return ("seqpacket");
	default:
		return ("?");
	}
}

static bool
is_local(const struct xlistenq *x)
{
	return (x->xl_proto == XL_PROTO_STREAM ||
	    x->xl_proto == XL_PROTO_SEQPACKET);
}

/* The address as netstat -Lan writes it: "*.80", "::1.8080", a path. */
static void
local_text(const struct row *r, char *out, size_t size)
{
	const struct xlistenq *x = &r->x;
	char a[INET6_ADDRSTRLEN];
	size_t n;

	if (is_local(x)) {
		/* A module from before xl_path has only xl_laddr. */
		if (r->len >= offsetof(struct xlistenq, xl_path) +
		    sizeof(x->xl_path)) {
			n = strnlen(x->xl_path, sizeof(x->xl_path));
			snprintf(out, size, "%.*s", (int)n, x->xl_path);
			return;
		}
		n = strnlen((const char *)x->xl_laddr, sizeof(x->xl_laddr));
		snprintf(out, size, "%.*s", (int)n, (const char *)x->xl_laddr);
		return;
	}
	if (x->xl_proto == XL_PROTO_TCP4) {
		struct in_addr in;

		memcpy(&in, x->xl_laddr, sizeof(in));
		if (in.s_addr == INADDR_ANY)
			strlcpy(a, "*", sizeof(a));
		else
			inet_ntop(AF_INET, &in, a, sizeof(a));
	} else {
		struct in6_addr in6;

		memcpy(&in6, x->xl_laddr, sizeof(in6));
		if (IN6_IS_ADDR_UNSPECIFIED(&in6))
			strlcpy(a, "*", sizeof(a));
		else
			inet_ntop(AF_INET6, &in6, a, sizeof(a));
	}
	snprintf(out, size, "%s.%u", a, x->xl_lport);
}

/*
 * The accept latency at percentile pct, as the upper bound in
 * microseconds of the bucket it falls in (listenq.h); -1 when nothing
 * was accepted, or when it falls in the open last bucket.
 */
static int64_t
latency_us(const struct xlistenq *x, unsigned pct)
{
	uint64_t total = 0, seen = 0, want;
	int i;

	for (i = 0; i < XLISTENQ_NBUCKETS; i++)
		total += x->xl_lat[i];
	if (total == 0)
		return (-1);
	want = (total * pct + 99) / 100;
	for (i = 0; i < XLISTENQ_NBUCKETS; i++) {
		seen += x->xl_lat[i];
		if (seen >= want)
			return (i + 1 < XLISTENQ_NBUCKETS ?
			    (int64_t)1 << i : -1);
	}
	return (-1);
}

static void
emit_latency(const char *name, int64_t us)
{
	char fmt[64];

	if (us < 0) {
		xo_emit("{d:/%7s}", "-");
		return;
	}
	snprintf(fmt, sizeof(fmt), "{:%s/%%5jd}{U:us}", name);
	xo_emit(fmt, (intmax_t)us);
}

static void
show_once(void)
{
	struct table t;
	char local[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
	char listen[48];
	size_t i;

	fetch(&t);
	xo_open_container("listenq-statistics");
	xo_emit("{T:Proto/%-6s} {T:Listen/%-14s} {T:Local Address/%-22s} "
	    "{T:Filter/%-9s} {T:Held/%6s} {T:Accepted/%10s} "
	    "{T:Overflows/%9s} {T:Evicted/%8s} {T:Lat-p50/%9s} "
	    "{T:Lat-p99/%9s} {T:UID/%5s} {T:JID/%4s}\n");
	xo_open_list("listener");
	for (i = 0; i < t.n; i++) {
		const struct xlistenq *x = &t.rows[i].x;

		if (!selected(x))
			continue;
		local_text(&t.rows[i], local, sizeof(local));
		snprintf(listen, sizeof(listen), "%u/%u/%u", x->xl_qlen,
		    x->xl_incqlen, x->xl_qlimit);
		xo_open_instance("listener");
		xo_emit("{ke:id/%ju}{e:protocol/%s}{d:/%-6s} ",
		    (uintmax_t)x->xl_id, proto_name(x), proto_name(x));
		xo_emit("{e:queue-length/%u}{e:incomplete-queue-length/%u}"
		    "{e:queue-limit/%u}{e:backlog/%d}{d:/%-14s} ",
		    x->xl_qlen, x->xl_incqlen, x->xl_qlimit, x->xl_backlog,
		    listen);
		if (is_local(x))
			xo_emit("{:local-path/%-22s/%s} ", local);
		else
			xo_emit("{e:local-port/%u}{:local-address/%-22s/%s} ",
			    x->xl_lport, local);
		if (x->xl_filter[0] != '\0')
			xo_emit("{:accept-filter/%-9.16s/%.16s} ", x->xl_filter);
		else
			xo_emit("{d:/%-9s} ", "-");
		if (x->xl_filter[0] != '\0' &&
		    (x->xl_flags & XL_F_KFILTER) == 0)
			xo_emit("{:held/%6u} ", x->xl_held);
		else
			xo_emit("{d:/%6s} ", "-");
		xo_emit("{:accepted/%10ju} {:overflows/%9ju} "
		    "{:evicted/%8ju} ", (uintmax_t)x->xl_accepted,
		    (uintmax_t)x->xl_overflows, (uintmax_t)x->xl_evicted);
		emit_latency("accept-latency-p50", latency_us(x, 50));
		xo_emit(" ");
		emit_latency("accept-latency-p99", latency_us(x, 99));
		xo_emit(" {:uid/%5u} {:jail-id/%4d}\n", x->xl_uid, x->xl_jid);
		xo_close_instance("listener");
	}
	xo_close_list("listener");
	xo_close_container("listenq-statistics");
	free(t.rows);
}

static const struct xlistenq *
find(const struct table *t, uint64_t id)
{
	size_t i;

	for (i = 0; i < t->n; i++)
		if (t->rows[i].x.xl_id == id)
			return (&t->rows[i].x);
	return (NULL);
}

/*
 * Every `wait' seconds, the rates over the interval: accepts, overflows
 * and evictions a second, with the queue lengths at its end. A listener
 * that appeared during the interval counts from 0.
 */
static void
watch(unsigned wait, long count)
{
	struct table prev, cur;
	const struct xlistenq *p;
	char local[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
	size_t i;
	long n;

	fetch(&prev);
	xo_open_container("listenq-statistics");
	xo_emit("{e:interval/%u}", wait);
	xo_open_list("sample");
	for (n = 0; (count <= 0 || n < count) && !stop; n++) {
		sleep(wait);
		if (stop)
			break;
		fetch(&cur);
		xo_open_instance("sample");
		xo_emit("{T:Proto/%-6s} {T:Local Address/%-22s} "
		    "{T:Accepts\\/s/%10s} {T:Overflows\\/s/%12s} "
		    "{T:Evictions\\/s/%12s} {T:Qlen/%6s} {T:Held/%6s}\n");
		xo_open_list("listener");
		for (i = 0; i < cur.n; i++) {
			const struct xlistenq *x = &cur.rows[i].x;
			struct xlistenq zero;

			if (!selected(x))
				continue;
			if ((p = find(&prev, x->xl_id)) == NULL) {
				memset(&zero, 0, sizeof(zero));
				p = &zero;
			}
			local_text(&cur.rows[i], local, sizeof(local));
			xo_open_instance("listener");
			xo_emit("{ke:id/%ju}{e:protocol/%s}{d:/%-6s} ",
			    (uintmax_t)x->xl_id, proto_name(x), proto_name(x));
			if (is_local(x))
				xo_emit("{:local-path/%-22s/%s} ", local);
			else
				xo_emit("{e:local-port/%u}"
				    "{:local-address/%-22s/%s} ", x->xl_lport,
				    local);
			xo_emit("{:accepts-per-second/%10.1f} "
			    "{:overflows-per-second/%12.1f} "
			    "{:evictions-per-second/%12.1f} "
			    "{:queue-length/%6u} {:held/%6u}\n",
			    (double)(x->xl_accepted - p->xl_accepted) / wait,
			    (double)(x->xl_overflows - p->xl_overflows) / wait,
			    (double)(x->xl_evicted - p->xl_evicted) / wait,
			    x->xl_qlen, x->xl_held);
			xo_close_instance("listener");
		}
		xo_close_list("listener");
		xo_close_instance("sample");
		xo_flush();
		free(prev.rows);
		prev = cur;
	}
	xo_close_list("sample");
	xo_close_container("listenq-statistics");
	free(prev.rows);
}

int
main(int argc, char **argv)
{
	char *end;
	long count = 0, w = 0, v;
	int ch;

	argc = xo_parse_args(argc, argv);
	if (argc < 0)
		return (1);
	xo_set_version(LISTENQSTAT_XO_VERSION);
	while ((ch = getopt(argc, argv, "c:j:p:w:")) != -1) {
		switch (ch) {
		case 'c':
			count = strtol(optarg, &end, 10);
			if (*end != '\0' || count <= 0)
				xo_errx(1, "-c %s: not a count", optarg);
			break;
		case 'j':
			/* A jail id or name, as jexec(8) and ps -J take. */
			v = strtol(optarg, &end, 10);
			if (*end == '\0' && v >= 0 && v <= INT_MAX)
				jid = (int)v;
			else if ((jid = jail_getid(optarg)) < 0)
				xo_errx(1, "-j %s: %s", optarg, jail_errmsg);
			break;
		case 'p':
			v = strtol(optarg, &end, 10);
			if (*end != '\0' || v < 0 || v > 65535)
				xo_errx(1, "-p %s: not a port", optarg);
			port = (int)v;
			break;
		case 'w':
			w = strtol(optarg, &end, 10);
			if (*end != '\0' || w <= 0 || w > 86400)
				xo_errx(1, "-w %s: not a number of seconds",
				    optarg);
			break;
		default:
			usage();
		}
	}
	if (optind != argc || (count != 0 && w == 0))
		usage();
	if (w != 0) {
		signal(SIGINT, on_signal);
		signal(SIGTERM, on_signal);
		watch((unsigned)w, count);
	} else
		show_once();
	if (xo_finish() < 0)
		xo_err(1, "stdout");
	return (0);
}
