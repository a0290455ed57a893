"""Loading a user's driver file: ``--driver PATH`` (docs/drivers.md).

A driver file is plain Python that declares its ops (``model.decl.declare``
with ``device=`` and ``plugin=`` its kind), may declare planted bugs
(``model.bugs.declare`` with ``driver=`` its kind), and binds ``DRIVER`` to a
``model.driver.PluginDriver``.  Loading it imports it under a name made of
its content hash, checks it against the API (``model.driver.add_plugin``),
lets ``open`` make devices of its kind and clears the byte codec's tables.

Rules this module keeps:

* **One line, exit 2.**  A file that cannot be read, fails to import, or
  breaks the API gives a :class:`DriverLoadError` whose message names the
  file and the rule, never a traceback.
* **A driver is its content.**  Its identity is ``kind`` plus the SHA-256 of
  its bytes; a repro's ``# driver:`` header records both, and a trace that
  names a driver replays only with that very file loaded
  (:func:`check_headers`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from model import bugs, decl
from model.driver import PLUGINS, DriverError, PluginDriver, add_plugin

MAX_DRIVER_BYTES: Final = 4 << 20


class DriverLoadError(ValueError):
    """A driver file that cannot be used; the message is one line."""


@dataclass(frozen=True)
class LoadedDriver:
    kind: str
    path: str
    sha256: str

    @property
    def header(self) -> str:
        """The ``# driver:`` header value: ``kind sha256:HEX``."""
        return f"{self.kind} sha256:{self.sha256}"


LOADED: dict[str, LoadedDriver] = {}
"""Loaded drivers by kind."""
ENV: Final = "MIRRORFUZZ_DRIVERS"
"""Driver files a process loads at start (``os.pathsep``-separated): how a
campaign's worker processes get the coordinator's ``--driver`` files."""


def add_option(parser: Any) -> None:
    """``--driver FILE`` (repeatable) on a command's parser."""
    parser.add_argument("--driver", action="append", default=None, metavar="FILE",
                        help="load a driver plug-in (docs/drivers.md); repeatable")


def load_for(paths: list[str] | None) -> list[LoadedDriver]:
    """Load the ``--driver`` files and those of ``$MIRRORFUZZ_DRIVERS``, and
    export them all to the environment, so that worker processes load the
    same ones."""
    inherited = [p for p in os.environ.get(ENV, "").split(os.pathsep) if p]
    loaded = [load_driver(p) for p in [*inherited, *(paths or [])]]
    if loaded:
        os.environ[ENV] = os.pathsep.join(dict.fromkeys(d.path for d in loaded))
    return loaded


def load_driver(path: str | Path) -> LoadedDriver:
    """Load one driver file (idempotent for the same bytes)."""
    p = Path(path)
    where = str(p)
    try:
        if not p.is_file():
            raise DriverLoadError(f"{where}: not a regular file")
        data = p.read_bytes()
    except OSError as e:
        raise DriverLoadError(f"{where}: cannot read: {e.strerror or e}") from None
    if len(data) > MAX_DRIVER_BYTES:
        raise DriverLoadError(f"{where}: larger than {MAX_DRIVER_BYTES} bytes")
    digest = hashlib.sha256(data).hexdigest()
    for loaded in LOADED.values():
        if loaded.sha256 == digest:
            return loaded
    name = f"mirrorfuzz_driver_{digest[:16]}"
    spec = importlib.util.spec_from_file_location(name, p)
    if spec is None or spec.loader is None:
        raise DriverLoadError(f"{where}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    before = (set(decl.SCHEMA_BY_KEYWORD), set(bugs.REGISTRY))
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        driver = getattr(module, "DRIVER", None)
        if driver is None:
            raise DriverError("defines no DRIVER (a model.driver.PluginDriver)")
        if not isinstance(driver, PluginDriver):
            raise DriverError(f"DRIVER is a {type(driver).__name__}, "
                              "not a model.driver.PluginDriver")
        if driver.kind in LOADED:
            raise DriverError(f"kind {driver.kind!r} is already loaded from "
                              f"{LOADED[driver.kind].path}")
        add_plugin(driver)
    except (DriverError, decl.DeclarationError, ValueError) as e:
        _forget(name, before)
        raise DriverLoadError(f"{where}: {_one_line(e)}") from None
    except (Exception, SystemExit) as e:  # a driver's own import-time failure (or exit)
        _forget(name, before)
        raise DriverLoadError(f"{where}: failed to import: {type(e).__name__}: "
                              f"{_one_line(e)}") from None
    decl.add_device_kind(driver.kind)
    _codec_changed()
    loaded = LoadedDriver(driver.kind, str(p.resolve()), digest)
    LOADED[driver.kind] = loaded
    return loaded


def load_all(paths: list[str] | None) -> list[LoadedDriver]:
    return [load_driver(p) for p in paths or []]


def unload(kind: str) -> None:
    """Forget a loaded driver (tests)."""
    LOADED.pop(kind, None)
    PLUGINS.pop(kind, None)
    for d in [d for d in decl.declared() if d.plugin == kind]:
        decl.unregister(d.keyword)
    for bug in [b for b in bugs.all_bugs() if b.driver == kind]:
        bugs.REGISTRY.forget(bug.name)
    decl.remove_device_kind(kind)
    _codec_changed()


def check_headers(headers: tuple[tuple[str, str], ...], where: str) -> None:
    """``DriverLoadError`` unless every driver a trace's ``# driver:`` header
    names is loaded from the same bytes."""
    for key, value in headers:
        if key != "driver":
            continue
        for item in value.split(","):
            _check_one(item.strip(), where)


def _check_one(item: str, where: str) -> None:
    kind, _, digest = item.partition(" sha256:")
    loaded = LOADED.get(kind)
    if loaded is None:
        raise DriverLoadError(f"{where}: needs driver {kind!r} (--driver FILE)")
    if digest and loaded.sha256 != digest:
        raise DriverLoadError(f"{where}: made with another version of driver {kind!r} "
                              f"(sha256 {digest[:12]}..., loaded {loaded.sha256[:12]}...)")


def driver_header() -> str | None:
    """The ``# driver:`` header a repro made now should carry, if any."""
    return ", ".join(d.header for d in LOADED.values()) or None


def _forget(name: str, before: tuple[set[str], set[str]]) -> None:
    """Undo what a failed import declared."""
    sys.modules.pop(name, None)
    for keyword in set(decl.SCHEMA_BY_KEYWORD) - before[0]:
        decl.unregister(keyword)
    for bug in set(bugs.REGISTRY) - before[1]:
        bugs.REGISTRY.forget(bug)


def _codec_changed() -> None:
    from fuzz import codec

    codec.generation.cache_clear()


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__
