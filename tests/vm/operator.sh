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

# ------------------------------------------------------------ listenqstat(8)
# Its JSON, parsed (lqinit json), against this script's own listeners: one
# without a filter and 3 connections waiting, one with httpready holding 2.
LQS=/usr/local/sbin/listenqstat
if [ ! -x "$LQS" ]; then
	notok "listenqstat is installed in /usr/local/sbin (it did not build against this userland)"
else
	bg lqinit listen tcp4 127.0.0.1 5111 7
	bg lqinit listen tcp4 127.0.0.1 5112 9 httpready
	sleep 0.5
	bg lqinit connect tcp4 127.0.0.1 5111 3
	bg lqinit connect tcp4 127.0.0.1 5112 2
	sleep 1
	check "listenqstat --libxo json: exit 0" sh -c "$LQS --libxo json >/tmp/lqs.json"
	check "  its output is JSON (lqinit json parses all of it)" \
	    sh -c '/listenq/lqinit json /tmp/lqs.json listener >/tmp/lqs.rows'
	sed 's/^/#   /' /tmp/lqs.rows
	r1=$(grep -E '(^| )local-port=5111( |$)' /tmp/lqs.rows)
	r2=$(grep -E '(^| )local-port=5112( |$)' /tmp/lqs.rows)
	field() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
	# Values end where the next key=value starts: a run of blanks would
	# be a text column's padding inside a JSON string.
	check "  JSON strings carry no text-column padding" \
	    sh -c "! grep -q '  ' /tmp/lqs.rows"
	same "  5111: protocol tcp4" "$(field "$r1" protocol)" tcp4
	same "  5111: local-address as netstat writes it" "$(field "$r1" local-address)" 127.0.0.1.5111
	same "  5111: queue-length/incomplete/limit 3/0/7, numbers" \
	    "$(field "$r1" queue-length)/$(field "$r1" incomplete-queue-length)/$(field "$r1" queue-limit)" 3/0/7
	same "  5111: backlog 7" "$(field "$r1" backlog)" 7
	same "  5111: no accept filter (no accept-filter member)" "$(field "$r1" accept-filter)" ""
	same "  5111: uid 0, jail 0" "$(field "$r1" uid) $(field "$r1" jail-id)" "0 0"
	same "  5111: nothing accepted yet, so no latency figure" "$(field "$r1" accept-latency-p50)" ""
	same "  5112: httpready holds both connections" \
	    "$(field "$r2" accept-filter) $(field "$r2" held) $(field "$r2" queue-length)" "httpready 2 0"
	same "  the same qlen/incqlen/maxqlen as netstat -Lan" \
	    "$(netstat -Lan -p tcp | awk '$3 == "127.0.0.1.5111" { print $2 }')" 3/0/7
	check "listenqstat (text): a netstat-like line for 5111" \
	    sh -c "$LQS | grep -Eq '^tcp4 +3/0/7 +127\\.0\\.0\\.1\\.5111 '"
	same "listenqstat -p 5112: that listener only" \
	    "$($LQS -p 5112 --libxo json >/tmp/lqs-p.json && /listenq/lqinit json /tmp/lqs-p.json listener | sed -n 's/.*local-port=\([0-9]*\).*/\1/p' | tr '\n' ' ')" "5112 "
	check "listenqstat --libxo xml names the port" \
	    sh -c "$LQS -p 5111 --libxo xml | grep -q '<local-port>5111</local-port>'"
	stop_all
	# -w: rates over an interval, here overflows of a backlog-1 listener
	# refusing most of 8 connections made half a second into the interval.
	bg lqinit listen tcp4 127.0.0.1 5113 1
	sleep 0.5
	bg lqinit connect tcp4 127.0.0.1 5113 8 500
	$LQS -p 5113 -w 2 -c 1 --libxo json >/tmp/lqs-w.json 2>&1
	check "listenqstat -w 2 -c 1 --libxo json: JSON" \
	    sh -c '/listenq/lqinit json /tmp/lqs-w.json listener >/tmp/lqs-w.rows'
	sed 's/^/#   /' /tmp/lqs-w.rows
	ovs=$(sed -n 's/.*overflows-per-second=\([0-9.]*\).*/\1/p' /tmp/lqs-w.rows)
	check "  overflows-per-second over the interval is more than 0 (got '$ovs')" \
	    sh -c "echo '$ovs' | grep -Eq '^[0-9]+\\.[0-9]+$' && [ \"\$(echo '$ovs' | tr -d .)\" -gt 0 ]"
	stop_all
	if $LQS -j nosuchjail >/tmp/lqs-j.out 2>&1; then
		notok "listenqstat -j nosuchjail refused"
	else
		ok "listenqstat -j nosuchjail refused"
	fi
	check "  and says why" grep -q "nosuchjail" /tmp/lqs-j.out
fi

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
if [ -x /usr/local/sbin/listenqstat ]; then
	same "listenqstat -j lqplain on the host: that jail's listener only" \
	    "$(/usr/local/sbin/listenqstat -j lqplain | grep -oE '\.520[123] ' | tr -d ' \n')" ".5202"
	same "listenqstat inside the plain jail: its own only" \
	    "$(jexec lqplain /usr/local/sbin/listenqstat | grep -oE '\.520[123] ' | tr -d ' \n')" ".5202"
fi
stop_all
jail -r lqplain lqvnet >/dev/null 2>&1

# ------------------------------------------------------------ log(9) lines
# What a user did wrong, as the admin reads it: dmesg(8), and syslogd(8)
# filing it by priority, naming the listener, the uid, the pid and the jail.
# The image's root is read-only: syslogd's file, sockets and pid file go
# to /tmp.
touch /tmp/messages /tmp/kern-info /tmp/kern-notice
printf 'kern.=info\t/tmp/kern-info\nkern.=notice\t/tmp/kern-notice\n*.info\t/tmp/messages\n' >/tmp/syslog.conf
syslogd -ss -f /tmp/syslog.conf -P /tmp/syslogd.pid -p /tmp/log -S /tmp/logpriv 2>/tmp/syslogd.err
sleep 0.5
if lqinit listen tcp4 127.0.0.1 5501 5 httpready:nosuchoption >/tmp/badarg.out 2>&1; then
	notok "setsockopt(SO_ACCEPTFILTER) with a bad af_arg fails"
else
	ok "setsockopt(SO_ACCEPTFILTER) with a bad af_arg fails"
fi
sleep 1
line=$(dmesg -a | grep 'listenq: httpready: bad af_arg on 127.0.0.1.5501 ' | tail -1)
diag "dmesg -a: $line"
check "dmesg -a: with the listener, uid, pid and jail" \
    sh -c "echo '$line' | grep -Eq '^listenq: httpready: bad af_arg on 127\\.0\\.0\\.1\\.5501 \\(uid 0, pid [0-9]+, jail 0\\): unknown option'"
check "syslogd(8) got it at kern.info (kern.=info file)" \
    grep -q 'kernel: listenq: httpready: bad af_arg on 127.0.0.1.5501 (uid 0, pid' /tmp/kern-info
sysctl kern.ipc.listenq.logprio=5 >/dev/null
lqinit listen tcp4 127.0.0.1 5503 5 httpready:nosuchoption >/dev/null 2>&1
sleep 1
check "kern.ipc.listenq.logprio=5: syslogd(8) got the next one at kern.notice" \
    grep -q 'kernel: listenq: httpready: bad af_arg on 127.0.0.1.5503 (uid 0, pid' /tmp/kern-notice
check "  and not at kern.info" \
    sh -c "! grep -q 'bad af_arg on 127.0.0.1.5503 ' /tmp/kern-info"
sysctl kern.ipc.listenq.logprio=-1 >/dev/null
n0=$(dmesg -a | grep -c 'bad af_arg on 127.0.0.1.5502 ')
lqinit listen tcp4 127.0.0.1 5502 5 httpready:nosuchoption >/dev/null 2>&1
sleep 0.5
same "kern.ipc.listenq.logprio=-1: no line" "$(dmesg -a | grep -c 'bad af_arg on 127.0.0.1.5502 ')" "$n0"
sysctl kern.ipc.listenq.logprio=6 >/dev/null
[ -f /tmp/syslogd.pid ] && kill "$(cat /tmp/syslogd.pid)" 2>/dev/null

# ------------------------------------------------------------ dtrace(1)
# The listenq provider, with the kernel's own DTrace modules (they come
# with the kernel: run-vm.sh copies them from its modules directory).
if ! command -v dtrace >/dev/null 2>&1; then
	notok "dtrace(1) is in this userland (needed for the listenq provider's checks)"
elif ! [ -f /boot/kernel/dtraceall.ko ] && ! kldstat -q -m dtraceall; then
	echo "ok $((n + 1)) # SKIP the listenq provider: no dtraceall.ko for this kernel in its modules directory"
	n=$((n + 1))
else
	check "kldload dtraceall" sh -c 'kldstat -q -m dtraceall || kldload dtraceall'
	# The kernel's CTF is read from the kernel's file by its name, which
	# without a loader is "kernel", relative to the reader's directory.
	cd /
	diag "kernel file: $(kldstat -v | awk 'NR == 2 { print $NF }')"
	dtrace -l -P listenq >/tmp/dt-l.out 2>&1
	sed 's/^/#   /' /tmp/dt-l.out
	same "dtrace -l -P listenq: hold, release, evict, timeout, overflow" \
	    "$(awk 'NR > 1 { print $NF }' /tmp/dt-l.out | sort | tr '\n' ' ')" \
	    "evict hold overflow release timeout "
	check "dtrace -lv: hold's arguments are typed (struct socket *, char *)" \
	    sh -c "dtrace -lv -n listenq:::hold | grep -q 'struct socket \\*'"
	check "listenq(4)'s example compiles: @[args[0]->sol_qlimit] = count()" \
	    dtrace -e -n 'listenq:::evict { @[args[0]->sol_qlimit] = count(); }'
	# A dataready listener of backlog 2 (room to hold 3) gets 6
	# connections 6 s after dtrace starts (it needs a moment to compile
	# and enable): 3 held, then the oldest evicted for each newer one;
	# 2 s later the peers close, and the connections still held are
	# released at their EOF. No `&`: lqinit connects and closes on its
	# own clock while dtrace runs in the foreground, for 14 s.
	ev0=$(lq stats.evicted)
	l=$(lqinit listen tcp4 127.0.0.1 5401 2 dataready)
	c=$(lqinit connect tcp4 127.0.0.1 5401 6 6000 2000)
	dtrace -q -o /tmp/dt.out -n '
	    listenq:::hold /args[0]->so_type == 1/ { printf("hold %s\n", stringof(args[2])); }
	    listenq:::release { printf("release %s\n", stringof(args[2])); }
	    listenq:::evict { printf("evict %s\n", stringof(args[2])); @ev[args[0]] = count(); }
	    listenq:::timeout { printf("timeout %s\n", stringof(args[2])); }
	    tick-200ms /++t == 70/ { exit(0); }
	    END { printa("evictions %p %@d\n", @ev); }' >/tmp/dt.err 2>&1
	ev1=$(lq stats.evicted)
	kill $l $c 2>/dev/null
	sed 's/^/#   /' /tmp/dt.err /tmp/dt.out
	holds=$(grep -c '^hold dataready$' /tmp/dt.out)
	evicts=$(grep -c '^evict oldest$' /tmp/dt.out)
	eofs=$(grep -c '^release eof$' /tmp/dt.out)
	held_max=$((holds - evicts))
	same "listenq:::hold fired for each of the 6 connections (filter dataready, args[0] typed)" "$holds" 6
	check "listenq:::evict fired with reason oldest ($evicts)" test "$evicts" -ge 1
	same "listenq:::release eof for each connection still held when its peer closed" \
	    "$eofs" "$held_max"
	check "an aggregation keyed by args[0] counted the evictions" \
	    grep -Eq "^evictions (0x)?[0-9a-f]+ +$evicts\$" /tmp/dt.out
	same "as many as kern.ipc.listenq.stats.evicted counted meanwhile" \
	    "$evicts" "$((ev1 - ev0))"
fi

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
