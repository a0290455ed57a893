"""The Atheris target fuzz/fuzz_trace.py, as build.sh bundles it (compile_python_fuzzer).

Run as a script, fuzz/fuzz_trace.py first takes its own directory off
``sys.path`` (so that ``fuzz/trace.py`` cannot shadow the standard library's
``trace``).  In a PyInstaller bundle that directory is the bundle's own, where
atheris' native modules are, so the bundle would lose them: this entry point
imports the target as the module ``fuzz.fuzz_trace`` instead and runs its
``main``, which is the same program.  The bundle's name comes from this
file's: ``$OUT/fuzz_trace``.
"""

import sys

from fuzz.fuzz_trace import main

if __name__ == "__main__":
    sys.exit(main())
