#!/bin/sh
# Where listenq's instructions go, per connection and function.
#
#   sh tests/vm/profile.sh ROW [KERNEL]      (make profile ROW=none)
#
# ROW is a row of the bench's filter comparisons (none, dataready,
# httpready, dnsready) or of its requests in pieces (http-slow,
# http-large, dns-2seg, tls-2seg). KERNEL defaults to LISTENQ_KERNEL; a production
# kernel (LISTENQ_BENCH_KERNEL) shows what a server pays. Two boots of the
# bench's setup (QEMU -icount, LISTENQ_BENCH=quick): one measuring only
# the other side (the plain kernel or the stock module,
# listenq.bench_side=stock), one only listenq; QEMU runs
# tests/vm/prof/insnprof.c, a TCG plugin counting executed instructions
# per translation block. The difference, per timed connection, is printed
# by function (kernel and listenq.ko symbols). Guest time counts
# instructions, so this is what the bench's ratios are made of.
#
# Needs a C compiler, nm, python3 and a QEMU with TCG plugin support
# (Debian's has it); Linux hosts only.
set -eu
die() { echo "profile: $*" >&2; exit 1; }
row=${1:-}
[ -n "$row" ] || die "usage: sh tests/vm/profile.sh ROW [KERNEL] (ROW: none, dataready, httpready, dnsready, http-slow, http-large, dns-2seg, tls-2seg)"
kernel=${2:-${LISTENQ_KERNEL:-/var/lib/listenq/kernel}}
[ -f "$kernel" ] || die "no kernel at $kernel"
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
cc=${CC:-cc}
command -v "$cc" >/dev/null 2>&1 || die "no C compiler ($cc) for the QEMU plugin"
command -v python3 >/dev/null 2>&1 || die "python3 is needed to symbolize"
work=$(mktemp -d "${TMPDIR:-/tmp}/listenq-prof.XXXXXX")
"$cc" -O2 -shared -fPIC -o "$work/insnprof.so" tests/vm/prof/insnprof.c ||
    die "cannot build the plugin"
cat >"$work/qemu" <<EOQ
#!/bin/sh
exec ${LISTENQ_QEMU:-qemu-system-x86_64} -plugin $work/insnprof.so,out=\$PROF_OUT "\$@"
EOQ
chmod +x "$work/qemu"
for side in stock listenq; do
    echo "profile: $row, $side side only (one boot, a few minutes)"
    LISTENQ_QEMU="$work/qemu" PROF_OUT="$work/$side.txt" LISTENQ_BENCH=quick \
        LISTENQ_VM_KENV="listenq.bench_only=$row,listenq.bench_side=$side" \
        LISTENQ_KERNEL="$kernel" LISTENQ_BENCH_KERNEL=none \
        sh tests/run-all.sh --bench >"$work/$side.log" 2>&1 ||
        die "the $side boot failed: $work/$side.log"
    [ -s "$work/$side.txt" ] || die "QEMU wrote no profile (no plugin support?): $work/$side.log"
done
addr=$(sed -n 's/^# bench .* listenq: listenq.ko at \(0x[0-9a-f]*\) .*/\1/p' "$work/listenq.log" | head -n1)
conns=$(sed -n 's/^# bench .* listenq: \([0-9]*\) timed connections$/\1/p' "$work/listenq.log" |
    awk '{ n += $1 } END { print n + 0 }')
[ -n "$addr" ] && [ "$conns" -gt 0 ] || die "no module address or connection count in $work/listenq.log"
echo "profile: $row on $kernel, $conns timed connections a side; listenq.ko at $addr"
python3 tests/vm/prof/symbolize.py "$kernel" listenq.ko "$addr" "$conns" \
    "$work/stock.txt" "$work/listenq.txt" "${LISTENQ_PROF_TOP:-30}"
echo "profile: raw files in $work"
