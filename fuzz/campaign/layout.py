"""The layout of a campaign directory: the contract between the campaign
runner (which writes it), ``mirrorfuzz report`` and ``mirrorfuzz promote``
(which read it), and ``--resume`` (which carries it on).

::

    OUT/
      campaign.json          the configuration (written atomically; keys below)
      stats.jsonl            one JSON object per line, appended (see below)
      findings/NAME.trace    minimized repros, one per cause (fuzz.corpus.save_repro),
                             headers: signature (the engine's), found-by (``campaign
                             ENGINE worker ID``); found-at (ISO 8601 UTC), mutant (when
                             one was on) and cause are written as the first comments
                             ``# found-at: ...``, ``# mutant: ...``, ``# cause: ...``
                             (fuzz.trace knows no such header keys), then the
                             annotations of fuzz.damage (``# judged-with:``,
                             ``# consequence:``, ``# first difference:``)
      findings/raw/NAME.trace  the first unminimized example of each signature, written
                             atomically before minimizing starts (same headers and comments)
      findings/quarantine/NAME a raw example (or a worker's finding file) that cannot be
                             read or parsed, set aside by --resume so that the campaign
                             goes on; the report names each one
      corpus/atheris/        the libFuzzer corpus (byte inputs; working data)
      corpus/traces/         readable traces the campaign found interesting
      hypothesis-db/         the Hypothesis example database (unless --db names another)
      workers/ID.log         each worker's output
      workers/ID/            a worker's scratch: findings/ (finding traces it wrote, until
                             the runner takes them) and libFuzzer's crash/oom/timeout files
      workers/coverage.log   the coverage passes' output
      coverage/              the coverage passes' working data (coverage.py data, the
                             entries replayed, summary.json, windows.json: the race
                             windows reached, fuzz.windows)
      report.html, report.md the report (mirrorfuzz report OUT)

``campaign.json`` keys (fuzz.campaign.config.CampaignConfig): ``time_s`` (the
first run's budget), ``jobs``, ``engine``, ``mutant``, ``seed``, ``db``,
``observe_every``, ``rss_limit_mb``, ``hang_s``, ``started``, ``version``.

Every line of ``stats.jsonl`` has ``kind``, ``t`` (seconds of campaign time,
counted on across resumes) and ``at`` (ISO 8601 UTC wall time).  Kinds:

* ``start`` / ``resume``: ``config`` (the campaign.json object).
* ``progress``: ``engines`` maps an engine name (``hypothesis``, ``atheris``)
  to ``{"workers", "execs", "steps", "execs_per_s", "steps_per_s"}`` (execs
  and steps cumulative over the campaign); ``coverage`` is
  ``{"lines": pct, "branches": pct}`` of ``model/`` or null before the first
  measurement; ``corpus`` (entries), ``findings`` (distinct causes),
  ``rss_mb`` (worker id -> resident MB), ``windows`` (``{"reached",
  "possible"}`` race windows, or null before the first count).
* ``finding``: ``signature``, ``path`` (the minimized repro, relative to OUT),
  ``raw`` (the raw example, relative to OUT), ``engine``, ``worker``,
  ``lines`` (step lines in the repro), ``cause`` (where the raw example's
  sides first differ: the finding's identity), ``seconds`` (minimization
  time), ``partial`` (``true``: cut by its time limit; ``unminimized``) and
  ``duplicate`` (``true``: a known cause; ``path`` is its first repro);
  ``signature`` is the repro's, the engine's (replayed with the repro's
  ``--observe-every``), and ``found_as``, present only when it differs, is
  the signature the engine saw (a repro saved before this rule).
* ``seen``: ``counts``, signature -> examples of a known cause met since
  (skipped by the workers or taken as duplicates), totals, written when
  they change.
* ``violation``: ``counts``, signature -> examples the workers judged a
  contract violation (``--contract registration-cache``: a finding after
  userspace remapped a range with device work in flight), totals, written
  when they change.
* ``worker``: ``worker``, ``engine``, ``event`` (``started``, ``finding`` --
  an Atheris worker stopping at a finding --, ``crashed``, ``hung``,
  ``oom``, ``restarted``), ``detail``.
* ``stop``: ``reason`` (``time``, ``interrupted``, ``disk``), and ``detail`` (the one
  line saying which write failed) for ``disk``.
* ``quarantine``: ``path`` (where the file went, relative to OUT), ``reason``.

Readers skip a line that does not parse (the last line of a campaign killed
mid-write) and kinds they do not know.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

CONFIG: Final = "campaign.json"
STATS: Final = "stats.jsonl"
FINDINGS: Final = "findings"
RAW: Final = "findings/raw"
QUARANTINE: Final = "findings/quarantine"
ATHERIS_CORPUS: Final = "corpus/atheris"
TRACE_CORPUS: Final = "corpus/traces"
HYPOTHESIS_DB: Final = "hypothesis-db"
WORKERS: Final = "workers"
REPORT_HTML: Final = "report.html"
REPORT_MD: Final = "report.md"


def path(out: str | Path, part: str) -> Path:
    """``OUT/part``."""
    return Path(out) / part
