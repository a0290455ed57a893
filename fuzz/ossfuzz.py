"""The files OSS-Fuzz and ClusterFuzzLite want beside the Atheris target.

Their build script (``.clusterfuzzlite/build.sh``, which ``oss-fuzz/build.sh``
runs) bundles ``fuzz/fuzz_trace.py`` into ``$OUT/fuzz_trace`` and puts
beside it, named after it:

* ``fuzz_trace.dict``: a copy of ``fuzz/fuzz_trace.dict``;
* ``fuzz_trace.options``: libFuzzer flags (:func:`options_text`): the
  dictionary, ``max_len`` (at least :data:`MAX_LEN`, and the largest seed),
  ``rss_limit_mb``;
* ``fuzz_trace_seed_corpus.zip``: the seeds ``fuzz/fuzz_trace.py
  --make-seeds`` writes (``fuzz.codec.encode`` of each corpus trace), one
  entry each, in name order, with fixed dates, so that the same corpus gives
  the same bytes.

Usage (from the repository root)::

    python -m fuzz.ossfuzz seeds-zip [--from SEEDS_DIR] OUT.zip
    python -m fuzz.ossfuzz options [--seeds SEEDS_DIR] OUT.options

Without ``--from`` the seeds are made from ``corpus/`` first.  A missing or
empty seed directory is an error (one line, exit 2): a build without seeds
is a broken build.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from fuzz.errors import BadInput
from fuzz.seeds import DEFAULT_SOURCES, SUFFIX, make_seeds

TARGET: Final = "fuzz_trace"
DICT_NAME: Final = f"{TARGET}.dict"
MAX_LEN: Final = 4096
"""Bytes: the codec stops at 200 lines, and corpus seeds are under 2 KB."""
RSS_LIMIT_MB: Final = 2560
ZIP_DATE: Final = (1980, 1, 1, 0, 0, 0)


def seed_files(directory: str | Path) -> list[Path]:
    """The ``*.seed`` files of ``directory``, by name; :class:`BadInput` if none."""
    path = Path(directory)
    if not path.is_dir():
        raise BadInput(f"{path}: no such seed directory")
    found = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(SUFFIX))
    if not found:
        raise BadInput(f"{path}: no {SUFFIX} files (make them with "
                       f"fuzz/fuzz_trace.py --make-seeds {path})")
    return found


def write_seed_zip(out: str | Path, seeds: str | Path | None = None,
                   sources: Sequence[str | Path] = DEFAULT_SOURCES) -> list[str]:
    """Zip the seeds in ``seeds`` (or made from ``sources``) into ``out``; the entry names."""
    if seeds is None:
        with tempfile.TemporaryDirectory(prefix="mirrorfuzz-seeds-") as made:
            make_seeds(made, sources)
            return write_seed_zip(out, made)
    files = seed_files(seeds)
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            info = zipfile.ZipInfo(path.name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())
    partial.replace(target)
    return [path.name for path in files]


def options_text(max_len: int = MAX_LEN, rss_limit_mb: int = RSS_LIMIT_MB,
                 dict_name: str = DICT_NAME) -> str:
    """The ``.options`` file: libFuzzer flags, read by OSS-Fuzz and ClusterFuzzLite."""
    return (f"[libfuzzer]\ndict = {dict_name}\nmax_len = {max_len}\n"
            f"rss_limit_mb = {rss_limit_mb}\n")


def write_options(out: str | Path, seeds: str | Path | None = None,
                  rss_limit_mb: int = RSS_LIMIT_MB, dict_name: str = DICT_NAME) -> str:
    """Write :func:`options_text` to ``out``, ``max_len`` covering every seed in ``seeds``."""
    largest = max((p.stat().st_size for p in seed_files(seeds)), default=0) if seeds else 0
    text = options_text(max(MAX_LEN, largest), rss_limit_mb, dict_name)
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fuzz.ossfuzz", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    zipped = commands.add_parser("seeds-zip", help="the seed corpus zip")
    zipped.add_argument("--from", dest="seeds", metavar="SEEDS_DIR",
                        help="seeds made by fuzz/fuzz_trace.py --make-seeds "
                             "(default: made from corpus/ now)")
    zipped.add_argument("out", metavar="OUT.zip")
    options = commands.add_parser("options", help="the libFuzzer .options file")
    options.add_argument("--seeds", metavar="SEEDS_DIR",
                         help="raise max_len to the largest seed here")
    options.add_argument("--rss-limit-mb", type=int, default=RSS_LIMIT_MB)
    options.add_argument("--dict", dest="dict_name", default=DICT_NAME,
                         help="the dictionary's name beside the target")
    options.add_argument("out", metavar="OUT.options")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "seeds-zip":
            names = write_seed_zip(args.out, args.seeds)
            print(f"ossfuzz: wrote {len(names)} seeds to {args.out}")
        else:
            if args.rss_limit_mb <= 0:
                raise BadInput(f"--rss-limit-mb {args.rss_limit_mb}: not a positive number")
            write_options(args.out, args.seeds, args.rss_limit_mb, args.dict_name)
            print(f"ossfuzz: wrote {args.out}")
    except (BadInput, OSError) as exc:
        print(f"ossfuzz: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
