#!/bin/sh
# Fails if listenq.ko carries a relocation type the amd64 kernel linker
# (sys/amd64/amd64/elf_machdep.c) refuses: kldload would fail on it.
set -eu
ko=${1:-listenq.ko}
READELF=${READELF:-}
if [ -z "$READELF" ]; then
	for c in readelf llvm-readelf llvm-readelf-16 llvm-readelf-14; do
		if command -v "$c" >/dev/null 2>&1; then READELF=$c; break; fi
	done
fi
[ -n "$READELF" ] || { echo "not ok - relocation check: no readelf"; exit 1; }
types=$("$READELF" -rW "$ko" | awk '/R_X86_64_/ {print $3}' | sort -u)
bad=$(printf '%s\n' $types | grep -vE '^R_X86_64_(NONE|64|PC32|PLT32|32S|GLOB_DAT|JMP_SLOT|RELATIVE|IRELATIVE)$' || true)
if [ -z "$types" ]; then
	echo "not ok - relocation check: $ko has no relocations at all (not a kernel module?)"
	exit 1
fi
if [ -n "$bad" ]; then
	echo "not ok - relocation check: $ko has relocations kldload refuses: $(echo $bad)"
	exit 1
fi
echo "ok - relocation check: $ko uses only $(echo $types)"
