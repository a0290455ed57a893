"""Reading and writing files a careless or unlucky user hands us.

Rules this module enforces, for every command:

* **Only regular files are read, with a size bound.**  :func:`read_bytes`
  opens without blocking (a FIFO never hangs it), refuses anything that is
  not a regular file once open (a device, a FIFO, a directory, a socket) and
  anything longer than its ``limit`` (``/dev/zero`` behind a symbolic link
  never makes it read until memory runs out).  Every refusal is a
  :class:`ReadError`, a :class:`~fuzz.errors.BadInput` whose text says what
  is actually wrong (``not a regular file (a FIFO)``, ``a dangling symbolic
  link``, ``too large``), never "no such file" for a file that is there.
* **Writing never replaces what is not a regular file.**  :func:`write_atomic`
  writes a temporary file next to the target and renames it over the target
  only when the target is absent or a regular file; a symbolic link is
  followed (its target is replaced, not the link); a device, FIFO, socket or
  directory is refused with a :class:`WriteError` and left as it is.
* **JSON is strict**: :func:`loads_json` rejects ``NaN``, ``Infinity``, a
  number that overflows to infinity (``1e400``), nesting deeper than
  :data:`MAX_JSON_DEPTH`, and gives every failure as a ``ValueError`` with a
  one-line message.  :func:`field_number` and :func:`field_text` type the
  fields read from it.
"""

from __future__ import annotations

import errno
import json
import math
import os
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO, Final

from fuzz.errors import BadInput

MAX_TRACE_BYTES: Final = 16 << 20
"""The largest trace file read (a long campaign finding is well under 1 MB)."""
MAX_JSON_BYTES: Final = 1 << 20
"""The largest small JSON file read (``campaign.json``, a minimizer's result)."""
MAX_STATS_BYTES: Final = 512 << 20
"""The largest ``stats.jsonl`` read (a progress line every 10 s for a year is ~1.6 GB;
half of that would be a very long campaign)."""
MAX_JSON_DEPTH: Final = 32
READ_CHUNK: Final = 1 << 20


class ReadError(BadInput):
    """A file that cannot be read as the regular file asked for."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


class WriteError(BadInput):
    """A path that must not be written (not a regular file)."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def kind_of(mode: int) -> str:
    """What a file of this ``st_mode`` is, as an error message says it."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISREG(mode):
        return "a regular file"
    return "not a regular file"


def describe(path: str | Path) -> str:
    """What is at ``path``: ``absent``, ``a dangling symbolic link``, ``a FIFO`` ..."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "a dangling symbolic link" if os.path.islink(path) else "absent"
    except OSError as exc:
        return f"unreachable ({exc.strerror or exc})"
    return kind_of(st.st_mode)


def _size(n: int) -> str:
    return f"{n / (1 << 20):.1f} MB" if n >= 1 << 20 else f"{n} bytes"


def _open_regular(path: str | Path) -> tuple[int, os.stat_result]:
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        if os.path.islink(path):
            raise ReadError(path, "a dangling symbolic link") from None
        raise ReadError(path, "no such file") from None
    except PermissionError:
        raise ReadError(path, "permission denied") from None
    except OSError as exc:
        raise ReadError(path, f"cannot read: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
    except OSError as exc:
        os.close(fd)
        raise ReadError(path, f"cannot read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise ReadError(path, f"not a regular file ({kind_of(st.st_mode)})")
    return fd, st


def read_bytes(path: str | Path, *, limit: int = MAX_TRACE_BYTES) -> bytes:
    """The contents of the regular file ``path``, at most ``limit`` bytes
    (:class:`ReadError` otherwise)."""
    fd, st = _open_regular(path)
    try:
        if st.st_size > limit:
            raise ReadError(path, f"too large ({_size(st.st_size)}; at most {_size(limit)} "
                                  "is read)")
        os.set_blocking(fd, True)
        chunks: list[bytes] = []
        total = 0
        while total <= limit:
            chunk = os.read(fd, min(READ_CHUNK, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise ReadError(path, f"too large (more than {_size(limit)})")
        return b"".join(chunks)
    except OSError as exc:
        raise ReadError(path, f"cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def read_head(path: str | Path, size: int) -> bytes | None:
    """The first ``size`` bytes of the regular file ``path``; None if it is not
    one or cannot be read."""
    try:
        fd, _ = _open_regular(path)
    except ReadError:
        return None
    try:
        os.set_blocking(fd, True)
        return os.read(fd, size)
    except OSError:
        return None
    finally:
        os.close(fd)


def read_text(path: str | Path, *, limit: int = MAX_TRACE_BYTES) -> str:
    """:func:`read_bytes` decoded as UTF-8 (:class:`ReadError` if it is not)."""
    data = read_bytes(path, limit=limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ReadError(path, f"not UTF-8 ({exc.reason} at byte {exc.start}, line {line})"
                        ) from None


def load_trace(path: str | Path) -> Any:
    """``fuzz.trace.parse_trace`` of a regular trace file read with a size bound;
    :class:`~fuzz.trace.TraceError` (one line) for every failure."""
    from fuzz.trace import TraceError, parse_trace

    try:
        data = read_bytes(path, limit=MAX_TRACE_BYTES)
    except ReadError as exc:
        raise TraceError(str(path), 0, exc.reason) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        lineno = data[: e.start].count(b"\n") + 1
        raise TraceError(str(path), lineno, f"not UTF-8: {e.reason} at byte {e.start}") from None
    return parse_trace(text, str(path))


# ------------------------------------------------------------------ writing


def writable_target(path: str | Path) -> Path:
    """Where writing ``path`` goes: ``path``, or the file a symbolic link names;
    :class:`WriteError` when that is something other than a regular file."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return path
    except OSError as exc:
        raise WriteError(path, f"cannot write: {exc.strerror or exc}") from None
    if stat.S_ISLNK(st.st_mode):
        target = Path(os.path.realpath(path))
        try:
            st = os.stat(target)
        except FileNotFoundError:
            return target
        except OSError as exc:
            raise WriteError(path, f"cannot write: {exc.strerror or exc}") from None
        path = target
    if not stat.S_ISREG(st.st_mode):
        raise WriteError(path, f"not a regular file ({kind_of(st.st_mode)}): "
                               "refusing to write over it")
    return path


def open_append(path: str | Path) -> BinaryIO:
    """``path`` opened for appending bytes (created if absent): only a regular
    file (a FIFO never blocks it, a dangling symbolic link never creates a file
    elsewhere); :class:`WriteError` otherwise."""
    if os.path.islink(path) and not os.path.exists(path):
        raise WriteError(path, "a dangling symbolic link: refusing to create its target")
    flags = (os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC
             | getattr(os, "O_NOCTTY", 0))
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno in (errno.ENXIO, errno.EISDIR):
            raise WriteError(path, f"not a regular file ({describe(path)})") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise WriteError(path, f"not a regular file ({kind_of(st.st_mode)})")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "ab")


def fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temp_copy(directory: Path, data: str | bytes) -> Path:
    """A new fsynced temporary file in ``directory`` holding ``data``."""
    fd, name = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, 0o644)  # readable like any other (mkstemp gives 0600)
        raw = data.encode("utf-8") if isinstance(data, str) else data
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(name)
        raise
    return Path(name)


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Replace the regular file ``path`` (or create it) by one holding ``data``,
    all at once; never replaces a device, FIFO, socket or directory
    (:class:`WriteError`).  Other failures (a full disk) are ``OSError``."""
    write_all_atomic([(path, data)])


def write_all_atomic(files: Sequence[tuple[str | Path, str | bytes]]) -> None:
    """:func:`write_atomic` of several files, all or none: every new file is
    written beside its target before any target is replaced, so a full disk
    or a file that cannot be written changes none of them."""
    targets = [writable_target(path) for path, _ in files]
    temps: list[Path] = []
    try:
        for target, (_, data) in zip(targets, files, strict=True):
            try:
                temps.append(temp_copy(target.parent, data))
            except OSError as exc:  # say which file could not be written (not the temp)
                raise OSError(exc.errno, exc.strerror or str(exc), str(target)) from None
        for tmp, target in zip(temps, targets, strict=True):
            os.replace(tmp, target)
    except BaseException:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        raise
    for directory in dict.fromkeys(target.parent for target in targets):
        fsync_dir(directory)


def named(exc: OSError, path: str | Path) -> OSError:
    """``exc`` with ``path`` as its file name when it has none."""
    if exc.filename is not None or exc.errno is None:
        return exc
    return OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(path))


# --------------------------------------------------------------------- JSON


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in JSON ``text``."""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return 0  # cannot be deeper than that
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def loads_json(text: str | bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Strict JSON: ``ValueError`` (one line) for malformed text, ``NaN``,
    ``Infinity``, ``1e400`` or nesting deeper than ``max_depth``."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    if json_depth(text) > max_depth:
        raise ValueError(f"nested more than {max_depth} deep")
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite)
    except RecursionError:
        raise ValueError(f"nested more than {max_depth} deep") from None
    except ValueError as exc:
        raise ValueError(first_line(exc)) from None


def first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text.strip() else type(exc).__name__


def field_number(data: dict[str, Any], key: str, *, low: float, high: float,
                 integer: bool = False) -> float:
    """``data[key]`` as a finite number in [low, high] (a whole number if
    ``integer``); ``ValueError`` naming the key otherwise."""
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} must be a number, got {_shown(value)}")
    if integer and not isinstance(value, int):
        raise ValueError(f"{key} must be a whole number, got {_shown(value)}")
    if not (isinstance(value, int) or math.isfinite(value)) or not low <= value <= high:
        raise ValueError(f"{key} must be between {_number(low)} and {_number(high)}, "
                         f"got {_shown(value)}")
    return value


def field_text(data: dict[str, Any], key: str, *, optional: bool = False,
               limit: int = 1000) -> str | None:
    """``data[key]`` as a one-line string (or None when ``optional``)."""
    value = data.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string, got {_shown(value)}")
    if len(value) > limit or "\n" in value or "\r" in value or "\0" in value:
        raise ValueError(f"{key} must be one line of at most {limit} characters")
    return value


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e16 else f"{value:g}"


def _shown(value: object) -> str:
    text = json.dumps(value) if isinstance(value, str | int | float | bool | None) else (
        type(value).__name__)
    return text if len(text) <= 40 else text[:37] + "..."
