"""Where the Hypothesis engine keeps its example database.

``open_database(spec, default_dir)`` turns a ``--db`` argument into a
Hypothesis ``ExampleDatabase``, so that every engine and the campaign runner
open databases one way:

* ``None``: a directory database in ``default_dir``;
* a path: a directory database there;
* ``redis://[[user]:password@]host[:port][/N][?prefix=P]`` (or ``rediss://``
  for TLS): examples shared between machines through a Redis server, combined
  with the directory database in ``default_dir``
  (:class:`~hypothesis.database.MultiplexedDatabase`, local first).  Every
  example is saved to both, so a worker keeps its own examples when the
  server is gone, and replays, first, the ones any worker saved.  ``N`` is
  the Redis database number (0); keys are ``P`` + Hypothesis's key
  (``P`` = ``mirrorfuzz:``), so that several projects or campaigns can share
  one server.  Needs the ``redis`` client (``pip install 'mirrorfuzz[redis]'``).

Rule this module enforces: **a database that cannot be used fails at open**,
as a :class:`~fuzz.errors.BadInput` with a one-line message (a malformed URL,
a missing client, a server that does not answer a ``PING``).  After that a
Redis error never stops a run: the shared half is skipped, with one line on
stderr, for :data:`RETRY_AFTER` seconds and then tried again, while the
directory database goes on keeping every example.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

from hypothesis.database import (
    DirectoryBasedExampleDatabase,
    ExampleDatabase,
    ListenerEventT,
    MultiplexedDatabase,
)

from fuzz.errors import BadInput

if TYPE_CHECKING:
    from redis import Redis

REDIS_SCHEMES: Final = ("redis", "rediss")
DEFAULT_PORT: Final = 6379
DEFAULT_PREFIX: Final = "mirrorfuzz:"
QUERY_KEYS: Final = ("prefix",)
CONNECT_TIMEOUT: Final = 5.0
"""Seconds to wait for a connection (at open and after)."""
SOCKET_TIMEOUT: Final = 30.0
"""Seconds to wait for one reply before the shared half is skipped."""
RETRIES: Final = 2
RETRY_BACKOFF: Final = 0.4
"""A command is retried ``RETRIES`` times, at most ``RETRY_BACKOFF`` seconds apart."""
RETRY_AFTER: Final = 30.0
"""Seconds the shared half is skipped after a Redis error."""

T = TypeVar("T")


def open_database(spec: str | None, default_dir: str | Path) -> ExampleDatabase:
    """The example database named by ``spec`` (None, a directory path or a Redis URL)."""
    if spec is None:
        return DirectoryBasedExampleDatabase(str(default_dir))
    if "://" in spec:
        scheme = spec.partition("://")[0].lower()
        if scheme not in REDIS_SCHEMES:
            raise BadInput(f"--db {redacted(spec)}: unsupported database URL "
                           f"(a directory, or redis://host:port/N)")
        shared = open_redis(parse_redis_url(spec))
        return MultiplexedDatabase(DirectoryBasedExampleDatabase(str(default_dir)), shared)
    return DirectoryBasedExampleDatabase(spec)


# ------------------------------------------------------------------ Redis URL


@dataclass(frozen=True)
class RedisURL:
    """A parsed ``redis://`` database URL."""

    host: str
    port: int = DEFAULT_PORT
    db: int = 0
    prefix: str = DEFAULT_PREFIX
    username: str | None = None
    password: str | None = None
    tls: bool = False

    def shown(self) -> str:
        """The URL as messages show it: never the password."""
        user = self.username or ""
        auth = f"{user}:***@" if self.password is not None else (f"{user}@" if user else "")
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = "" if self.prefix == DEFAULT_PREFIX else f"?prefix={self.prefix}"
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{auth}{host}:{self.port}/{self.db}{query}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def redacted(spec: str) -> str:
    """``spec`` with any password replaced, for an error about ``spec`` itself."""
    scheme, sep, rest = spec.partition("://")
    netloc, slash, path = rest.partition("/")
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:***@{hostport}"
    text = _one_line(f"{scheme}{sep}{netloc}{slash}{path}")
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= 200 else text[:197] + "..."


def parse_redis_url(spec: str) -> RedisURL:
    """``redis://[[user]:password@]host[:port][/N][?prefix=P]``; :class:`BadInput` if not."""
    shown = redacted(spec)

    def bad(why: str) -> BadInput:
        return BadInput(f"--db {shown}: {why}")

    try:
        parts = urlsplit(spec)
    except ValueError as exc:  # an unclosed '[' of an IPv6 host, a bad port ...
        raise bad(f"malformed URL ({_one_line(str(exc))})") from None
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in spec):
        raise bad("a control character in the URL")
    if parts.scheme.lower() not in REDIS_SCHEMES:
        raise bad("not a redis:// URL")
    if parts.fragment:
        raise bad("a Redis URL has no #fragment")
    try:
        port = parts.port
        host = parts.hostname
        if host is not None:
            host.encode("idna")
    except ValueError:
        raise bad("the port is not a number from 1 to 65535") from None
    except UnicodeError:
        raise bad("the host is not a valid host name") from None
    if not host:
        raise bad("no host (redis://host:port/N)")
    if port == 0:
        raise bad("the port is not a number from 1 to 65535")
    path = unquote(parts.path)
    number = path[1:] if path.startswith("/") else path
    if number and not (number.isascii() and number.isdigit()):
        raise bad(f"the database number {number!r} is not a number")
    try:
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise bad(f"malformed query {parts.query!r}") from None
    unknown = sorted(set(query) - set(QUERY_KEYS))
    if unknown:
        raise bad(f"unknown parameter {unknown[0]!r} (known: {', '.join(QUERY_KEYS)})")
    if any(len(values) > 1 for values in query.values()):
        raise bad("a parameter is given twice")
    prefix = query["prefix"][0] if "prefix" in query else DEFAULT_PREFIX
    if not prefix:
        raise bad("an empty prefix (leave it out for the default)")
    if len(number) > 9:
        raise bad(f"the database number {number[:20]!r} is too large")
    return RedisURL(host=host, port=port or DEFAULT_PORT, db=int(number or "0"), prefix=prefix,
                    username=unquote(parts.username) if parts.username else None,
                    password=unquote(parts.password) if parts.password is not None else None,
                    tls=parts.scheme.lower() == "rediss")


# ------------------------------------------------------------ the shared half


def open_redis(url: RedisURL) -> ExampleDatabase:
    """The shared example database on ``url``'s server, checked with a ``PING``."""
    try:
        import redis
        from hypothesis.extra.redis import RedisExampleDatabase
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry
    except ImportError:
        raise BadInput(f"--db {url.shown()}: the redis client is not installed "
                       f"(pip install 'mirrorfuzz[redis]')") from None
    client = redis.Redis(host=url.host, port=url.port, db=url.db, username=url.username,
                         password=url.password, ssl=url.tls,
                         socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=SOCKET_TIMEOUT,
                         retry=Retry(ExponentialBackoff(cap=RETRY_BACKOFF, base=RETRY_BACKOFF / 8),
                                     RETRIES))
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        client.close()
        refused = isinstance(exc, (redis.AuthenticationError, redis.ResponseError))
        unreachable = not refused and isinstance(
            exc, (redis.ConnectionError, redis.TimeoutError, OSError))
        what = "does not answer" if unreachable else "refuses the connection"
        raise BadInput(f"--db {url.shown()}: the Redis server {what}: "
                       f"{_one_line(str(exc)) or type(exc).__name__}") from None
    shared = RedisExampleDatabase(client, key_prefix=url.prefix.encode("utf-8"),
                                  listener_channel=f"{url.prefix}changes")
    return SharedDatabase(shared, url.shown(), client)


class SharedDatabase(ExampleDatabase):
    """A Redis example database whose errors skip it for a while instead of raising.

    Each error prints one line on stderr; the database is skipped (fetch gives
    nothing, saves and deletes are dropped) for :data:`RETRY_AFTER` seconds.
    """

    def __init__(self, inner: ExampleDatabase, shown: str, client: Redis | None = None,
                 *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.inner = inner
        self.shown = shown
        self.client = client
        self.errors = 0
        self._clock = clock
        self._skip_until: float | None = None

    def __repr__(self) -> str:
        return f"SharedDatabase({self.shown})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SharedDatabase) and self.inner == other.inner

    def __hash__(self) -> int:
        return hash(self.shown)

    @property
    def available(self) -> bool:
        """False while the database is skipped after an error."""
        return self._skip_until is None or self._clock() >= self._skip_until

    def _guard(self, what: str, run: Callable[[], T], default: T) -> T:
        if not self.available:
            return default
        try:
            result = run()
        except Exception as exc:  # redis.RedisError and OSError, without importing redis
            if not _is_redis_error(exc):
                raise
            self.errors += 1
            self._skip_until = self._clock() + RETRY_AFTER
            print(f"mirrorfuzz: shared example database {self.shown}: {what} failed "
                  f"({_one_line(str(exc)) or type(exc).__name__}); using the local "
                  f"one alone for {RETRY_AFTER:g}s", file=sys.stderr)
            return default
        self._skip_until = None
        return result

    def fetch(self, key: bytes) -> Iterable[bytes]:
        return self._guard("fetch", lambda: list(self.inner.fetch(key)), [])

    def save(self, key: bytes, value: bytes) -> None:
        self._guard("save", lambda: self.inner.save(key, value), None)

    def delete(self, key: bytes, value: bytes) -> None:
        self._guard("delete", lambda: self.inner.delete(key, value), None)

    def move(self, src: bytes, dest: bytes, value: bytes) -> None:
        self._guard("move", lambda: self.inner.move(src, dest, value), None)

    def _start_listening(self) -> None:
        self.inner.add_listener(self._forward)

    def _stop_listening(self) -> None:
        self.inner.remove_listener(self._forward)

    def _forward(self, event: ListenerEventT) -> None:
        self._broadcast_change(event)

    def close(self) -> None:
        """Close the client's connections (the database can still be used: they reopen)."""
        if self.client is not None:
            self.client.close()


def _is_redis_error(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return True
    try:
        import redis
    except ImportError:  # pragma: no cover (the inner database needs it)
        return False
    return isinstance(exc, redis.RedisError)
