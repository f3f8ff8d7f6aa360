#!/usr/bin/env python3
"""Instructions per connection and function: listenq's side minus the other.

symbolize.py KERNEL KO KO_ADDR CONNS OTHER.txt LISTENQ.txt [N]

KERNEL and KO are the ELF files whose symbols name the blocks (listenq.ko
is a relocatable object whose .text the kernel linker puts first, at
KO_ADDR, which the bench prints); CONNS is the number of timed connections
on each side; the two files are insnprof.c's. Prints the N functions whose
counts differ most, and the total.
"""
import bisect
import collections
import subprocess
import sys


def symbols(path, base):
    out = subprocess.run(["nm", "-n", "--defined-only", path],
                         capture_output=True, text=True, check=True).stdout
    syms = []
    for line in out.splitlines():
        f = line.split()
        if len(f) == 3 and f[1] in "tTwW":
            syms.append((int(f[0], 16) + base, f[2]))
    return syms


def main():
    kernel, ko, ko_addr, conns, other, lq = sys.argv[1:7]
    top = int(sys.argv[7]) if len(sys.argv) > 7 else 30
    syms = sorted(symbols(kernel, 0) + symbols(ko, int(ko_addr, 16)))
    addrs = [a for a, _ in syms]

    def name(va):
        if va < 0xffff800000000000:
            return "(user)"
        i = bisect.bisect_right(addrs, va) - 1
        return syms[i][1] if i >= 0 else "(kernel)"

    def load(path):
        c = collections.Counter()
        with open(path) as f:
            for line in f:
                va, n, count = line.split()
                c[name(int(va, 16))] += int(n) * int(count)
        return c

    a, b = load(other), load(lq)
    n = int(conns)
    diff = {k: b[k] - a[k] for k in set(a) | set(b)}
    print("%10s  %10s  %s" % ("listenq-other", "other", "function (instructions per connection)"))
    for k, v in sorted(diff.items(), key=lambda kv: -abs(kv[1]))[:top]:
        print("%10.1f  %10.1f  %s" % (v / n, a[k] / n, k))
    print("%10.1f  %10.1f  %s" % ((sum(b.values()) - sum(a.values())) / n,
                                   sum(a.values()) / n, "(whole boot)"))


main()
