"""A campaign's configuration: ``campaign.json``, durations, worker seeds.

Rules this module enforces:

* **One injected random choice.**  The campaign seed is ``--seed`` or, when
  none is given, drawn once from the operating system and recorded in
  ``campaign.json``; every worker seed is derived from it by hashing
  (:func:`worker_seed`), so the same seed gives the same worker seeds.
* **A corrupt ``campaign.json`` is bad input**: :func:`load_config` raises
  :class:`fuzz.errors.BadInput` with one line and changes nothing.  It is
  read only as a regular file of at most 1 MB (fuzz.safeio), as strict JSON
  (no NaN, Infinity, 1e400, deep nesting), and every key must be there with
  a value of its type in its range: a known mutant, a seed that is a whole
  number, ``hang_s`` of at least :data:`MIN_HANG_S`, ``rss_limit_mb`` of at
  least :data:`MIN_RSS_MB`, a ``db`` that ``--db`` would accept.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from fuzz import contracts, safeio, validate
from fuzz.campaign import layout
from fuzz.errors import BadInput, check_mutant
from fuzz.profiles import CAMPAIGN
from fuzz.safeio import write_atomic

ENGINES: Final = ("hypothesis", "atheris")
ENGINE_CHOICES: Final = ("atheris", "hypothesis", "both")
DEFAULT_TIME: Final = 60.0
VERSION: Final = 1
MIN_RSS_MB: Final = 128
"""The smallest ``--rss-limit``: below it a worker cannot even import numpy."""
MAX_RSS_MB: Final = 1 << 24
MIN_HANG_S: Final = 5.0
"""The shortest ``--hang``: a worker needs seconds to start and report progress."""
MAX_JOBS_RECORDED: Final = 4096
MAX_SEED: Final = (1 << 64) - 1


def parse_duration(text: str, flag: str = "--time") -> float:
    """``90`` or ``90s``, ``15m``, ``8h``, ``1d`` -> seconds, at most a year
    (BadInput, naming ``flag``, otherwise)."""
    low = MIN_HANG_S - 1e-9 if flag == "--hang" else 0.0
    return validate.duration(text, flag, low=low)


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
    contract: str = contracts.DEFAULT  # the contract findings are judged under (fuzz/contracts.py)
    seed: int = 0  # the campaign seed; worker seeds derive from it
    db: str | None = None  # --db: the Hypothesis example database (None: OUT/hypothesis-db)
    observe_every: int = CAMPAIGN.observe_every  # the Hypothesis workers' (atheris: its own)
    rss_limit_mb: int = 2048  # a worker above this is killed and restarted (oom)
    hang_s: float = 120.0  # a worker silent this long is killed and restarted (hung)
    started: str = ""  # ISO 8601 UTC wall time of the first start
    version: int = VERSION
    drivers: str = ""  # --driver files, absolute, os.pathsep-separated (docs/drivers.md)
    driver_ids: str = ""  # their "kind sha256:HEX" list: a resume needs the same bytes

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
    if safeio.describe(path) == "absent":
        raise BadInput(f"{out}: not a campaign directory (no {layout.CONFIG})")
    data = safeio.read_bytes(path, limit=safeio.MAX_JSON_BYTES)
    try:
        config = config_from_json(safeio.loads_json(data))
    except (TypeError, ValueError) as exc:
        raise BadInput(f"{path}: corrupt campaign configuration "
                       f"({safeio.first_line(exc)})") from None
    except BadInput as exc:
        raise BadInput(f"{path}: corrupt campaign configuration ({exc})") from None
    return config


def config_from_json(data: object) -> CampaignConfig:
    """A configuration from its JSON object, every field typed and in range
    (``ValueError``, or ``BadInput`` for a bad mutant or database)."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    known = [f.name for f in fields(CampaignConfig)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"unknown key {unknown[0][:40]!r}")
    missing = [k for k in known if k not in data and k not in OPTIONAL_KEYS]
    if missing:
        raise ValueError(f"no {missing[0]!r}")
    n = safeio.field_number
    if n(data, "version", low=VERSION, high=VERSION, integer=True) != VERSION:
        raise ValueError(f"version (this runner reads {VERSION})")
    drivers = str(safeio.field_text(data, "drivers", optional=True) or "")
    driver_ids = str(safeio.field_text(data, "driver_ids", optional=True) or "")
    _load_drivers(drivers, driver_ids)  # before the mutant is checked: it may be a driver's
    config = CampaignConfig(
        time_s=float(n(data, "time_s", low=1e-3, high=validate.MAX_SECONDS)),
        jobs=int(n(data, "jobs", low=1, high=MAX_JOBS_RECORDED, integer=True)),
        engine=str(safeio.field_text(data, "engine")),
        mutant=safeio.field_text(data, "mutant", optional=True),
        contract=str(safeio.field_text(data, "contract", optional=True) or contracts.DEFAULT),
        seed=int(n(data, "seed", low=0, high=MAX_SEED, integer=True)),
        db=safeio.field_text(data, "db", optional=True, limit=validate.PATH_MAX),
        observe_every=int(n(data, "observe_every", low=0, high=1 << 20, integer=True)),
        rss_limit_mb=int(n(data, "rss_limit_mb", low=MIN_RSS_MB, high=MAX_RSS_MB,
                           integer=True)),
        hang_s=float(n(data, "hang_s", low=MIN_HANG_S, high=validate.MAX_SECONDS)),
        started=str(safeio.field_text(data, "started")),
        version=VERSION, drivers=drivers, driver_ids=driver_ids)
    if config.engine not in ENGINE_CHOICES:
        raise ValueError(f"engine must be one of {', '.join(ENGINE_CHOICES)}")
    check_mutant(config.mutant, "mutant")
    contracts.check_name(config.contract)
    if config.db is not None:
        validate.database(config.db, "db")
    return config


OPTIONAL_KEYS: Final = frozenset({"drivers", "driver_ids", "contract"})
"""Keys a campaign.json written before drivers (or contracts) existed lacks."""


def _load_drivers(drivers: str, driver_ids: str) -> None:
    """Load the campaign's driver files; BadInput unless they are the bytes
    the campaign began with."""
    from fuzz.plugins import DriverLoadError, driver_header, load_for

    if not drivers:
        return
    try:
        load_for([p for p in drivers.split(os.pathsep) if p])
    except DriverLoadError as exc:
        raise BadInput(str(exc)) from None
    loaded = {item.strip() for item in (driver_header() or "").split(",")}
    wanted = {item.strip() for item in driver_ids.split(",") if item.strip()}
    if not wanted <= loaded:
        raise BadInput(f"a driver file changed since the campaign began (it was: {driver_ids})")


def driver_fields() -> tuple[str, str]:
    """``drivers`` and ``driver_ids`` for a new campaign: the loaded drivers."""
    from fuzz.plugins import LOADED, driver_header

    return os.pathsep.join(d.path for d in LOADED.values()), driver_header() or ""


def default_out(cwd: Path | None = None) -> Path:
    """``./mirrorfuzz-campaign/<UTC timestamp>`` (a suffix if it exists)."""
    base = (cwd or Path.cwd()) / "mirrorfuzz-campaign"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out, k = base / stamp, 1
    while out.exists():
        k += 1
        out = base / f"{stamp}-{k}"
    return out
