"""What the executor (``fuzz.executor``) gives and is given: a verdict, its
findings and mismatches, and the judge's settings.

A verdict has one **outcome** (:attr:`Verdict.outcome`):

===========  ==============================================================
outcome      meaning
===========  ==============================================================
``finding``  the first finding (``Verdict.finding``); the run stopped there
``mismatch`` no finding, but a line's ``=> expected`` was not reproduced
``capped``   the run passed ``Settings.max_work`` units of work on a side
             before any finding: judged up to there, not a finding
``clean``    none of these
===========  ==============================================================

The work cap is an engine's bound on one trace: a side's work is 1 + the
page operations of each of its steps, plus the entries, folios, device
pages and swap slots of each of its observations (:func:`observation_work`;
with ``Settings.cap_by_state``, its footprint at each point the period
compares at, cheaply or not), all deterministic.  The cap is checked before
and after each side's step and after each observation, before anything is
compared: the step or observation that passes it is not judged.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from fuzz import contracts, diff
from fuzz.trace import StepLine
from model.observation import Observation, RawObservation
from model.ops import LineResult


@dataclass(frozen=True)
class Finding:
    kind: str  # divergence | violation | exception | budget
    detail: str
    op: str
    line: int  # index of the step line (from 1); len(steps) + 1 in the drain
    step: int  # thread steps taken so far, this one included
    message: str
    sides: tuple[tuple[str, str], ...] = ()  # (implementation, what it gave)
    obj: str = ""  # what the broken rule is about (the op when empty)
    differences: tuple[diff.Difference, ...] = ()  # of an observation divergence
    contract: str = contracts.DEFAULT  # the contract it breaks (fuzz/contracts.py)

    @property
    def signature(self) -> str:
        """The cause: ``kind/detail/object``."""
        return f"{self.kind}/{self.detail}/{self.obj or self.op}"

    @property
    def op_signature(self) -> str:
        """The older ``kind/detail/op`` form."""
        return f"{self.kind}/{self.detail}/{self.op}"

    def __str__(self) -> str:
        where = f"line {self.line}, step {self.step}, in {self.op}"
        text = f"{self.signature} at {where}: {self.message}"
        if self.differences:
            names = [name for name, _ in self.sides]
            for row in diff.side_by_side(self.differences, names):
                text += f"\n    {row}"
            return text
        for name, got in self.sides:
            text += f"\n    {name}: {got}"
        return text


@dataclass(frozen=True)
class Mismatch:
    line: int
    lineno: int
    implementation: str
    expected: str
    got: str

    def __str__(self) -> str:
        return (f"line {self.line} (text line {self.lineno}): {self.implementation} gave "
                f"{self.got!r}, expected {self.expected!r}")


@dataclass(frozen=True)
class LogEntry:
    """One step line as run: its index, its text and each side's result."""

    line: int
    step_line: StepLine
    results: tuple[str, ...]


@dataclass(frozen=True)
class ContractBreak:
    """Userspace broke the run's contract at step line ``line`` (``fuzz/contracts.py``)."""

    line: int
    op: str
    reason: str


@dataclass
class Verdict:
    implementations: tuple[str, ...]
    results: list[LineResult | None] = field(default_factory=list)  # first side, per line
    findings: list[Finding] = field(default_factory=list)
    mismatches: list[Mismatch] = field(default_factory=list)
    log: list[LogEntry] = field(default_factory=list)
    steps: int = 0
    drain_rounds: int = 0
    broken: ContractBreak | None = None  # userspace broke the contract (then no findings)
    excused: list[Finding] = field(default_factory=list)  # what went wrong after that
    costs: dict[str, int] = field(default_factory=dict)  # the first side's, at the end
    capped: bool = False  # stopped at Settings.max_work (then no finding)

    @property
    def ok(self) -> bool:
        """No finding and no mismatch (a capped run is ok up to its cap)."""
        return not self.findings and not self.mismatches

    @property
    def outcome(self) -> str:
        """``finding``, ``mismatch``, ``capped`` or ``clean`` (the module's table)."""
        if self.findings:
            return "finding"
        if self.mismatches:
            return "mismatch"
        return "capped" if self.capped else "clean"

    @property
    def finding(self) -> Finding | None:
        return self.findings[0] if self.findings else None


@dataclass(frozen=True)
class Settings:
    """Engine settings of a run."""

    observe_every: int = 1  # compare observations every K steps not blocked (0: never)
    budget: int = 1 << 22  # page ops one step may do (SPEC §5.4 B)
    max_line_steps: int = 100_000
    max_work: int = 0
    """The work cap per side (0: none): past it the run stops, ``capped``."""
    checks: bool = True
    mutant: str | None = None
    contract: str = contracts.DEFAULT
    drain: bool = True
    checked: tuple[str, ...] | None = None
    """The sides that check their invariants (None: every side, when
    ``checks``).  A mutant hunt checks the mutated side only: the reference
    has no mutant, and its checks, O(resident pages) a step, are there to
    find defects of SPEC itself, which a mutant hunt does not look for."""

    fast: bool = False
    """The fast judge (issue 14): the invariant scans of the sides not in
    ``scan_each_step`` run after every ``scan_every``-th step that changed
    something and at the end of the trace (their checks at events still run
    at their event), and the sides in it check locally after each step
    (``Config.incremental``); observations are compared every
    ``observe_every`` such steps, only in what changed
    (``fuzz.observe_diff``), and wholly at the end (0: at the end only); and
    a trace the fast judge finds anything in is judged again by the full
    judge (:meth:`full`), whose first finding is the one reported.  So the
    fast judge reports what the full one does, or nothing where the trouble
    the full one would have seen is gone by the fast one's next comparison
    (``tests/quality/test_fast_judge.py`` measures that on the planted bugs)."""
    cap_by_state: bool = False
    """How the work cap counts an observation: by what it holds (False), or,
    at every point the period compares at, by each side's ``footprint`` --
    what a whole observation of it would hold -- whether the comparison is
    cheap or whole (True).  Then the fast and the full judge charge the same
    work at the same points and stop a run at the same place, so an engine
    makes the same examples under either (``fuzz.profiles.CAMPAIGN``).
    (With ``observe_every`` 0 they part at the very end: the fast judge
    still compares, and charges, after the last step; the full one does
    neither.)"""
    scan_every: int = 8
    scan_each_step: tuple[str, ...] = ("optimized",)
    """Sides whose scans cost what a step changed (the optimized side's
    ledger re-reads only the leaves a step dirtied): the fast judge leaves
    them after every step."""

    def deferred(self, side: str) -> bool:
        """True if the fast judge runs ``side``'s scans itself, every few steps."""
        return self.fast and self.checks_on(side) and side not in self.scan_each_step

    def checks_on(self, side: str) -> bool:
        return self.checks and (self.checked is None or side in self.checked)

    def reported_every(self) -> int:
        """The observation period a finding of these settings is reported
        with: the full judge's (:meth:`full`), which judges a fast judge's
        finding again, or these settings' own."""
        return self.full().observe_every if self.fast else self.observe_every

    def full(self) -> Settings:
        """The full judge: every scan after every step, observations at every
        step (or, if these settings compare observations only at the end, at
        the end)."""
        return replace(self, fast=False, observe_every=1 if self.observe_every > 0 else 0)


def observation_work(obs: Observation | RawObservation) -> int:
    """The work units of one observation: its entries, folios, device pages
    and swap slots."""
    return (sum(len(p.entries) for p in obs.processes) + len(obs.folios)
            + len(obs.device_pages) + len(obs.swap_slots))
