"""The planted bugs (mutants), each declared once.

A planted bug is a switch in an implementation that imitates a real Linux
bug, so that the engines can be shown to find it (``tests/quality``,
``mirrorfuzz mutants``).  Each is a :class:`Bug` declared here with its name
(what ``Config(mutant=...)``, ``--mutant`` and the repro headers use), one
line on what it breaks, the Linux bug or commit it imitates (background:
linux-semantics.md §11, its B-ids), and where it lives: the implementation
and, when it is in a driver's code rather than the core, the device kind.

The implementation asks for a bug by its declaration, never by a string::

    from model import bugs
    if k.bugged(bugs.FLAG_INSTEAD_OF_SEQ):
        retry = bool(proc.mn.seq & 1)

and a name is resolved once, when the ``Config`` is built
(:func:`lookup`): a name nobody declared raises :class:`UnknownBug`, never
silently runs with no bug.  A driver module declares its own bugs with
:func:`declare` (or :func:`register`) at import; a name declared twice
raises :class:`DuplicateBug`.

This module is shared vocabulary: it imports nothing from the model, so the
reference, the optimized implementation and ``fuzz`` may all import it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Final

OPTIMIZED: Final = "optimized"
PLUGIN: Final = "plugin"
"""The ``implementation`` of a plug-in driver's bug: its code runs on both cores."""
"""The implementation every built-in bug lives in (``OptimizedKernel.name``)."""

_NAME: Final = re.compile(r"[a-z][a-z0-9_]*\Z")


class UnknownBug(ValueError):
    """A bug name that no module declared (a typo in ``--mutant``, a header...)."""


class DuplicateBug(ValueError):
    """A second declaration of a bug name."""


@dataclass(frozen=True)
class Bug:
    """One planted bug."""

    name: str  # how configs, traces and the command line name it
    breaks: str  # one line: what goes wrong when it is on
    imitates: str  # the Linux bug or commit it imitates
    implementation: str = OPTIMIZED  # the implementation whose code holds the switch
    driver: str | None = None  # the device kind whose driver holds it (None: the core)

    @property
    def lives_in(self) -> str:
        """``optimized`` or ``optimized/<driver>``."""
        return self.implementation if self.driver is None else \
            f"{self.implementation}/{self.driver}"


class Registry(Mapping[str, Bug]):
    """Declared bugs by name, in declaration order."""

    def __init__(self) -> None:
        self._bugs: dict[str, Bug] = {}

    def register(self, bug: Bug) -> Bug:
        if not _NAME.match(bug.name):
            raise ValueError(f"bug name {bug.name!r}: expected lower-case letters, digits "
                             "and _, starting with a letter")
        if not bug.breaks.strip() or not bug.imitates.strip():
            raise ValueError(f"bug {bug.name!r}: 'breaks' and 'imitates' must say something")
        if bug.name in self._bugs:
            raise DuplicateBug(f"bug {bug.name!r} is declared twice "
                               f"(in {self._bugs[bug.name].lives_in} and {bug.lives_in})")
        self._bugs[bug.name] = bug
        return bug

    def lookup(self, name: str | None) -> Bug | None:
        """The bug called ``name`` (None for None); :class:`UnknownBug` if none is."""
        if name is None:
            return None
        bug = self._bugs.get(name)
        if bug is None:
            raise UnknownBug(f"unknown mutant {name!r} (known: {', '.join(sorted(self._bugs))})")
        return bug

    def __getitem__(self, name: str) -> Bug:
        return self._bugs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._bugs)

    def __len__(self) -> int:
        return len(self._bugs)

    def forget(self, name: str) -> None:
        """Drop a driver's bug when its driver is unloaded (tests of plug-ins)."""
        self._bugs.pop(name, None)


REGISTRY: Final = Registry()
"""Every bug declared so far (the built-ins below, then any driver's)."""


def register(bug: Bug) -> Bug:
    """Add ``bug`` to :data:`REGISTRY` and return it (:class:`DuplicateBug` if
    its name is taken)."""
    return REGISTRY.register(bug)


def declare(name: str, *, breaks: str, imitates: str, implementation: str = OPTIMIZED,
            driver: str | None = None) -> Bug:
    """Declare a bug and return its declaration, to be kept in a constant
    the code asks for (``X = declare("x", ...)``, then ``k.bugged(X)``)."""
    return register(Bug(name, breaks, imitates, implementation, driver))


def lookup(name: str | None) -> Bug | None:
    """The declared bug called ``name`` (None for None), else :class:`UnknownBug`."""
    return REGISTRY.lookup(name)


def all_bugs() -> list[Bug]:
    """Every declared bug, by name."""
    return [REGISTRY[name] for name in sorted(REGISTRY)]


class _Descriptions(Mapping[str, str]):
    """name -> "breaks (imitates)", read live from the registry."""

    def __getitem__(self, name: str) -> str:
        bug = REGISTRY[name]
        return f"{bug.breaks} (imitates {bug.imitates})"

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(REGISTRY))

    def __len__(self) -> int:
        return len(REGISTRY)


MUTANTS: Final[Mapping[str, str]] = _Descriptions()
"""The older name -> description view (``model.optimized.kernel.MUTANTS``),
kept for callers not yet moved to :func:`all_bugs`/:func:`lookup`."""


# ---------------------------------------------------------------- the core

SKIP_END_AFTER_FAILED_CALLBACK: Final = declare(
    "skip_end_after_failed_callback",
    breaks="a non-blockable invalidation whose callback fails never ends: active stays "
           "above 0 and seq stays odd (SPEC invariant 7)",
    imitates="B5: range_end not paired with range_start after a -EAGAIN from a "
             "non-blockable callback (since 93065ac753e4; fixed by 'mm/mmu_notifiers: "
             "ensure range_end() is paired with range_start()', Sean Christopherson 2021; "
             "same area 7608bf40cf24 'RDMA/odp: Fix missed unlock in non-blocking "
             "invalidate_start')")

ITREE_INCLUSIVE_END: Final = declare(
    "itree_inclusive_end",
    breaks="the interval tree's overlap test takes a subscription's end as inclusive, so "
           "an invalidation starting just past a subscription calls it and makes seq odd",
    imitates="an off-by-one between half-open ranges and the closed [start, last] of "
             "interval_tree_generic.h, which mmu_interval_notifier bridges with "
             "'last = start + length - 1' (a bug class; no recorded Linux bug)")

INVALIDATE_RANGE_END_OFF_BY_ONE: Final = declare(
    "invalidate_range_end_off_by_one",
    breaks="an invalidation's callbacks see a range one page short at the end, so a "
           "mirror keeps a translation of the last page the CPU side drops",
    imitates="B6/B7 class, an invalidation range too small: 017b1660df89 'mm: migration: "
             "fix migration of huge PMD shared pages' and Peter Xu 2020 'mm/hugetlb: fix "
             "calculation of adjust_range_if_pmd_sharing_possible'")

FORK_SHARE_PINNED: Final = declare(
    "fork_share_pinned",
    breaks="fork shares pinned anonymous pages read-only instead of copying them, so the "
           "parent's next write moves it off the page the device still pins",
    imitates="B8: GUP pin + fork COW (CVE-2020-29374; 17839856fd58, fixed by 70e806e4e645 "
             "'mm: Do early cow for pinned pages during fork() for ptes' and d042035eaf5f "
             "'mm/thp: Split huge pmds/puds if they're pinned when fork()')")

ZAP_WITHOUT_INVALIDATE: Final = declare(
    "zap_without_invalidate",
    breaks="madvise(DONTNEED)'s zap calls no invalidation callbacks (its start/end and "
           "yield points kept), so subscribers keep entries for the zapped pages",
    imitates="B10: a PTE-zapping path without MMU notifier calls (f268f6cf875f "
             "'mm/khugepaged: invoke MMU notifiers in shmem/file collapse paths', Jann Horn "
             "2022)")

SPLIT_WITHOUT_INVALIDATE: Final = declare(
    "split_without_invalidate",
    breaks="__split_huge_pmd calls no MMU_NOTIFY_CLEAR callbacks for the block it splits "
           "(start/end and yield points kept), so the mirror keeps entries SPEC drops",
    imitates="B10 class, a missing invalidate on a page-table rewrite (cf. f268f6cf875f for "
             "THP collapse)")

RMAP_MISSES_SECOND_PROCESS: Final = declare(
    "rmap_misses_second_process",
    breaks="the reverse-map walk (migrate, reclaim, migrate-back) stops after the first "
           "process that maps the page, so a second mapping survives the page's move",
    imitates="B6 style: try_to_unmap stopping early on PMD-shared hugetlb pages (mapcount 1), "
             "so writes after the copy were lost (fixed by 017b1660df89 'mm: migration: fix "
             "migration of huge PMD shared pages', Mike Kravetz 2018)")

FREE_AT_INVALIDATE_START: Final = declare(
    "free_at_invalidate_start",
    breaks="munmap and madvise(DONTNEED) free the folios they zap when the invalidation "
           "starts, not at tlb_finish_mmu after the apply, while the CPU and device still "
           "map them",
    imitates="B11 class, a page freed before its last translation is gone (B11: 60bae7370896 "
             "'mm/migrate_device.c: flush TLB while holding PTL'; CPU-TLB analogue "
             "CVE-2018-18281, mremap 'properly flush TLB before releasing the page')")

# ---------------------------------------------------------------- the mirror driver

MIRROR_SKIP_SET_SEQ_OWN_MIGRATE: Final = declare(
    "mirror_skip_set_seq_own_migrate",
    breaks="the mirror's invalidate callback skips mmu_interval_set_seq on its own migrate "
           "events, so a walk that overlaps one commits without retrying",
    imitates="B2: set_seq forgotten on the event kinds a driver filters (its own "
             "MIGRATE/EXCLUSIVE), against mmu_notifier.h's 'must be called unconditionally' "
             "(test_hmm's dmirror skips its own MIGRATE events for everything but set_seq)",
    driver="mirror")

FLAG_INSTEAD_OF_SEQ: Final = declare(
    "flag_instead_of_seq",
    breaks="the mirror's commit checks a valid flag (false only while an invalidation "
           "runs) instead of the sequence, so a whole invalidation between walk and commit "
           "goes unseen",
    imitates="B1: old HMM's range->valid bool (JG, 'Re: [RFC PATCH 00/11] mm/hmm: Various "
             "revisions from a locking/code review', 2019-05-27; replaced by a seqcount, "
             "which led to mmu_interval_notifier)",
    driver="mirror")

PER_CHUNK_READ_BEGIN: Final = declare(
    "per_chunk_read_begin",
    breaks="the mirror's walk takes read_begin again for each 64-page chunk and the commit "
           "checks only the last, missing an invalidation of an earlier chunk",
    imitates="B9a: amdgpu_hmm_range_get_pages' per-chunk read_begin (fixed by 144ba981783f "
             "'drm/amdgpu: fix amdgpu_hmm_range_get_pages')",
    driver="mirror")

MIRROR_RETRY_WITHOUT_READ_BEGIN: Final = declare(
    "mirror_retry_without_read_begin",
    breaks="the mirror retries its walk with the old sequence (no new read_begin), so once "
           "an invalidation hits it the commit fails forever (livelock)",
    imitates="B9b: amdgpu's -EBUSY retry label left inside the loop once read_begin moved "
             "before it (amd-gfx, May 2026)",
    driver="mirror")

UNLOCK_BEFORE_PROGRAM: Final = declare(
    "unlock_before_program",
    breaks="the mirror's read_retry runs before it takes the driver lock it programs the "
           "table under, so an invalidation in between is missed",
    imitates="B16: validity check and device page-table programming in different critical "
             "sections (JG on the proposed ODP-to-HMM conversion, in the B1 thread, 2019; "
             "ODP keeps umem_mutex from read_retry to the update)",
    driver="mirror")

NONBLOCK_CALLBACK_BLOCKS: Final = declare(
    "nonblock_callback_blocks",
    breaks="the mirror's callback waits for the driver lock in a non-blockable invalidation "
           "(oomreap) instead of failing",
    imitates="B4: a sleeping notifier called from atomic context (c7ab0d2fdc84; "
             "aac2fea94f7a 'rmap: do not call mmu_notifier_invalidate_page() under ptl'); "
             "B15: waiting inside the notifier on what reclaim needs (d0b9a9aef0a1 "
             "'dma-fence: prime lockdep annotations')",
    driver="mirror")

# ---------------------------------------------------------------- the userptr driver

USERPTR_KEEP_PINS: Final = declare(
    "userptr_keep_pins",
    breaks="the userptr callback returns success without unpinning, so the object keeps "
           "pins on pages its process no longer maps there",
    imitates="i915's interval-notifier userptr (986c6f7c3fc8), whose invalidate keeps the "
             "pins until the next submission, where SPEC's model A (i915's classic "
             "userptr, 02b64a4a0cb1) unpins in the callback",
    driver="userptr")
