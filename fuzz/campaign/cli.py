"""``mirrorfuzz campaign``: run, or carry on, a fuzzing campaign.

Exit status: 0 when the campaign has no finding, 1 when it has (in this run
or an earlier one of the same directory), 2 for bad input (one line).
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from fuzz import contracts, validate
from fuzz.campaign import layout
from fuzz.campaign.config import (
    DEFAULT_TIME,
    ENGINE_CHOICES,
    MAX_RSS_MB,
    MAX_SEED,
    MIN_RSS_MB,
    CampaignConfig,
    default_out,
    driver_fields,
    format_duration,
    fresh_seed,
    load_config,
    now_iso,
    parse_duration,
)
from fuzz.errors import BadInput, check_mutant
from fuzz.safeio import describe

EXIT_OK, EXIT_FOUND = 0, 1
_DISK_FULL = (os.strerror(errno.ENOSPC), os.strerror(errno.EROFS), os.strerror(errno.EDQUOT))


def register(sub: Any) -> None:
    """Add the ``campaign`` subcommand to ``mirrorfuzz``'s subparsers."""
    p = sub.add_parser("campaign", help="run a fuzzing campaign with worker processes",
                       description="Run Hypothesis and Atheris workers for a while; findings "
                       "are deduplicated, minimized and saved under OUT/findings/.")
    p.add_argument("--time", default=None, metavar="DURATION",
                   help="how long to run: 90s, 15m, 8h (default 60s; with --resume: "
                        "the extra time, else what is left of the first run's)")
    p.add_argument("--jobs", default=None, metavar="N",
                   help="worker processes (default: one per core)")
    p.add_argument("--engine", default=None, choices=ENGINE_CHOICES,
                   help="which engine the workers run (default both: they alternate)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="the campaign directory (default ./mirrorfuzz-campaign/<time>)")
    p.add_argument("--mutant", default=None, metavar="NAME",
                   help="switch on a planted bug by name")
    p.add_argument("--contract", default=None, choices=list(contracts.CONTRACTS),
                   help="the contract findings are judged under (default hmm; "
                        "docs/the-2019-argument.md): under registration-cache a finding "
                        "after userspace remapped a range with device work in flight is "
                        "counted apart as a contract violation")
    p.add_argument("--seed", default=None, metavar="N",
                   help="the campaign seed (worker seeds derive from it; default random)")
    p.add_argument("--resume", default=None, metavar="DIR",
                   help="carry on the campaign in DIR")
    p.add_argument("--db", default=None, metavar="SPEC",
                   help="the Hypothesis example database (default OUT/hypothesis-db)")
    p.add_argument("--hang", default=None, metavar="DURATION",
                   help="a worker with no progress for this long is killed and restarted "
                        "(default 2m; a hang is recorded, never a finding)")
    p.add_argument("--rss-limit", default=None, metavar="MB",
                   help="a worker above this resident memory is killed and restarted "
                        "(default 2048)")
    from fuzz.plugins import add_option

    add_option(p)
    p.set_defaults(func=cmd_campaign)


def _atheris_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("atheris") is not None


def _config(args: argparse.Namespace) -> tuple[Path, CampaignConfig, float, bool]:
    """(OUT, configuration, seconds to run, resumed) from the arguments."""
    jobs, note = (None, None) if args.jobs is None else validate.jobs(args.jobs)
    seed = None if args.seed is None else validate.whole(args.seed, "--seed", 0, MAX_SEED)
    extra = None if args.time is None else parse_duration(args.time)
    hang_s = None if args.hang is None else parse_duration(args.hang, "--hang")
    rss_mb = None if args.rss_limit is None else validate.whole(
        args.rss_limit, "--rss-limit", MIN_RSS_MB, MAX_RSS_MB)

    def limited(config: CampaignConfig) -> CampaignConfig:
        """``config`` with the worker limits given (for this run, with --resume)."""
        return replace(config, hang_s=config.hang_s if hang_s is None else hang_s,
                       rss_limit_mb=config.rss_limit_mb if rss_mb is None else rss_mb)
    check_mutant(args.mutant)
    if args.db is not None:
        validate.database(args.db)
        if "://" in args.db:
            from fuzz.dbs import open_database

            open_database(args.db, Path("."))  # a server that does not answer: bad input now
    if args.resume is not None:
        out = validate.out_dir(args.resume, "--resume")
        if args.out is not None and validate.out_dir(args.out).resolve() != out.resolve():
            raise BadInput("--resume DIR carries on DIR: --out names another directory")
        if describe(out) == "absent":
            raise BadInput(f"--resume {args.resume}: no such directory")
        config = load_config(out)
        from fuzz.campaign.runner import check_layout
        from fuzz.campaign.stats import read_stats, totals

        check_layout(out, config)
        before = totals(read_stats(out).lines)
        for name, given in (("mutant", args.mutant), ("contract", args.contract),
                            ("engine", args.engine),
                            ("seed", seed), ("db", args.db)):
            if given is not None and given != getattr(config, name):
                raise BadInput(f"--{name} {given}: --resume keeps the campaign's "
                               f"{name} ({getattr(config, name)})")
        if jobs is not None:
            config = replace(config, jobs=jobs)
        elif config.jobs > validate.max_jobs():
            capped, note = validate.jobs(str(config.jobs), "jobs")
            config = replace(config, jobs=capped)
        config = limited(config)
        time_s = extra if extra is not None else config.time_s - before.t
        if time_s <= 0:
            raise BadInput(f"{out}: the campaign already ran its "
                           f"{format_duration(config.time_s)}; give --time for more")
        args.jobs_note = note
        return out, config, time_s, True
    out = validate.out_dir(args.out) if args.out is not None else default_out()
    if out.exists() and any(out.iterdir()):
        from fuzz.campaign.runner import locked

        if locked(out):
            raise BadInput(f"--out {out}: another mirrorfuzz campaign is running there")
        if layout.path(out, layout.CONFIG).exists():
            raise BadInput(f"--out {out}: a campaign is there already; "
                           f"carry it on with --resume {out}")
        raise BadInput(f"--out {out}: a directory that is not empty (and not a campaign)")
    engine = args.engine or "both"
    if engine == "atheris" and not _atheris_available():
        raise BadInput("--engine atheris: atheris is not installed (pip install '.[fuzz]')")
    if engine == "both" and not _atheris_available():
        engine = "hypothesis"
        print("mirrorfuzz: atheris is not installed: every worker runs hypothesis",
              file=sys.stderr)
    time_s = extra if extra is not None else DEFAULT_TIME
    config = CampaignConfig(time_s=time_s, jobs=jobs or os.cpu_count() or 1, engine=engine,
                            mutant=args.mutant, contract=args.contract or contracts.DEFAULT,
                            seed=fresh_seed() if seed is None else seed,
                            db=args.db, started=now_iso())
    drivers, driver_ids = driver_fields()
    config = replace(config, drivers=drivers, driver_ids=driver_ids)
    args.jobs_note = note
    return out, limited(config), time_s, False


def cmd_campaign(args: argparse.Namespace) -> int:
    from fuzz.campaign.progress import Display
    from fuzz.campaign.runner import lock, run, write_report

    out, config, time_s, resumed = _config(args)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"{out}: cannot create: {exc.strerror or exc}") from None
    if not out.is_dir():
        raise BadInput(f"{out}: {describe(out)}, not a directory")
    held = lock(out)  # one coordinator per directory, until this process ends
    if getattr(args, "jobs_note", None):  # printed once nothing can fail as bad input
        print(args.jobs_note, file=sys.stderr)
    what = "resuming" if resumed else "campaign"
    judged = f", mutant {config.mutant}" if config.mutant else ""
    if config.contract != contracts.DEFAULT:
        judged += f", contract {config.contract}"
    print(f"mirrorfuzz: {what} {out}: {config.jobs} workers ({config.engine}{judged}), "
          f"seed {config.seed}, {format_duration(time_s)}", flush=True)
    display = Display()
    try:
        reason, findings, problem = run(out, config, time_s, resumed=resumed, display=display)
    finally:
        display.close()
        held.close()
    if problem is not None:  # a full or read-only disk: everything written is kept
        print(f"mirrorfuzz: stopped: {findings} distinct findings in {out / layout.FINDINGS}; "
              f"{problem}; carry on with --resume {out} once the disk takes writes again",
              flush=True)
        raise BadInput(problem)
    try:
        report = write_report(out)
    except Exception as exc:  # the report is a view: the campaign's files are all there
        full = next((text for text in _DISK_FULL if text in str(exc)), None)
        if full is not None:  # a full or read-only disk at the last write: a disk stop
            problem = f"cannot write {out / 'report.html'}: {full}"
            print(f"mirrorfuzz: stopped: {findings} distinct findings in "
                  f"{out / layout.FINDINGS}; {problem}; carry on with --resume {out} once the "
                  "disk takes writes again", flush=True)
            raise BadInput(problem) from None
        print(f"mirrorfuzz: no report ({type(exc).__name__}: {exc}); "
              f"try: mirrorfuzz report {out}", file=sys.stderr)
        report = None
    if report is not None:
        print(f"report: {report[0]} {report[1]}")
    verb = "interrupted" if reason == "interrupted" else "done"
    print(f"mirrorfuzz: {verb}: {findings} distinct findings in {out / layout.FINDINGS}"
          + (f"; carry on with --resume {out}" if reason == "interrupted" else ""))
    return EXIT_FOUND if findings else EXIT_OK
