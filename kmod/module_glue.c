/*
 * listenq C glue: the module itself (DECLARE_MODULE, its malloc type) and
 * the kernel services the Rust half uses everywhere: printf(9), panic(9),
 * malloc(9), mtx(9), time. See module_glue.h.
 */
#include <sys/param.h>
#include <sys/systm.h>
#include <sys/limits.h>
#include <sys/pcpu.h>
#include <sys/kernel.h>
#include <sys/malloc.h>
#include <sys/module.h>
#include <sys/lock.h>
#include <sys/mutex.h>
#include <sys/fail.h>
#include <sys/time.h>
#include <sys/proc.h>
#include <sys/ucred.h>
#include <sys/jail.h>
#include <sys/syslog.h>
#include <machine/stdarg.h>

#include "module_glue.h"

MALLOC_DEFINE(M_LISTENQ, "listenq", "listenq listen queues and accept filters");

/*
 * Anchors ld -r: kmod/build-ko.sh pulls this object out of the Rust
 * staticlib by this name. A function, not a string: a string could be
 * merged with a module name in mod_metadata, and link_elf_obj reads module
 * metadata before it resolves relocations against global symbols.
 */
void
listenq_glue_anchor(void)
{
}

void
lq_log(const char *msg, size_t len)
{
	printf("listenq: %.*s\n", (int)len, msg);
}

void
lq_panic(const char *msg, size_t len)
{
	panic("listenq: %.*s", (int)len, msg);
}

void *
lq_malloc(size_t size, size_t align)
{
	/*
	 * Every allocation Rust makes (upcalls, hooks, the tick) comes here,
	 * so debug.fail_point.listenq_malloc fails any of them (fail(9)).
	 */
	KFAIL_POINT_CODE_FLAGS(DEBUG_FP, listenq_malloc,
	    FAIL_POINT_NONSLEEPABLE, return (NULL));
	/*
	 * malloc(9) aligns power-of-2 sizes to their size and everything to at
	 * least 16 bytes; only larger alignments need malloc_aligned(9).
	 */
	if (align <= 16)
		return (malloc(size, M_LISTENQ, M_NOWAIT));
	if (align > PAGE_SIZE)
		return (NULL);
	return (malloc_aligned(size, align, M_LISTENQ, M_NOWAIT));
}

/*
 * debug.fail_point.listenq_ring_full: while it fires, new connections skip
 * the child index's lock-free ring (kmod/src/kern/pending.rs) for its
 * shards, whose tables need memory, as when their ring slot is taken. The
 * tick reads it (every 100 ms), not each connection, so that the
 * connection path does not leave Rust for it.
 */
int
lq_fail_ring_full(void)
{
	KFAIL_POINT_CODE_FLAGS(DEBUG_FP, listenq_ring_full,
	    FAIL_POINT_NONSLEEPABLE, return (1));
	return (0);
}

void
lq_free(void *p)
{
	free(p, M_LISTENQ);
}

void
lq_mtx_init(struct mtx *m, const char *name)
{
	mtx_init(m, name, NULL, MTX_DEF);
}

void
lq_mtx_destroy(struct mtx *m)
{
	mtx_destroy(m);
}

uint64_t
lq_uptime_us(void)
{
	struct bintime bt;
	struct timeval tv;

	getbinuptime(&bt);
	bintime2timeval(&bt, &tv);
	return ((uint64_t)tv.tv_sec * 1000000 + tv.tv_usec);
}

void
lq_pause_ms(int ms)
{
	pause("lqdrain", MAX(1, (int)MIN((int64_t)ms * hz / 1000, INT_MAX)));
}

/*
 * The module reads struct socket, struct sockbuf and struct protosw at the
 * offsets of the tree it was built against (SYSDIR), and those change
 * within a branch: a newer 14 adds so_splice fields before so_snd_sx.
 * DECLARE_MODULE's dependency on the kernel accepts any later 14.x, and
 * DECLARE_MODULE_TIED would refuse with the linker's generic "version
 * mismatch", which does not say what to do. So MOD_LOAD compares the
 * kernel's osreldate with the __FreeBSD_version the module was built
 * with, before anything reads a kernel structure, and refuses (ENOEXEC,
 * kldload's "Exec format error") with a line that says so.
 */
const int lq_built_osreldate = __FreeBSD_version;
static bool lq_refused;

static int
lq_check_kernel(void)
{
	if (osreldate == lq_built_osreldate)
		return (0);
	printf("listenq: built for FreeBSD %d but the kernel is %d: "
	    "rebuild listenq.ko against this kernel's sources "
	    "(make SYSDIR=...), for example after freebsd-update\n",
	    lq_built_osreldate, osreldate);
	return (ENOEXEC);
}

static int
listenq_modevent(module_t mod __unused, int what, void *arg __unused)
{
	int error;

	switch (what) {
	case MOD_LOAD:
		error = lq_check_kernel();
		lq_refused = error != 0;
		return (error != 0 ? error : listenq_rs_load());
	case MOD_QUIESCE:
		return (lq_refused ? 0 : listenq_rs_quiesce());
	case MOD_UNLOAD:
		/* The kernel unloads a module whose MOD_LOAD failed. */
		return (lq_refused ? 0 : listenq_rs_unload());
	case MOD_SHUTDOWN:
		return (0);
	default:
		return (EOPNOTSUPP);
	}
}

static moduledata_t listenq_mod = {
	"listenq",
	listenq_modevent,
	NULL
};
DECLARE_MODULE(listenq, listenq_mod, SI_SUB_PROTO_END, SI_ORDER_ANY);
MODULE_VERSION(listenq, 1);

/*
 * Messages about what a user or a peer did (a bad af_arg, a refused
 * default) go through log(9), at the priority the admin sets here, as
 * kern.ipc.sooverprio does for the kernel's own "sonewconn:" overflow
 * line, which listenq leaves alone. The knob's OID is added with the
 * module's others (sysctl_glue.c), which range-checks it.
 */
int lq_logprio = LOG_INFO;

/*
 * log(9) by way of vlog(): a call to log() itself from this file binds,
 * when the module is linked, to the `log' of the Rust staticlib's
 * compiler-builtins (the natural logarithm), which shadows the kernel's
 * within the module, and the message is lost (tests/check-ko.sh now
 * refuses such a shadow).
 */
static void
lq_vlog(int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(level, fmt, ap);
	va_end(ap);
}

void
lq_log_event(const char *msg, size_t len)
{
	int pri;

	pri = atomic_load_int(&lq_logprio);
	if (pri >= 0)
		lq_vlog(LOG_PRI(pri), "listenq: %.*s\n", (int)len, msg);
}

void
lq_caller(struct lq_caller *out)
{
	struct thread *td = curthread;

	out->pid = td->td_proc->p_pid;
	out->uid = td->td_ucred->cr_uid;
	out->jid = td->td_ucred->cr_prison->pr_id;
}

/* Console lines an unprivileged user can cause: at most a few a second. */
int
lq_log_ratecheck(void)
{
	static struct timeval last;
	static int count;

	return (ppsratecheck(&last, &count, 5));
}

/*
 * All listeners' log lines together (each listener has its own, smaller
 * limit, kmod/src/listeners.rs): at most 20 a second.
 */
int
lq_log_ratecheck_all(void)
{
	static struct timeval last;
	static int count;

	return (ppsratecheck(&last, &count, 20));
}
