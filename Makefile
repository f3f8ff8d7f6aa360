# listenq: FreeBSD listen queues and accept filters in Rust.
#
# FreeBSD's make (bmake) reads this file: listenq.ko is built through
# bsd.kmod.mk like any module, so install, kldxref, the split debug file,
# the build-id and EXPORT_SYMS symbol localisation are kmod.mk's own. The C
# glue is SRCS; the Rust staticlib's objects (the crate and
# compiler_builtins, joined into one) are OBJS. GNU make reads GNUmakefile,
# the cross-build for Linux hosts, which produces the same files.
#
#   make            listenq.ko and listenq.ko.debug against SYSDIR
#   make install    /boot/modules/listenq.ko, /usr/lib/debug/boot/modules/
#                   listenq.ko.debug, kldxref, PREFIX/share/man/man4
#   make load | unload | reload
#   make test       host tests, then the kernel layer, then the VM layer
#                   (2 vCPUs; LISTENQ_VM_CPUS=1 for one)
#   make bench | profile | fuzz | fuzz-vm DURATION=600

LISTENQ_KERNEL?=	/var/lib/listenq/kernel
LISTENQ_VM_CPUS?=	2

.if make(test) || make(host-test) || make(bench) || make(profile) || make(fuzz) || \
    make(fuzz-vm)
# The test layers find out for themselves what they can run (a missing
# SYSDIR skips the kernel layer), so these do not need bsd.kmod.mk.
.else
SYSDIR?=	/usr/src/sys
.if !exists(${SYSDIR}/sys/socketvar.h) || !exists(${SYSDIR}/conf/kmod.mk)
.error cannot build listenq.ko: no FreeBSD kernel source at SYSDIR=${SYSDIR} (set SYSDIR to the sys/ directory of a FreeBSD source tree)
.endif

KMOD=		listenq
SRCS=		module_glue.c sysctl_glue.c socket_glue.c accf_glue.c \
		tag_glue.c sockbuf_glue.c work_glue.c deliver_glue.c defaults_glue.c \
		inherit_glue.c sdt_glue.c soqueue_glue.c
OBJS+=		listenq_rs.o
.PATH:		${.CURDIR}/kmod

# A third-party module's places (ports, hier(7)).
KMODDIR?=	/boot/modules
PREFIX?=	/usr/local
LISTENQ_MANDIR?=	${PREFIX}/share/man/man4
LISTENQ_INCDIR?=	${PREFIX}/include
# kmod.mk splits the debug info off (listenq.ko.debug) only with DEBUG_FLAGS.
DEBUG_FLAGS?=	-g

LISTENQ_VERSION!=	sed -n 's/^version = "\(.*\)"$$/\1/p' ${.CURDIR}/Cargo.toml | head -n 1
CFLAGS+=	-DLISTENQ_VERSION='"listenq ${LISTENQ_VERSION}"'

CLEANFILES+=	listenq_rs.o listenq.4.gz

# cargo decides what to rebuild; kmod.mk relinks listenq.ko every time.
listenq_rs.o: .PHONY
	@SYSDIR=${SYSDIR} sh ${.CURDIR}/kmod/build-ko.sh --rust-objects ${.OBJDIR}/${.TARGET}

listenq.4.gz: listenq.4
	gzip -cn ${.ALLSRC} > ${.TARGET}

afterinstall: _listenq_maninstall
_listenq_maninstall: listenq.4.gz .PHONY
	${INSTALL} -d ${DESTDIR}${LISTENQ_MANDIR}
	${INSTALL} -m 444 listenq.4.gz ${DESTDIR}${LISTENQ_MANDIR}/
	${INSTALL} -d ${DESTDIR}${LISTENQ_INCDIR}
	${INSTALL} -m 444 ${.CURDIR}/listenq.h ${DESTDIR}${LISTENQ_INCDIR}/

# listenqstat(8), built and installed with the module (listenqstat/Makefile).
all: _listenqstat
_listenqstat: .PHONY
	@cd ${.CURDIR}/listenqstat && ${MAKE} all
afterinstall: _listenqstat_install
_listenqstat_install: .PHONY
	@cd ${.CURDIR}/listenqstat && ${MAKE} install
afterclean: _listenqstat_clean
_listenqstat_clean: .PHONY
	@cd ${.CURDIR}/listenqstat && ${MAKE} clean

.include <bsd.kmod.mk>
.endif

test: .PHONY
	@cd ${.CURDIR} && SYSDIR=${SYSDIR:U/usr/src/sys} LISTENQ_KERNEL=${LISTENQ_KERNEL} \
	    LISTENQ_VM_CPUS=${LISTENQ_VM_CPUS} sh tests/run-all.sh

host-test: .PHONY
	@cd ${.CURDIR} && sh tests/run-all.sh --host-only

bench: .PHONY
	@cd ${.CURDIR} && SYSDIR=${SYSDIR:U/usr/src/sys} LISTENQ_KERNEL=${LISTENQ_KERNEL} sh tests/run-all.sh --bench

profile: .PHONY
	@cd ${.CURDIR} && SYSDIR=${SYSDIR:U/usr/src/sys} LISTENQ_KERNEL=${LISTENQ_KERNEL} sh tests/vm/profile.sh ${ROW:Unone} ${KERNEL}

fuzz: .PHONY
	@cd ${.CURDIR} && sh accf/fuzz/run.sh

# The syscall fuzzer in the VM for DURATION seconds (RELIABILITY.md); it
# boots the listenq.ko built by `make`.
fuzz-vm: .PHONY
	@cd ${.CURDIR} && LISTENQ_VM_KENV="listenq.fuzz=campaign:${DURATION:U600}:${FIRST_SEED:U1}" \
	    bash tests/vm/run-vm.sh --kernel ${LISTENQ_KERNEL} --ko listenq.ko \
	    --timeout $$(( ${DURATION:U600} + 600 ))
