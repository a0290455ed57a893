"""The ``mirrorfuzz report`` and ``mirrorfuzz promote`` commands.

* ``mirrorfuzz report DIR`` writes ``DIR/report.html`` and ``DIR/report.md``
  (fuzz.campaign.report), prints their paths and a short summary; exit 0.
* ``mirrorfuzz promote DIR [NAME_OR_SIGNATURE ...] [--all] [--to DIR]
  [--allow-mutant]`` copies chosen repros of ``DIR/findings/`` into the
  corpus (fuzz.campaign.promote).  With no name and no ``--all`` it lists the
  candidates and copies nothing (exit 0).  Exit 0 when every chosen repro is
  in the corpus afterwards (new or already there), 1 when any was refused
  (fails the corpus checks, found under a mutant, cannot be written); the
  others are still promoted.

Bad input (no such directory, not a campaign, a corrupt ``campaign.json``, a
name that picks no finding) is :class:`fuzz.errors.BadInput`: one line, exit
2, nothing written.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fuzz.campaign import layout
from fuzz.campaign import promote as promoting
from fuzz.campaign.report import load_campaign, load_config, summary, write_campaign_report
from fuzz.errors import BadInput

EXIT_OK, EXIT_REFUSED = 0, 1
SHORT_SUMMARY = ("duration", "state", "execs", "steps", "coverage of model/", "findings",
                 "worker restarts", "quarantined")


def cmd_report(args: argparse.Namespace) -> int:
    campaign = load_campaign(Path(args.dir))
    html_path, md_path = write_campaign_report(campaign)
    print(f"wrote {html_path}")
    print(f"wrote {md_path}")
    for key, text in summary(campaign):
        if key in SHORT_SUMMARY or (key == "stats.jsonl" and (campaign.skipped
                                                               or campaign.unknown)):
            print(f"{key}: {text}")
    return EXIT_OK


def cmd_promote(args: argparse.Namespace) -> int:
    out, to = Path(args.dir), Path(args.to)
    config = load_config(out)
    if args.all and args.names:
        raise BadInput("give finding names or --all, not both")
    found = promoting.candidates(out, config)
    if not args.all and not args.names:
        where = layout.path(out, layout.FINDINGS)
        if not found:
            print(f"no findings in {where}")
            return EXIT_OK
        print(f"{len(found)} findings in {where}:")
        for line in promoting.listing(found, to):
            print(line)
        print(f"promote with: mirrorfuzz promote {out} NAME_OR_SIGNATURE ... (or --all)")
        return EXIT_OK
    chosen = found if args.all else promoting.choose(found, args.names)
    promoting.check_target(to)
    outcomes = [promoting.promote(c, to, allow_mutant=args.allow_mutant) for c in chosen]
    for outcome in outcomes:
        for line in outcome.lines:
            print(line)
    refused = sum(not o.ok for o in outcomes)
    new = sum(o.status == "promoted" for o in outcomes)
    print(f"{new} promoted, {sum(o.status == 'present' for o in outcomes)} already in the "
          f"corpus, {refused} not promoted, of {len(outcomes)} chosen")
    return EXIT_REFUSED if refused else EXIT_OK


def register(sub: Any) -> None:
    """Add ``report`` and ``promote`` to the ``mirrorfuzz`` subparsers."""
    report = sub.add_parser("report", help="write a campaign's report.html and report.md")
    report.add_argument("dir", help="the campaign directory")
    report.set_defaults(func=cmd_report)

    promote = sub.add_parser("promote", help="copy a campaign's repros into the corpus")
    promote.add_argument("dir", help="the campaign directory")
    promote.add_argument("names", nargs="*", metavar="NAME_OR_SIGNATURE",
                         help="findings to promote: file name, stem or signature "
                              "(none: list the candidates)")
    promote.add_argument("--all", action="store_true", help="promote every finding")
    promote.add_argument("--to", default="corpus/repros", metavar="DIR",
                         help="the corpus repros directory (default: corpus/repros)")
    promote.add_argument("--allow-mutant", action="store_true",
                         help="promote repros found under a mutant too")
    promote.set_defaults(func=cmd_promote)
