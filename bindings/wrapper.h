/*
 * What bindgen sees: the kernel headers listenq uses, compiled exactly like a
 * kernel module (see build.rs), plus the C glue's own declarations.
 */
#include <sys/param.h>
#include <sys/systm.h>
#include <sys/kernel.h>
#include <sys/malloc.h>
#include <sys/module.h>
#include <sys/lock.h>
#include <sys/mutex.h>
#include <sys/socket.h>
#include <sys/socketvar.h>
#include <sys/protosw.h>
#include <sys/domain.h>
#include <sys/sysctl.h>
#include <netinet/in.h>

#include "../kmod/glue.h"
#include "../kmod/accf_glue.h"
#include "../kmod/tag_glue.h"
#include "../kmod/sockbuf_glue.h"
#include "../kmod/work_glue.h"
#include "../kmod/deliver_glue.h"
#include "../kmod/defaults_glue.h"
#include "../kmod/inherit_glue.h"
#include "../kmod/sdt_glue.h"
#include "../kmod/offsets_glue.h"
