#!/bin/bash -eu
# Builds the Atheris target fuzz/fuzz_trace.py for ClusterFuzzLite and OSS-Fuzz
# (oss-fuzz/build.sh runs this file).  It runs inside the
# base-builder-python image with $SRC, $OUT and $WORK set and the image's
# compile_python_fuzzer (PyInstaller) on PATH.  Outputs, in $OUT:
#   fuzz_trace                    the target (compile_python_fuzzer, PyInstaller)
#   fuzz_trace.dict               libFuzzer dictionary (fuzz/fuzz_trace.dict)
#   fuzz_trace.options            libFuzzer flags: dict, max_len, rss_limit_mb
#   fuzz_trace_seed_corpus.zip    encoded corpus/ traces (fuzz_trace.py --make-seeds)
# tests/unit/test_ossfuzz.py runs it with stub pip3 and compile_python_fuzzer.
set -euo pipefail

cd "$SRC/mirrorfuzz"

# The package and its dependencies (numpy, hypothesis), with the image's flags.
pip3 install .

# The target, fuzz/fuzz_trace.py, through its entry point for bundles
# (.clusterfuzzlite/fuzz_trace.py: see there why).  fuzz_trace imports atheris
# and the judged modules by name (importlib), which PyInstaller's import
# analysis cannot see: name atheris, and bundle every module of both packages.
compile_python_fuzzer .clusterfuzzlite/fuzz_trace.py \
    --hidden-import=atheris --collect-submodules=fuzz --collect-submodules=model

# Its dictionary, options and seed corpus, named after the target.
cp fuzz/fuzz_trace.dict "$OUT/fuzz_trace.dict"
seeds="${WORK:-/tmp}/fuzz_trace_seeds"
rm -rf "$seeds"
python3 fuzz/fuzz_trace.py --make-seeds "$seeds"
python3 -m fuzz.ossfuzz seeds-zip --from "$seeds" "$OUT/fuzz_trace_seed_corpus.zip"
python3 -m fuzz.ossfuzz options --seeds "$seeds" "$OUT/fuzz_trace.options"
