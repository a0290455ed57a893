"""A campaign's configuration: ``campaign.json``, durations, worker seeds.

Rules this module enforces:

* **One injected random choice.**  The campaign seed is ``--seed`` or, when
  none is given, drawn once from the operating system and recorded in
  ``campaign.json``; every worker seed is derived from it by hashing
  (:func:`worker_seed`), so the same seed gives the same worker seeds.
* **A corrupt ``campaign.json`` is bad input**: :func:`load_config` raises
  :class:`fuzz.errors.BadInput` with one line and changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from fuzz.campaign import layout
from fuzz.corpus import write_atomic
from fuzz.errors import BadInput

ENGINES: Final = ("hypothesis", "atheris")
ENGINE_CHOICES: Final = ("atheris", "hypothesis", "both")
DEFAULT_TIME: Final = 60.0
VERSION: Final = 1
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")
_UNIT: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, flag: str = "--time") -> float:
    """``90`` or ``90s``, ``15m``, ``8h``, ``1d`` -> seconds (BadInput, naming
    ``flag``, otherwise)."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or float(match.group(1)) <= 0:
        raise BadInput(f"{flag} {text!r}: expected a duration like 90s, 15m or 8h")
    return float(match.group(1)) * _UNIT[match.group(2)]


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def now_iso() -> str:
    """The wall time as ISO 8601 UTC, to the second."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class CampaignConfig:
    """What ``campaign.json`` holds (its keys are these fields)."""

    time_s: float = DEFAULT_TIME  # the time budget of the first run (seconds)
    jobs: int = 1  # worker processes
    engine: str = "both"  # atheris | hypothesis | both (workers alternate)
    mutant: str | None = None  # a planted bug switched on in the optimized side
    seed: int = 0  # the campaign seed; worker seeds derive from it
    db: str | None = None  # --db: the Hypothesis example database (None: OUT/hypothesis-db)
    observe_every: int = 4  # the Hypothesis workers' observation period (atheris: its own)
    rss_limit_mb: int = 2048  # a worker above this is killed and restarted (oom)
    hang_s: float = 120.0  # a worker silent this long is killed and restarted (hung)
    started: str = ""  # ISO 8601 UTC wall time of the first start
    version: int = VERSION

    def engine_of(self, worker: int) -> str:
        """The engine worker ``worker`` runs: with ``both``, they alternate."""
        if self.engine == "both":
            return ENGINES[worker % 2]
        return self.engine

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def worker_seed(seed: int, worker: int, session: int, generation: int) -> int:
    """The seed of a worker process: a hash of the campaign seed, the worker,
    the session (0, then one more per resume) and the restart count."""
    text = f"mirrorfuzz-campaign:{seed}:{worker}:{session}:{generation}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


def fresh_seed() -> int:
    """The one random draw of a campaign started without ``--seed``."""
    return int.from_bytes(os.urandom(4), "little")


def save_config(out: Path, config: CampaignConfig) -> None:
    write_atomic(layout.path(out, layout.CONFIG),
                 json.dumps(config.to_json(), indent=2, sort_keys=True) + "\n")


def load_config(out: Path) -> CampaignConfig:
    """The configuration in ``OUT/campaign.json``; BadInput if missing or corrupt."""
    path = layout.path(out, layout.CONFIG)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"{out}: not a campaign directory (no {layout.CONFIG})") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BadInput(f"{path}: corrupt campaign configuration ({_first_line(exc)})") from None
    if not isinstance(data, dict):
        raise BadInput(f"{path}: corrupt campaign configuration (not a JSON object)")
    known = {f.name: f for f in fields(CampaignConfig)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise BadInput(f"{path}: corrupt campaign configuration (unknown key {unknown[0]!r})")
    try:
        config = CampaignConfig(**data)
        _check(config)
    except (TypeError, ValueError) as exc:
        raise BadInput(f"{path}: corrupt campaign configuration ({_first_line(exc)})") from None
    return config


def _check(config: CampaignConfig) -> None:
    numbers = {"time_s": config.time_s, "jobs": config.jobs, "seed": config.seed,
               "observe_every": config.observe_every, "rss_limit_mb": config.rss_limit_mb,
               "hang_s": config.hang_s, "version": config.version}
    for name, value in numbers.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    if config.version != VERSION:
        raise ValueError(f"version {config.version} (this runner reads {VERSION})")
    if not isinstance(config.jobs, int) or config.jobs < 1:
        raise ValueError(f"jobs must be a whole number >= 1, got {config.jobs!r}")
    if config.engine not in ENGINE_CHOICES:
        raise ValueError(f"engine must be one of {', '.join(ENGINE_CHOICES)}")
    for name in ("mutant", "db", "started"):
        value = getattr(config, name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{name} must be a string")


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def default_out(cwd: Path | None = None) -> Path:
    """``./mirrorfuzz-campaign/<UTC timestamp>`` (a suffix if it exists)."""
    base = (cwd or Path.cwd()) / "mirrorfuzz-campaign"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out, k = base / stamp, 1
    while out.exists():
        k += 1
        out = base / f"{stamp}-{k}"
    return out
