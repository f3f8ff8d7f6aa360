#!/usr/bin/env bash
# Builds listenq(4)'s EXAMPLES program (the xlisteners reader) as a user
# of a FreeBSD system would: against that system's headers and libc
# (ROOT: an installed world) and the installed listenq.h
# (ROOT/usr/local/include). On Linux, clang cross-compiles with ROOT as
# the sysroot.
#
#   tests/vm/build-example.sh listenq.4 ROOT OUT
set -euo pipefail
man=$1 root=$2 out=$3
src=$(mktemp --suffix=.c)
trap 'rm -f "$src"' EXIT
# The second literal display of EXAMPLES, unescaped from mdoc (\e is \).
awk '/^\.Sh EXAMPLES/ { ex = 1 } /^\.Sh / && !/EXAMPLES/ { ex = 0 }
     ex && /^\.Bd -literal/ { n++; if (n == 2) { on = 1; next } }
     on && /^\.Ed/ { on = 0 }
     on { print }' "$man" | sed 's/\\e/\\/g' >"$src"
grep -q 'xlisteners' "$src" || { echo "build-example: no program in $man's EXAMPLES" >&2; exit 1; }
if [ "$(uname -s)" = FreeBSD ] && [ "$root" = / ]; then
    cc -O2 -Wall -Werror -I/usr/local/include -o "$out" "$src"
else
    clang --target=x86_64-unknown-freebsd14.0 --sysroot="$root" -fuse-ld=lld \
        -O2 -Wall -Werror -I"$root/usr/local/include" -o "$out" "$src"
fi
