#!/bin/bash -eu
# projects/mirrorfuzz/build.sh for OSS-Fuzz.  The steps (pip3 install .,
# compile_python_fuzzer for the target fuzz/fuzz_trace.py, fuzz_trace.dict,
# fuzz_trace.options, fuzz_trace_seed_corpus.zip) live in the repository, so
# that they change with the code they build: see .clusterfuzzlite/build.sh.
set -euo pipefail
exec bash "$SRC/mirrorfuzz/.clusterfuzzlite/build.sh"
