#!/bin/sh
# The operator layer (run-vm.sh --world): what a FreeBSD admin types,
# with the user's own FreeBSD userland, against listenq in the VM. Run by
# the runner (PID 1) as /bin/sh /listenq/operator.sh; prints TAP (plan
# last) on the console. /listenq holds lqinit (the runner as a command:
# listeners and clients), xlisteners (listenq(4)'s EXAMPLES program,
# built against this userland's headers and libc and the installed
# listenq.h) and, with the module, /boot/modules/listenq.ko.

n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
notok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $*"; }
diag() { echo "# $*"; }
# check NAME COMMAND...: ok when COMMAND exits 0.
check() {
	name=$1; shift
	if "$@" >/tmp/check.out 2>&1; then ok "$name"; else
		notok "$name"; sed 's/^/#   /' /tmp/check.out | head -20; fi
}
# same NAME GOT WANT
same() {
	if [ "$2" = "$3" ]; then ok "$1"; else
		notok "$1"; diag "  got '$2', expected '$3'"; fi
}

KO=/boot/modules/listenq.ko
lq() { sysctl -n "kern.ipc.listenq.$1"; }
# lqinit listen/connect go on in a child of their own and print its pid
# (tests/runner/src/tool.rs).
pids=""
bg() { p=$("$@") && pids="$pids $p"; }
stop_all() { [ -n "$pids" ] && kill $pids 2>/dev/null; pids=""; sleep 0.3; }

# ------------------------------------------------------------ kld*(8)
check "kldload $KO" kldload "$KO"
check "kldstat -v lists the listenq module" sh -c 'kldstat -v | grep -q "listenq"'
check "kldstat -n listenq.ko" kldstat -n listenq.ko
same "kern.ipc.listenq.unloadable is 0 by default" "$(lq unloadable)" 0
if kldunload listenq >/tmp/kldunload.out 2>&1; then
	notok "kldunload refused while kern.ipc.listenq.unloadable=0"
	kldload "$KO"
else
	ok "kldunload refused while kern.ipc.listenq.unloadable=0"
fi
check "kldunload(8) says why: Operation not supported" \
    grep -q "Operation not supported" /tmp/kldunload.out
check "the console says how to allow it" \
    sh -c 'dmesg | grep -q "kldunload refused: kern.ipc.listenq.unloadable is 0 (set it to 1"'

# ------------------------------------------------------------ sysctl(8)
check "sysctl kern.ipc.listenq: exit 0, nothing on stderr" \
    sh -c 'sysctl kern.ipc.listenq >/dev/null 2>/tmp/err && ! [ -s /tmp/err ]'
check "sysctl -a: exit 0, nothing on stderr" \
    sh -c 'sysctl -a >/dev/null 2>/tmp/err && ! [ -s /tmp/err ]'
nodes=$(sysctl -N kern.ipc.listenq | wc -l | tr -d ' ')
undescribed=$(sysctl -d kern.ipc.listenq | awk -F': ' 'NF < 2 || $2 == "" { print $1 }')
diag "kern.ipc.listenq has $nodes nodes"
same "sysctl -d: every kern.ipc.listenq node has a description" "$undescribed" ""
check "sysctl -d kern.ipc.listenq.accf_inherit describes the kernel kind" \
    sh -c 'sysctl -d kern.ipc.listenq.accf_inherit | grep -q SO_ACCEPTFILTER'

for bad in hold_timeout_drop=7 hold_timeout_drop=-1 unloadable=2 hold_timeout_ms=-1; do
	knob=${bad%%=*}
	old=$(lq "$knob")
	if sysctl "kern.ipc.listenq.$bad" >/dev/null 2>/tmp/err; then
		notok "sysctl kern.ipc.listenq.$bad refused"
	else
		ok "sysctl kern.ipc.listenq.$bad refused"
	fi
	check "  with Invalid argument on stderr" grep -q "Invalid argument" /tmp/err
	same "  kern.ipc.listenq.$knob keeps $old" "$(lq "$knob")" "$old"
done
for f in dataready httpready dnsready tlsready; do
	old=$(lq "$f.default_arg")
	if sysctl "kern.ipc.listenq.$f.default_arg=nosuchoption" >/dev/null 2>/tmp/err; then
		notok "sysctl kern.ipc.listenq.$f.default_arg=nosuchoption refused"
	else
		ok "sysctl kern.ipc.listenq.$f.default_arg=nosuchoption refused"
	fi
	same "  kern.ipc.listenq.$f.default_arg keeps \"$old\"" "$(lq "$f.default_arg")" "$old"
done
check "sysctl kern.ipc.listenq.httpready.default_arg=proxy accepted" \
    sysctl kern.ipc.listenq.httpready.default_arg=proxy
same "  and reads back proxy" "$(lq httpready.default_arg)" proxy
sysctl kern.ipc.listenq.httpready.default_arg= >/dev/null
check "sysctl kern.ipc.listenq.hold_timeout_ms=250 accepted" \
    sysctl kern.ipc.listenq.hold_timeout_ms=250
same "  and reads back 250" "$(lq hold_timeout_ms)" 250
sysctl kern.ipc.listenq.hold_timeout_ms=0 >/dev/null

# Loader tunables, as /boot/loader.conf sets them: through kenv(1).
sysctl kern.ipc.listenq.unloadable=1 >/dev/null
check "kldunload listenq once kern.ipc.listenq.unloadable=1" kldunload listenq
kenv kern.ipc.listenq.hold_timeout_drop=7 >/dev/null
kenv kern.ipc.listenq.hold_timeout_ms=1234 >/dev/null
check "kldload with tunables hold_timeout_drop=7 and hold_timeout_ms=1234" kldload "$KO"
same "  the bad tunable leaves hold_timeout_drop at 0" "$(lq hold_timeout_drop)" 0
same "  the good one sets hold_timeout_ms to 1234" "$(lq hold_timeout_ms)" 1234
check "  the kernel says the bad one failed" \
    sh -c 'dmesg | grep -q "Setting sysctl kern.ipc.listenq.hold_timeout_drop failed: 22"'
kenv -u kern.ipc.listenq.hold_timeout_drop >/dev/null
kenv -u kern.ipc.listenq.hold_timeout_ms >/dev/null
sysctl kern.ipc.listenq.hold_timeout_ms=0 >/dev/null
sysctl kern.ipc.listenq.unloadable=1 >/dev/null

# ------------------------------------------------------------ netstat, sockstat
bg lqinit listen tcp4 127.0.0.1 5101 7
sleep 0.5
bg lqinit connect tcp4 127.0.0.1 5101 3
sleep 1
ns=$(netstat -Lan -p tcp | awk '$3 == "127.0.0.1.5101" { print $2 }')
diag "netstat -Lan: 127.0.0.1.5101 $ns"
same "netstat -Lan shows the listener's qlen/incqlen/maxqlen" "$ns" "3/0/7"
# "id I port P uid U jail J qlen Q/L overflows O filter F"
xl=$(xlisteners | awk '$4 == 5101 { print $10 }')
same "xlisteners (listenq(4) EXAMPLES program) shows the same qlen/qlimit" "$xl" "3/7"
row=$(lq listeners | awk '$0 ~ /127\.0\.0\.1\.5101 /')
diag "listeners: $row"
check "kern.ipc.listenq.listeners has the row" test -n "$row"
ss=$(sockstat -l -4 -P tcp | awk '$6 == "127.0.0.1:5101" { print $1, $2 }')
diag "sockstat -l: $ss"
same "sockstat -l: user root, command lqinit" "$ss" "root lqinit"
same "xlisteners: uid 0, jail 0" "$(xlisteners | awk '$4 == 5101 { print $6, $8 }')" "0 0"
stop_all

# ------------------------------------------------------------ jails
check "jail -c a plain jail (ip4=inherit)" jail -c name=lqplain path=/ ip4=inherit persist
check "jail -c a VNET jail" jail -c name=lqvnet path=/ vnet persist
jexec lqvnet ifconfig lo0 inet 127.0.0.1/8 up
bg lqinit listen tcp4 127.0.0.1 5201 5
bg jexec lqplain /listenq/lqinit listen tcp4 127.0.0.1 5202 5
bg jexec lqvnet /listenq/lqinit listen tcp4 127.0.0.1 5203 5
sleep 1
host=$(lq listeners | grep -oE '\.520[123] ' | sort | tr -d ' \n')
plain=$(jexec lqplain sysctl -n kern.ipc.listenq.listeners | grep -oE '\.520[123] ' | sort | tr -d ' \n')
vnet=$(jexec lqvnet sysctl -n kern.ipc.listenq.listeners | grep -oE '\.520[123] ' | sort | tr -d ' \n')
diag "host sees $host, plain jail $plain, vnet jail $vnet"
same "the host sees its own and the plain jail's listeners (its vnet)" "$host" ".5201.5202"
same "the plain jail sees only its own" "$plain" ".5202"
same "the VNET jail sees only its own" "$vnet" ".5203"
same "netstat -Lan in the VNET jail agrees" \
    "$(jexec lqvnet netstat -Lan -p tcp | awk '$3 ~ /\.520[123]$/ { print $3 }')" "127.0.0.1.5203"
stop_all
jail -r lqplain lqvnet >/dev/null 2>&1

# ------------------------------------------------------------ sonewconn:
# The kernel's overflow line, which admins grep for, byte for byte the
# same with listenq loaded as without (numbers and addresses aside).
overflow_line() {
	port=$1
	bg lqinit listen tcp4 127.0.0.1 "$port" 1
	sleep 0.5
	bg lqinit connect tcp4 127.0.0.1 "$port" 8
	sleep 1.5
	stop_all
	dmesg | grep "sonewconn: pcb .*127.0.0.1:$port " | tail -1 |
	    sed -E 's/0x[0-9a-f]+/PCB/; s/[0-9]+/N/g'
}
with=$(overflow_line 5301)
sysctl kern.ipc.listenq.unloadable=1 >/dev/null
kldunload listenq
without=$(overflow_line 5302)
diag "with listenq:    $with"
diag "without listenq: $without"
check "the sonewconn: overflow line is logged with listenq loaded" test -n "$with"
same "and reads as without listenq" "$with" "$without"

# ------------------------------------------------------------ FreeBSD's own tests
# Kyua, with listenq loaded and again without it: a case that fails only
# with listenq is listenq's.
kyua_run() {
	label=$1
	(cd /usr/tests/sys && kyua test -k /usr/tests/sys/Kyuafile $KYUA_TESTS \
	    >/tmp/kyua-$label.out 2>&1)
	(cd /usr/tests/sys && kyua report --results-filter=broken,failed \
	    >/tmp/kyua-$label.report 2>&1)
	tail -3 /tmp/kyua-$label.out | sed 's/^/# /'
}
KYUA_TESTS=""
for t in kern/socket_accf kern/unix_seqpacket_test kern/unix_passfd_test \
    kern/unix_passfd_dgram kern/unix_passfd_stream kern/socket_msg_trunc \
    kern/socket_msg_waitall kern/unix_dgram kern/so_setfib \
    netinet/so_reuseport_lb_test netinet/socket_afinet netinet/tcp_connect_port_test; do
	[ -x "/usr/tests/sys/$t" ] && KYUA_TESTS="$KYUA_TESTS $t"
done
if [ -z "$KYUA_TESTS" ] || ! command -v kyua >/dev/null 2>&1; then
	notok "FreeBSD's socket tests: none installed under /usr/tests/sys, or no kyua"
else
	diag "kyua test programs:$KYUA_TESTS"
	kldload "$KO"
	kyua_run with
	sysctl kern.ipc.listenq.unloadable=1 >/dev/null
	kldunload listenq
	kyua_run without
	bad_with=$(grep -cE '^[^ ]+:[^ ]+ +-> +(failed|broken)' /tmp/kyua-with.report)
	bad_without=$(grep -cE '^[^ ]+:[^ ]+ +-> +(failed|broken)' /tmp/kyua-without.report)
	total=$(grep -cE ' +-> +(passed|failed|broken|skipped|expected_failure)' /tmp/kyua-with.out)
	diag "kyua: $total cases; failed or broken: $bad_with with listenq, $bad_without without"
	grep -E -- '-> +(failed|broken)' /tmp/kyua-with.out | sed 's/^/#   with: /'
	grep -E -- '-> +(failed|broken)' /tmp/kyua-without.out | sed 's/^/#   without: /'
	check "kyua ran FreeBSD's socket tests ($total cases)" test "$total" -gt 0
	same "no case fails with listenq that passes without it" \
	    "$(grep -E -- '-> +(failed|broken)' /tmp/kyua-with.out | awk '{print $1}' | sort)" \
	    "$(grep -E -- '-> +(failed|broken)' /tmp/kyua-without.out | awk '{print $1}' | sort)"
	same "every case passes with listenq (failed or broken: 0)" "$bad_with" 0
fi

echo "1..$n"
[ "$failed" -eq 0 ]
