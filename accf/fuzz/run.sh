#!/bin/sh
# `make fuzz`: every parser target under cargo-fuzz for FUZZ_SECONDS each
# (default 60), seeded from the real captures in ../tests/data. Findings
# land in artifacts/<target>/ and fail the run.
set -eu
cd "$(dirname "$0")"
secs=${FUZZ_SECONDS:-60}
if ! cargo fuzz --help >/dev/null 2>&1; then
	echo "fuzz: cargo-fuzz is not installed (cargo install cargo-fuzz)"
	exit 1
fi
# A nightly toolchain if rustup has one; otherwise the stable one unlocked
# with RUSTC_BOOTSTRAP (rustup's stable ships the ASan runtime).
if command -v rustup >/dev/null 2>&1 && rustup run nightly rustc --version >/dev/null 2>&1; then
	set -- cargo +nightly fuzz
else
	export RUSTC_BOOTSTRAP=1
	set -- cargo fuzz
fi
sh ./seed.sh
for t in dataready httpready dnsready tlsready af_arg; do
	echo "fuzz: $t for ${secs}s"
	"$@" run "$t" "corpus/$t" -- -max_total_time="$secs" -max_len=4096
done
echo "fuzz: no findings"
