/*
 * The C side of listenq: what Rust cannot express (DECLARE_MODULE, SYSCTL,
 * MALLOC_DEFINE) and small functions standing in for kernel macros and
 * inline functions. One concern per file:
 *
 *	module_glue.c	the module, malloc(9), printf(9) and its rate limit,
 *			mtx(9), time
 *	sysctl_glue.c	the kern.ipc.listenq tree and SYSCTL_OUT
 *	socket_glue.c	socket accessors, references, the listen upcall
 *	soqueue_glue.c	moves between a listener's queues
 *	accf_glue.c	accept filter names: registration, burial for unload
 *	tag_glue.c	a held connection's tag and upcall, filter removal
 *	sockbuf_glue.c	a held connection's receive buffer
 *	work_glue.c	deferred work on held connections, the timeout clock
 *			and its knobs
 *	defaults_glue.c	per-filter default af_arg
 *	inherit_glue.c	accept filters on a kernel whose connections do not
 *			inherit SO_ACCEPTFILTER: the probe and the rescue
 *	sdt_glue.c	the listenq DTrace provider
 *
 * Every lq_* function is a thin translation; policy lives in Rust.
 */
#ifndef LISTENQ_GLUE_H
#define LISTENQ_GLUE_H

#include "module_glue.h"
#include "socket_glue.h"
#include "sysctl_glue.h"

#endif
