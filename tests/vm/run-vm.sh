#!/usr/bin/env bash
# Boots a FreeBSD test kernel with the listenq test runner as /sbin/init
# and judges the TAP it prints on the console.
#
#   tests/vm/run-vm.sh --kernel PATH [--ko PATH] [--modules DIR]
#                      [--timeout SECS] [--runner PATH] [--log PATH] [--bench]
#
# --kernel   the FreeBSD kernel (QEMU: a PVH-bootable LISTENQ kernel)
# --ko       listenq.ko to put in /boot/modules (without it the module
#            tests report SKIP "listenq.ko not in image")
# --modules  directory with stock accf_{data,http,dns}.ko
#            (default /var/lib/listenq/modules when it exists)
# --timeout  seconds for the whole boot + suite (default 120)
# --runner   a prebuilt runner (default: build it with build-runner.sh)
# --log      where to keep the console log (default: a temporary file)
# --world    a FreeBSD userland (installworld + distribution) to boot with:
#            the image is that world plus the runner as /sbin/lqinit (the
#            kernel's init_path), which runs tests/vm/operator.sh with the
#            world's /bin/sh (the operator layer) instead of the suite
# --bench    run only the accept filter benchmark (kernel env listenq.bench=1,
#            or =quick with LISTENQ_BENCH=quick: filter and hooks rows only;
#            default timeout 1800)
#
# LISTENQ_VM_CPUS  vCPUs (default 2; 1 for a uniprocessor run). --bench
#                  always uses 1 vCPU with instruction-counted time, except
#                  with LISTENQ_BENCH=smp (the 2-vCPU figure: real time).
# LISTENQ_VM_KENV  more kernel environment, comma-separated.
# Linux: QEMU TCG (multi-threaded with more than one vCPU), -M microvm, PVH
# -kernel (LISTENQ_QEMU_ACCEL=kvm tries KVM; LISTENQ_QEMU overrides the qemu
# binary). FreeBSD: bhyveload + bhyve (untested, see tests/vm/README.md).
# The kernel environment the harness passes makes any FIRECRACKER-derived
# kernel boot (see KENV below); a panic reboots it at once.
# Exit 0 only when every test passed and the console shows no panic, WITNESS
# or INVARIANTS complaint (console-check.sh); prints "vm: N passed, 0 failed".
# A bash script: `sh run-vm.sh` (as tests/run-all.sh calls it) re-runs it in bash.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

kernel= ko= modules= timeout_s= runner= log= bench= world=
default_modules=/var/lib/listenq/modules

die() { echo "run-vm: $*" >&2; exit 2; }
usage() { sed -n '2,28p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --kernel) kernel=${2:-}; shift 2 ;;
        --ko) ko=${2:-}; shift 2 ;;
        --modules) modules=${2:-}; shift 2 ;;
        --timeout) timeout_s=${2:-}; shift 2 ;;
        --runner) runner=${2:-}; shift 2 ;;
        --log) log=${2:-}; shift 2 ;;
        --bench) bench=1; shift ;;
        --world) world=${2:-}; shift 2 ;;
        -h|--help) usage ;;
        *) echo "run-vm: unknown argument: $1" >&2; usage ;;
    esac
done

if [ -z "$timeout_s" ]; then if [ -n "$bench" ]; then timeout_s=1800; else timeout_s=240; fi; fi
cpus=${LISTENQ_VM_CPUS:-2}
[[ "$cpus" =~ ^[1-9][0-9]*$ ]] || die "LISTENQ_VM_CPUS wants a positive number of vCPUs"
# The benchmark counts instructions as time, which needs one vCPU; its
# 2-vCPU figure (LISTENQ_BENCH=smp) keeps the vCPUs and real time.
smp_bench=
[ "${LISTENQ_BENCH:-}" != smp ] || smp_bench=1
[ -z "$bench" ] || [ -n "$smp_bench" ] || cpus=1

# Kernel environment for any kernel built from FreeBSD's FIRECRACKER config
# (../../README.md, "What it needs"; the facts behind each line are in the
# kernel notes the README refers to):
#  - FIRECRACKER sets machdep.disable_tsc_calibration=1, and TCG's CPUID has
#    no TSC frequency: without calibration the lapic timer code panics
#    "TSC not initialized";
#  - without a hints file the i8254 (attimer) never attaches, and with more
#    than one CPU the TSC gets a negative quality: the kernel stays on the
#    "dummy" timecounter and every sleep hangs. smp_tsc/invariant_tsc keep
#    the TSC usable (they rely on the early-clock fix the README lists);
#  - a panic must not sit in ddb waiting for a key (FIRECRACKER has KDB and
#    DDB): reboot at once, which ends QEMU (-no-reboot); the console keeps
#    the panic message and the backtrace (KDB_TRACE).
KENV=(
    vfs.root.mountfrom=ufs:/dev/vtbd0
    machdep.disable_tsc_calibration=0
    hint.attimer.0.at=isa hint.attimer.0.port=0x40 hint.attimer.0.irq=0
    kern.timecounter.smp_tsc=1 kern.timecounter.invariant_tsc=1
    debug.debugger_on_panic=0 kern.panic_reboot_wait_time=0
)
# The benchmark holds 16000 silent connections: room for their descriptors
# and both ends' sockets (the runner raises its own RLIMIT_NOFILE).
[ -z "$bench" ] || KENV+=(listenq.bench=${LISTENQ_BENCH:-1} kern.maxfiles=65536 kern.ipc.maxsockets=65536)
# More, comma-separated (e.g. listenq.panic=1: the runner panics the kernel,
# to see that a panic fails the run fast).
if [ -n "${LISTENQ_VM_KENV:-}" ]; then
    IFS=, read -r -a extra <<<"$LISTENQ_VM_KENV"
    KENV+=("${extra[@]}")
fi
[ -n "$kernel" ] || die "--kernel PATH is required"
[ -f "$kernel" ] || die "kernel not found: $kernel"
[ -z "$ko" ] || [ -f "$ko" ] || die "listenq.ko not found: $ko"
[[ "$timeout_s" =~ ^[0-9]+$ ]] && [ "$timeout_s" -gt 0 ] || die "--timeout wants a positive number of seconds"
if [ -z "$modules" ] && [ -d "$default_modules" ]; then modules=$default_modules; fi
[ -z "$modules" ] || [ -d "$modules" ] || die "modules directory not found: $modules"
if [ -n "$world" ]; then
    [ -x "$world/bin/sh" ] || die "not an installed FreeBSD world (no bin/sh): $world"
    [ -z "$bench" ] || die "--world and --bench do not go together"
    KENV+=(init_path=/sbin/lqinit listenq.operator=1)
fi

host=$(uname -s)
command -v makefs >/dev/null 2>&1 || die "makefs not found (Debian: apt-get install makefs)"

work=$(mktemp -d "${TMPDIR:-/tmp}/listenq-vm.XXXXXX") || die "mktemp failed"
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
[ -n "$log" ] || log=$work/console.log
: >"$log" || die "cannot write $log"

# ---------------------------------------------------------------- runner
if [ -z "$runner" ]; then
    runner=$("$here/build-runner.sh" | tail -n1) || die "building the runner failed"
fi
[ -f "$runner" ] || die "runner not found: $runner"
osabi=$(od -An -tx1 -j7 -N1 "$runner" | tr -d ' ')
[ "$osabi" = 09 ] || die "$runner is not branded FreeBSD (EI_OSABI $osabi); build it with build-runner.sh"

# ---------------------------------------------------------------- image
stage=$work/root
if [ -n "$world" ]; then
    # The user's world as it was installed (owners: the image is made by
    # root; the setuid bits of its METALOG do not matter to root's tests),
    # then ours beside it.
    mkdir -p "$stage"
    cp -a "$world/." "$stage/" || die "copying $world failed"
    rm -f "$stage/METALOG"
    mkdir -p "$stage/listenq" "$stage/usr/local/include"
    install -m 0555 "$runner" "$stage/sbin/lqinit"
    install -m 0555 "$runner" "$stage/listenq/lqinit"
    install -m 0555 "$here/operator.sh" "$stage/listenq/operator.sh"
    install -m 0444 "$here/../../listenq.h" "$stage/usr/local/include/listenq.h"
    # listenq(4)'s EXAMPLES program, against this world's headers and libc
    # and the installed listenq.h, as a user would build it.
    if bash "$here/build-example.sh" "$here/../../listenq.4" "$stage" \
        "$stage/listenq/xlisteners" >"$work/example.log" 2>&1; then :; else
        cat "$work/example.log" >&2
        echo "run-vm: note: the EXAMPLES program did not build" >&2
    fi
    # listenqstat(8), built against this world as `make LISTENQ_WORLD=`
    # builds it, and installed where `make install` puts it.
    mkdir -p "$stage/usr/local/sbin" "$stage/usr/local/share/man/man8"
    if sh "$here/../../listenqstat/build.sh" "$stage" "$stage/usr/local/sbin/listenqstat" \
        >"$work/listenqstat.log" 2>&1; then
        gzip -cn "$here/../../listenqstat/listenqstat.8" >"$stage/usr/local/share/man/man8/listenqstat.8.gz"
    else
        cat "$work/listenqstat.log" >&2
        echo "run-vm: note: listenqstat did not build" >&2
    fi
fi
mkdir -p "$stage/dev" "$stage/tmp" "$stage/sbin" "$stage/boot/modules" "$stage/boot/kernel"
[ -n "$world" ] || install -m 0555 "$runner" "$stage/sbin/init"
if [ -n "$ko" ]; then
    install -m 0555 "$ko" "$stage/boot/modules/listenq.ko"
else
    echo "run-vm: no --ko: module tests will be skipped" >&2
fi
if [ -n "$modules" ]; then
    missing=
    for m in accf_data accf_http accf_dns; do
        if [ -f "$modules/$m.ko" ]; then
            install -m 0555 "$modules/$m.ko" "$stage/boot/modules/$m.ko"
        else
            missing="$missing $m.ko"
        fi
    done
    [ -z "$missing" ] || echo "run-vm: note: not in $modules:$missing" >&2
    # With a world, the kernel's other modules too (DTrace's, for the
    # listenq provider's checks), where a kernel's own modules live, and
    # the kernel itself: DTrace's types come from its CTF, which the
    # kernel reads from its own file (DDB_CTF, kern_ctf.c) by the name the
    # loader gave it, /boot/kernel/kernel; booted without a loader (QEMU's
    # PVH entry passes no metadata) it is named "kernel", a path relative
    # to the reader's directory, so it goes in / as well.
    if [ -n "$world" ]; then
        install -m 0555 "$kernel" "$stage/boot/kernel/kernel"
        [ "$host" = FreeBSD ] || ln "$stage/boot/kernel/kernel" "$stage/kernel"
        for f in "$modules"/*.ko; do
            case ${f##*/} in accf_*|listenq.ko) continue ;; esac
            [ -f "$f" ] && install -m 0555 "$f" "$stage/boot/kernel/"
        done
    fi
fi
chmod 1777 "$stage/tmp"

img=$work/root.img
if [ "$host" = FreeBSD ]; then
    # bhyveload reads the kernel, loader.conf and the loader's scripts from
    # the disk image.
    install -m 0555 "$kernel" "$stage/boot/kernel/kernel"
    [ -d /boot/lua ] && cp -R /boot/lua "$stage/boot/lua"
    mkdir -p "$stage/boot/defaults"
    [ -f /boot/defaults/loader.conf ] && cp /boot/defaults/loader.conf "$stage/boot/defaults/"
    cat >"$stage/boot/loader.conf" <<'EOF'
autoboot_delay="0"
beastie_disable="YES"
console="comconsole"
boot_serial="YES"
EOF
    for v in "${KENV[@]}"; do echo "${v%%=*}=\"${v#*=}\""; done >>"$stage/boot/loader.conf"
fi
# Twice the contents plus 8 MiB (makefs's own size estimate can come out
# too small for UFS1); the root stays read-only, /tmp is a tmpfs.
size_k=$(( $(du -sk "$stage" | cut -f1) * 2 + 8192 ))
makefs -t ffs -o version=1 -s "${size_k}k" "$img" "$stage" >"$work/makefs.log" 2>&1 ||
    { cat "$work/makefs.log" >&2; die "makefs failed"; }

# ---------------------------------------------------------------- boot
now() { if [ -n "${EPOCHREALTIME:-}" ]; then echo "${EPOCHREALTIME/,/.}"; else date +%s; fi; }

# Runs the VM command in the background with the console going to $log,
# ends it at the timeout, and ends it early when the console shows a panic
# or a fatal trap (the kernel reboots by itself, debugger_on_panic=0; the
# grace period lets the backtrace out and covers a panic that hangs).
# Sets rc: the command's status, 124 on timeout.
#
# Under --bench (QEMU -icount shift=0,sleep=off) the guest never leaves
# cpu_reset(): after "Rebooting..." QEMU spins at 100% CPU and the console
# stays silent (under plain TCG "No known reset method worked" follows
# within 1.5 s of guest time, from cpu_reset_real()'s DELAY()s, and the
# triple fault ends QEMU). So once the runner's plan (1..N) and the
# kernel's "Rebooting..." are on the console, the bench stops QEMU itself
# and counts that as a clean end (rc 0): everything the judge reads is out.
panicked= rebooted=
watch_vm() {
    timeout -k 5 "$timeout_s" "$@" </dev/null >>"$log" 2>"$work/vm.out" &
    local pid=$! grace=0 rgrace=0
    while kill -0 "$pid" 2>/dev/null; do
        if [ -z "$panicked" ] && grep -qE 'panic: |Fatal trap [0-9]' "$log"; then
            panicked=1
        fi
        if [ -n "$bench" ] && [ -z "$panicked" ] && [ -z "$rebooted" ] &&
            grep -qE '^1\.\.[0-9]+' "$log" && grep -q '^Rebooting\.\.\.' "$log"; then
            rebooted=1
        fi
        if [ -n "$rebooted" ]; then
            rgrace=$((rgrace + 1))
            # 1 s after "Rebooting...": the guest is done.
            [ "$rgrace" -le 5 ] || { kill "$pid" 2>/dev/null; wait "$pid"; rc=0; return; }
        fi
        if [ -n "$panicked" ]; then
            grace=$((grace + 1))
            # 5 s after the panic line: stop waiting for the reboot.
            [ "$grace" -le 25 ] || { kill "$pid" 2>/dev/null; break; }
        fi
        sleep 0.2
    done
    wait "$pid"
    rc=$?
}

start=$(now)
rc=0
if [ "$host" = FreeBSD ]; then
    # UNTESTED (written for a FreeBSD host, see README.md).
    vm=listenq-test-$$
    command -v bhyve >/dev/null 2>&1 || die "bhyve not found"
    bhyvectl --destroy --vm="$vm" >/dev/null 2>&1 || true
    if ! timeout 60 bhyveload -m 512M -d "$img" -c stdio "$vm" </dev/null >>"$log" 2>&1; then
        bhyvectl --destroy --vm="$vm" >/dev/null 2>&1 || true
        tail -n 60 "$log"
        die "bhyveload failed"
    fi
    watch_vm bhyve -c "$cpus" -m 512M -H -A -P \
        -s 0:0,hostbridge -s 1:0,lpc -s 2:0,virtio-blk,"$img" \
        -l com1,stdio "$vm"
    bhyvectl --destroy --vm="$vm" >/dev/null 2>&1 || true
    # bhyve exits 0 when the guest rebooted (our runner's last act).
    ok_exit=0
else
    qemu=${LISTENQ_QEMU:-qemu-system-x86_64}
    command -v "$qemu" >/dev/null 2>&1 || die "$qemu not found (apt-get install qemu-system-x86)"
    accel=${LISTENQ_QEMU_ACCEL:-tcg}
    case "$accel" in
        tcg)
            if [ -n "$bench" ] && [ -z "$smp_bench" ]; then
                # Guest time = executed instructions (1 ns each): figures
                # repeat exactly from boot to boot. Single-threaded TCG.
                accel_args=(-accel tcg -icount shift=0,sleep=off)
            elif [ "$cpus" -gt 1 ]; then
                # One host thread per vCPU; thread=single does not boot
                # FreeBSD with 2 vCPUs.
                accel_args=(-accel tcg,thread=multi)
            else
                accel_args=(-accel tcg)
            fi
            ;;
        kvm) accel_args=(-accel kvm -cpu host) ;;
        *) die "LISTENQ_QEMU_ACCEL must be tcg or kvm" ;;
    esac
    # The command line documented by the kernel's builder in
    # /var/lib/listenq/README.txt: acpi=off is required (otherwise QEMU does
    # not append virtio_mmio.device=... and there is no vtbd0). -nographic
    # puts the console (isa-serial at 0x3f8) on stdout, i.e. the log.
    # QEMU exits 0 after a reboot and after a panic alike.
    # Kernel environment: comma-separated variables.
    #
    # Which machine: a kernel with virtio-mmio (FIRECRACKER and its kin)
    # boots on microvm; one without it (GENERIC: virtio_pci only) needs a
    # PC machine with a PCI disk, and, since GENERIC compiles in no hints
    # and vt(4) takes the console, the serial port's hints and
    # boot_serial. The kernel's own strings tell which: the virtio-mmio
    # bus driver's device description (virtio_mmio.c), which only a kernel
    # with that driver carries (a bare "virtio_mmio" is also in GENERIC,
    # whose vtnet and virtio_blk name the bus they could attach to).
    if grep -aq 'VirtIO MMIO adapter' "$kernel"; then
        machine=(-M microvm,x-option-roms=off,acpi=off)
        disk=(-device virtio-blk-device,drive=d0)
    else
        machine=(-M q35)
        disk=(-device virtio-blk-pci,drive=d0)
        KENV+=(boot_serial=YES hint.uart.0.at=isa hint.uart.0.port=0x3F8
            hint.uart.0.flags=0x10 hint.uart.0.irq=4)
    fi
    echo "run-vm: machine ${machine[1]%%,*} ($(basename "$(dirname "$kernel")")/$(basename "$kernel"))" >&2
    kenv=$(IFS=,; echo "${KENV[*]}")
    watch_vm "$qemu" \
        "${machine[@]}" -smp "$cpus" -m 512 \
        "${accel_args[@]}" \
        -nographic -no-reboot -kernel "$kernel" \
        -append "$kenv" \
        -drive "id=d0,file=$img,format=raw,if=none" "${disk[@]}"
    ok_exit=0
fi
end=$(now)
elapsed=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')

# ---------------------------------------------------------------- judge
clean=$work/console.txt
tr -d '\r' <"$log" >"$clean"

plan=$(grep -E '^1\.\.[0-9]+$' "$clean" | tail -n1 | cut -d. -f3)
nplans=$(grep -cE '^1\.\.[0-9]+$' "$clean")
nok=$(grep -cE '^ok [0-9]+( |$)' "$clean")
nnot=$(grep -cE '^not ok [0-9]+( |$)' "$clean")
nres=$((nok + nnot))

reasons=()
if [ -n "$panicked" ]; then
    : # the console-check lines below say what happened
elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    reasons+=("timeout after ${timeout_s} s")
elif [ "$rc" != "$ok_exit" ]; then
    reasons+=("VM exited with status $rc")
    [ -s "$work/vm.out" ] && reasons+=("vm: $(head -c 300 "$work/vm.out" | tr '\n' ' ')")
fi
[ "$nnot" -eq 0 ] || reasons+=("$nnot test(s) not ok")
grep -q '^Bail out!' "$clean" && reasons+=("Bail out!: $(grep -m1 '^Bail out!' "$clean")")
# Panics, fatal traps, WITNESS and INVARIANTS complaints.
if ! trouble=$(bash "$here/console-check.sh" "$clean"); then
    while IFS= read -r t; do reasons+=("kernel trouble at console line $t"); done <<<"$trouble"
fi
if [ -z "$plan" ]; then
    reasons+=("no TAP plan (1..N) on the console")
else
    [ "$nplans" -eq 1 ] || reasons+=("$nplans TAP plans")
    [ "$nres" -ge "$plan" ] || reasons+=("only $nres results for a plan of $plan")
    [ "$nres" -le "$plan" ] || reasons+=("$nres results for a plan of $plan")
fi
# Results must be numbered 1, 2, 3, ... in order.
if [ "$nres" -gt 0 ] && ! grep -E '^(not )?ok [0-9]+( |$)' "$clean" | sed -E 's/^(not )?ok ([0-9]+).*/\2/' |
    awk '$1 != NR { exit 1 }'; then
    reasons+=("TAP results out of sequence")
fi

echo "run-vm: $host boot + suite took ${elapsed} s" >&2
if [ "${#reasons[@]}" -eq 0 ]; then
    grep -E '^(ok|not ok) [0-9]+|^1\.\.[0-9]+$|^#|^Bail out!' "$clean"
    echo "vm: $nok passed, 0 failed"
    status=0
else
    echo "---- last 60 console lines ----"
    tail -n 60 "$clean"
    echo "-------------------------------"
    for r in "${reasons[@]}"; do echo "run-vm: FAIL: $r"; done
    echo "vm: $nok passed, $((nnot > 0 ? nnot : 1)) failed"
    status=1
fi
# A temporary log goes away with $work; keep it when something failed.
if [ "$status" != 0 ] && [ "$log" = "$work/console.log" ]; then
    kept=${TMPDIR:-/tmp}/listenq-vm-last-console.log
    cp "$log" "$kept" && echo "run-vm: console log kept in $kept" >&2
fi
exit "$status"
