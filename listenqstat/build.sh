#!/bin/sh
# Builds listenqstat(8) against a FreeBSD userland ROOT (an installed world:
# its headers, libc, libxo and libjail) and listenq.h from this tree. On
# FreeBSD with ROOT=/ this is what listenqstat/Makefile (bsd.prog.mk) does;
# on Linux clang cross-compiles with ROOT as the sysroot.
#
#   sh listenqstat/build.sh ROOT OUT
set -eu
root=$1 out=$2
here=$(cd "$(dirname "$0")" && pwd)
for f in usr/include/libxo/xo.h usr/include/jail.h; do
	[ -f "$root/$f" ] || { echo "listenqstat: $root is not a FreeBSD userland with libxo and libjail (no $f)" >&2; exit 1; }
done
if [ "$(uname -s)" = FreeBSD ] && [ "$root" = / ]; then
	cc -O2 -Wall -Werror -I"$here/.." -o "$out" "$here/listenqstat.c" -lxo -ljail
else
	clang --target=x86_64-unknown-freebsd14.0 --sysroot="$root" -fuse-ld=lld \
	    -O2 -Wall -Werror -I"$here/.." -o "$out" "$here/listenqstat.c" -lxo -ljail
fi
