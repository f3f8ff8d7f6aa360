#!/bin/sh
# Fails unless listenq.ko is shaped as sys/conf/kmod.mk shapes a module:
# a GNU build-id, no defined global symbol (EXPORT_SYMS=NO: the kernel
# finds the module through its linker sets, and a global would be visible
# to every module loaded after it), no debug sections, and a
# .gnu_debuglink to a listenq.ko.debug with the same build-id.
set -eu
ko=${1:-listenq.ko}
dbg=$ko.debug
READELF=${READELF:-readelf}
NM=${NM:-nm}
for t in "$READELF" "$NM"; do
	command -v "$t" >/dev/null 2>&1 || { echo "not ok - module shape: no $t"; exit 1; }
done
bad=
id=$("$READELF" -n "$ko" 2>/dev/null | awk '/Build ID:/ { print $3 }')
[ -n "$id" ] || bad="$bad; no .note.gnu.build-id"
globals=$("$NM" -g "$ko" | awk 'NF == 3 { print $3 }' | head -n 5)
[ -z "$globals" ] || bad="$bad; defined global symbols: $(echo $globals)"
"$READELF" -SW "$ko" | grep -q '\.debug_' && bad="$bad; debug sections left in"
"$READELF" -SW "$ko" | grep -q '\.gnu_debuglink' || bad="$bad; no .gnu_debuglink"
if [ -f "$dbg" ]; then
	did=$("$READELF" -n "$dbg" 2>/dev/null | awk '/Build ID:/ { print $3 }')
	[ "$did" = "$id" ] || bad="$bad; $dbg build-id '$did' is not the module's"
	"$READELF" -SW "$dbg" | grep -q '\.debug_info' || bad="$bad; $dbg has no .debug_info"
else
	bad="$bad; no $dbg"
fi
if [ -n "$bad" ]; then
	echo "not ok - module shape: $ko${bad}"
	exit 1
fi
echo "ok - module shape: $ko has build-id $id, no defined globals, debug split into $(basename "$dbg")"
