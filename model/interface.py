"""The protocol both implementations provide, and what they report.

The executor (``fuzz/executor.py``) drives an implementation only through
:class:`Implementation`.  It never looks inside; it judges.

Threads (SPEC §2, §5.1):

* ``start(name, op)`` creates thread ``name`` at the op's start and runs
  nothing.  It gives ``ok``, or ``EINVAL`` if a live thread has that name.
* ``step(name)`` runs the thread to its next yield point: ``Yielded``,
  ``Blocked`` (it was stopped at a Y4 whose wait is still false; nothing
  changed), or ``Done(result)``.  ``EINVAL`` (an :class:`~model.ops.Err`) if
  no live thread has that name.  A done thread is no longer live.
* A plain op on step line i is ``start("Li", op)`` followed by steps; the
  executor does that, not the implementation.

Two error families, never mixed (h11): an op that is not allowed is an errno
*result*; an implementation that finds its own invariant broken reports a
:class:`Violation` (a finding), it does not raise.  An exception escaping
``start``/``step`` is itself a finding of kind ``exception``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol, runtime_checkable

from model.bugs import Bug, lookup
from model.observation import Changes, Observation, RawObservation, VmaView
from model.ops import (
    DEFAULT_DEVICE_FRAMES,
    DEFAULT_FRAMES,
    Err,
    Op,
    OpResult,
    StepOutcome,
)

INVARIANTS: Final[dict[int, str]] = {
    1: "no_use_after_free",
    2: "device_entries_follow_cpu",
    3: "pins_are_stable",
    4: "coherence",
    5: "fork_isolation",
    6: "seq_protocol",
    7: "pairing",
    8: "no_block_when_nonblockable",
    9: "release_is_final",
    10: "accounting",
    11: "liveness",
}
"""SPEC §8.2: number -> predicate name.  1-3 and 6-10 are checked by each
implementation on its own structures; 4, 5 and 11 by the executor."""

INVARIANT_NUMBERS: Final[dict[str, int]] = {v: k for k, v in INVARIANTS.items()}


@dataclass(frozen=True)
class Violation:
    """An invariant found broken (SPEC §8.2)."""

    invariant: str  # a name of INVARIANTS
    detail: str

    @property
    def number(self) -> int:
        return INVARIANT_NUMBERS[self.invariant]


@dataclass(frozen=True)
class Config:
    """Trace header settings and engine switches."""

    frames: int = DEFAULT_FRAMES
    device_frames: int = DEFAULT_DEVICE_FRAMES
    checks: bool = True  # check invariants after every step (off only for benchmarks)
    mutant: str | None = None  # a planted bug, by its declared name (model/bugs.py)
    deferred: bool = False
    """With ``checks``: the after-step scans (the predicates of §8.2 over the
    whole state) run only when :meth:`Implementation.check_invariants` is
    called, not after every step; the checks at events (an access, a commit,
    an ``end``, a wait) still run where the event happens.  The executor's
    fast judge sets it and scans every few steps and at the end of a trace."""
    incremental: bool = False
    """With ``checks`` and not ``deferred``: the after-step scans are left out
    after a step that changed nothing they read (an implementation that can
    tell; :meth:`Implementation.check_invariants` always scans).  The fast
    judge sets it."""

    def __post_init__(self) -> None:
        lookup(self.mutant)  # a name nobody declared: model.bugs.UnknownBug, here

    @property
    def bug(self) -> Bug | None:
        """The planted bug switched on, as declared in ``model/bugs.py``."""
        return lookup(self.mutant)


class Implementation(Protocol):
    """One implementation of SPEC v1, in its initial state (``P0`` live)."""

    name: str

    def start(self, thread: str, op: Op) -> OpResult:
        """Create ``thread`` at ``op``'s start: ``ok`` or ``EINVAL``."""
        ...

    def step(self, thread: str) -> StepOutcome | Err:
        """Run ``thread`` to its next yield point (SPEC §5.1)."""
        ...

    def live_threads(self) -> list[str]:
        """Names of the live threads, in thread order (Tn by n, then Li by i)."""
        ...

    def failed_commits(self, thread: str) -> int:
        """SPEC §5.4: commits whose ``read_retry`` was true, plus mirror
        access checks that failed after a commit."""
        ...

    def active_jobs(self) -> list[int]:
        """Numbers of the jobs created and not completed, in order."""
        ...

    def vmas(self, pid: int) -> tuple[VmaView, ...]:
        """P's VMAs in address order (empty if P does not exist or is dead)."""
        ...

    def observe(self) -> Observation:
        """The canonical observation of SPEC §8.1."""
        ...

    def take_violations(self) -> list[Violation]:
        """Violations found since the last call (then forgotten)."""
        ...

    def check_invariants(self) -> None:
        """Run the after-step scans now (when ``config.checks``); what they
        find is taken by the next :meth:`take_violations`."""
        ...

    def page_ops(self) -> int:
        """Page operations done by the last step (SPEC §5.4 budget)."""
        ...

    def footprint(self) -> int:
        """What a whole observation of this side holds: its live processes'
        entries, and the pages, device pages and swap slots in use (the work
        cap's charge per observation when it counts the state,
        ``fuzz.verdict.Settings.cap_by_state``)."""
        ...

    def costs(self) -> dict[str, int]:
        """What the run cost so far (``mirrorfuzz compare``): the reference
        counts, another implementation may give nothing."""
        ...

    def busy(self, pid: int) -> list[tuple[int, int]]:
        """Ranges ``[s, e)`` of P's mm with device work in flight: the
        ranges of active jobs' regions, and what each plug-in driver of P's
        devices says (``PluginDriver.busy``)."""
        ...


@runtime_checkable
class Watched(Protocol):
    """An implementation that can say what changed, so that the executor
    compares only that (``fuzz.observe_diff``).  Optional: the executor
    compares whole observations of an implementation without it."""

    def observe_raw(self) -> RawObservation:
        """The observation of SPEC §8.1 with the implementation's own ids
        (``observe`` is its :func:`~model.observation.canonicalize`)."""
        ...

    def changes(self) -> Changes:
        """The parts, folios, device pages and slots whose views may differ
        from when it was last called (at the first call: all of them).
        Over-reporting costs time; under-reporting loses findings."""
        ...

    def observe_parts(self, parts: Changes) -> RawObservation:
        """The raw observation restricted to ``parts``: the processes and
        objects it names (those that exist), every device, region, job and
        thread, the totals, and the views of the folios, device pages and
        slots it names (those alive) and of every one the listed parts
        reach."""
        ...


class Factory(Protocol):
    def __call__(self, config: Config) -> Implementation: ...
