# listenq: FreeBSD listen queues and accept filters in Rust.
#
#   make            build listenq.ko against SYSDIR (default /usr/src/sys)
#   make test       host tests, then the kernel layer, then the VM layer
#   make load       kldload ./listenq.ko          (FreeBSD, as root)
#   make unload     kldunload listenq             (FreeBSD, as root)
#   make install    listenq.ko to /boot/modules, listenq.4 to the man pages,
#                   listenq.h (struct xlistenq) to PREFIX/include
#   make bench      connections/s through each filter, stock vs listenq (VM)
#   make fuzz       the parsers under cargo-fuzz
#
# Written for both bmake (FreeBSD's make) and GNU make: plain rules only.

SYSDIR?=	/usr/src/sys
LISTENQ_KERNEL?= /var/lib/listenq/kernel
PREFIX?=	/usr/local
KMODDIR?=	/boot/modules
MANDIR?=	$(PREFIX)/share/man/man4
INCLUDEDIR?=	$(PREFIX)/include

all: listenq.ko

listenq.ko: .PHONY
	@SYSDIR="$(SYSDIR)" sh kmod/build-ko.sh || [ $$? -eq 77 ]

test: .PHONY
	@SYSDIR="$(SYSDIR)" LISTENQ_KERNEL="$(LISTENQ_KERNEL)" sh tests/run-all.sh

host-test: .PHONY
	@sh tests/run-all.sh --host-only

load: .PHONY
	kldload ./listenq.ko

unload: .PHONY
	kldunload listenq

install: .PHONY
	install -d $(DESTDIR)$(KMODDIR) $(DESTDIR)$(MANDIR) $(DESTDIR)$(INCLUDEDIR)
	if [ -f listenq.ko ]; then install -m 555 listenq.ko $(DESTDIR)$(KMODDIR)/; fi
	install -m 444 listenq.4 $(DESTDIR)$(MANDIR)/listenq.4
	install -m 444 listenq.h $(DESTDIR)$(INCLUDEDIR)/listenq.h

bench: .PHONY
	@SYSDIR="$(SYSDIR)" LISTENQ_KERNEL="$(LISTENQ_KERNEL)" sh tests/run-all.sh --bench

fuzz: .PHONY
	@sh accf/fuzz/run.sh

clean: .PHONY
	rm -f listenq.ko
	cargo clean

.PHONY:
