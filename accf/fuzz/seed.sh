#!/bin/sh
# Builds starting corpora from the captured protocol samples in
# ../tests/data. Filter targets read two control bytes (extension flags,
# chunking seed) before the stream; the seeds use a few flag settings so
# the fuzzer starts inside every extension.
set -eu
cd "$(dirname "$0")"
for t in dataready httpready dnsready tlsready; do
    mkdir -p "corpus/$t"
    for f in ../tests/data/*.bin; do
        for flags in 00 05 0e 21 22; do
            { printf "\\x$flags\\x07"; cat "$f"; } > "corpus/$t/$flags-$(basename "$f")"
        done
    done
done
mkdir -p corpus/af_arg
printf 'proxy=required,timeout=1500,ontimeout=drop' > corpus/af_arg/all
printf 'methods=all,h2,parsehttpversion=0' > corpus/af_arg/http
printf 'clienthello,proxy' > corpus/af_arg/tls
