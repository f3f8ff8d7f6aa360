#!/usr/bin/env bash
# Finds kernel trouble in a FreeBSD console log: panics, fatal traps, and
# every WITNESS or INVARIANTS complaint the kernel prints without
# panicking. Prints one "LINE: text" per offending console line (at most
# 20) and exits 1 if there is any, 0 if the log is clean, 2 on misuse.
#
#   tests/vm/console-check.sh CONSOLE_LOG
#
# The patterns are the kernel's own format strings (FreeBSD 14, file named
# on each); tests/vm/console-check-test.sh feeds them real console text so
# that a pattern that no longer matches is noticed.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -u

patterns=(
    # kern_shutdown.c vpanic(): "panic: %s" (every KASSERT and every
    # kassert_panic() of WITNESS ends here); the runner's own
    # "Bail out! panic: ..." too.
    'panic: '
    # amd64/amd64/trap.c trap_fatal(): "Fatal trap %d: %s while in %s mode"
    'Fatal trap [0-9]+'
    # kern_shutdown.c kassert_panic() with debug.kassert.warn_only=1
    'KASSERT failed'
    # subr_witness.c witness_checkorder(): "lock order reversal:" and its
    # "(sleepable after non-sleepable)" / "(Giant after non-sleepable)" forms
    'lock order reversal'
    # ... and the abbreviation people (and some kernel messages) use
    '(^|[^[:alnum:]_])LOR([^[:alnum:]_]|$)'
    # witness_checkorder(): duplicate locks of one witness without DUPOK
    'acquiring duplicate lock of same type'
    # witness_checkorder()/witness_unlock(): shared vs exclusive mismatches
    '(shared|exclusive) (lock|unlock) of \(.*\) .* @ '
    'while (exclusively|share) locked from '
    'forbidden unlock of '
    # witness_warn(): "<what> with the following [non-sleepable ]locks held:",
    # e.g. kern_synch.c 'Sleeping on "%s"', malloc(M_WAITOK) with a mutex
    'with the following (non-sleepable )?locks held'
    'Sleeping on ".*" with the following'
    # witness_list_lock(): the lines listing held locks,
    # "exclusive sleep mutex so_rcv (so_rcv) r = 0 (0x...) locked @ file:line"
    '(exclusive|shared) (sleep mutex|spin mutex|sx|rw|rm|lockmgr) .* locked @ '
    'witness_warn'
    # subr_turnstile.c propagate_priority()
    'Sleeping thread \(tid [0-9]+, pid [0-9]+\) owns a non-sleepable lock'
    'sleeping thread'
    # kern_mutex.c / kern_sx.c / kern_rmlock.c recursion KASSERTs and
    # __mtx_assert(): "mutex %s not owned at %s:%d"
    'recursed on non-recursive'
    'not owned at '
    'unowned lock'
    # kern_mutex.c _mtx_lock_indefinite_check()
    'spin lock .* held by .* too long'
    # vm/uma_dbg.c trash_ctor() (printf variant and panic variant)
    'Memory modified after free'
    # subr_witness.c: WITNESS giving up (its later checks are then void)
    'witness rmatrix paradox'
    'rmatrix mismatch between'
    'Witness disabled'
    'witness exhausted'
    'WITNESS: unable to allocate'
    # witness_debugger() with debug.witness.trace (the default) after any
    # complaint, and kdb_backtrace() after a panic
    'stack backtrace:'
)

[ $# -eq 1 ] || { echo "usage: console-check.sh CONSOLE_LOG" >&2; exit 2; }
[ -r "$1" ] || { echo "console-check: cannot read $1" >&2; exit 2; }

re=$(IFS='|'; echo "${patterns[*]}")
hits=$(tr -d '\r' <"$1" | grep -nE -e "$re" | head -n 20)
if [ -n "$hits" ]; then
    printf '%s\n' "$hits"
    exit 1
fi
exit 0
