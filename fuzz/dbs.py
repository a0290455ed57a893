"""Where the Hypothesis engine keeps its example database.

``open_database(spec, default_dir)`` turns a ``--db`` argument into a
Hypothesis ``ExampleDatabase``: ``None`` or a path gives a directory database
(``default_dir`` when ``None``).  Other schemes (a shared Redis server) are
added here, so that every engine and the campaign runner open databases one
way.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis.database import DirectoryBasedExampleDatabase, ExampleDatabase

from fuzz.errors import BadInput


def open_database(spec: str | None, default_dir: str | Path) -> ExampleDatabase:
    """The example database named by ``spec`` (a directory path, or None)."""
    if spec is None:
        return DirectoryBasedExampleDatabase(str(default_dir))
    if "://" in spec:
        raise BadInput(f"--db {spec}: unsupported database URL")
    return DirectoryBasedExampleDatabase(spec)
