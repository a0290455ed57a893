"""The mmu_interval_notifier sequence protocol (SPEC §4), after mm/mmu_notifier.c.

State per mm (``struct mmu_notifier_subscriptions``): ``invalidate_seq``
(here ``seq``, 2 at start), ``active_invalidate_ranges`` (``active``), the
interval tree ``itree`` and the ``deferred_list``.  Per subscription
(``struct mmu_interval_notifier``): ``invalidate_seq``.

The protocol, stated once:

* ``seq`` is odd exactly while some invalidation that hit a subscription is
  between ``mn_itree_inv_start_range`` and the ``mn_itree_inv_end`` that
  brings ``active`` to 0.  Start: ``active += 1``; if the range hits any
  subscription, ``seq |= 1``.  End: ``active -= 1``; at 0 with ``seq`` odd,
  ``seq += 1`` and the deferred inserts/removes are applied in list order.
* Every successful callback runs ``mmu_interval_set_seq(sub, cur_seq)``
  under the driver lock (``cur_seq`` = the odd ``seq``).
* ``mmu_interval_read_begin(sub)`` returns ``s = sub.invalidate_seq``, first
  waiting while ``s == seq`` (an invalidation that already called ``sub`` is
  still running).  Pairs with ``mmu_interval_read_retry(sub, s)`` =
  ``sub.invalidate_seq != s``, checked under the driver lock at commit.
* ``read_retry`` true is certain (a callback ran since ``read_begin``);
  false guarantees that no callback on ``sub`` returned success in between.

::

    device thread (mirror fault)          invalidating thread (munmap)
    ----------------------------          ----------------------------
    s = read_begin(sub)       seq=2       .
    walk CPU table (mmap_lock R)          .
    .                                     start: active=1, seq=3
    .                                     callback: lock; set_seq(sub,3);
    .                                        drop table[r]; unlock   (Y1)
    lock; read_retry(sub,s=1)             .
       -> 3 != 1: retry (REQUIRED)        apply: zap, free after flush (Y2)
    unlock; s = read_begin(sub)           end: active=0, seq=4
       (waits while sub.inv_seq == seq)
    walk again, commit, install           .

    The forbidden outcome: the commit finds read_retry false and installs a
    translation the apply then frees (use after free, SPEC invariant 1).

``insert`` while ``active > 0``: with ``seq`` odd it is deferred to the final
end; with ``seq`` even it makes ``seq`` odd itself and enters the tree; in
both cases ``sub.invalidate_seq = seq`` so its first ``read_begin`` waits.
``remove`` while ``seq`` is odd drops a pending deferred insert, else queues
the remove and waits until ``seq`` changes (``mmu_interval_notifier_remove``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from model import bugs
from model.bugs import Bug
from model.driver import Registry
from model.optimized.itree import IntervalTree
from model.optimized.threads import Gen, Thread, wait


@dataclass
class Range:
    """struct mmu_notifier_range."""

    event: str
    start: int
    end: int
    owner: int | None  # owner device for migrate events
    blockable: bool
    cur_seq: int = 0
    hits: list[Subscription] = field(default_factory=list)
    returned: int = 0  # callbacks returned so far (invariant 2a)
    thread: str = ""  # who started it (invariant 7: it ends before the thread does)


class Host(Protocol):
    """What holds the notifiers: the drivers, by kind (``interval_sub->ops``)."""

    @property
    def drivers(self) -> Registry[Any, Any]: ...


@dataclass(eq=False)
class Subscription:
    """struct mmu_interval_notifier; its ``ops`` are its owner kind's driver
    record's: ``invalidate(host, thread, sub, range)``."""

    id: int
    start: int
    end: int
    owner_kind: str  # the device kind whose driver's callback it runs
    owner: int  # the device or region it belongs to (the driver's choice)
    invalidate_seq: int = 0
    in_tree: bool = False
    last_success: int = 0  # stamp of the last successful callback return (6d)
    begin_stamps: dict[str, int] = field(default_factory=dict)


class Notifier:
    """struct mmu_notifier_subscriptions of one mm."""

    def __init__(self, host: Host, bug: Bug | None = None) -> None:
        self.host = host  # the kernel state, whose drivers the callbacks are
        self.bug = bug  # the planted bug switched on (model/bugs.py)
        self.stamp = 0  # this mm's event counter for invariant 6(d)
        self.seq = 2
        self.active = 0
        self.itree: IntervalTree[Subscription] = IntervalTree()
        self.deferred: list[tuple[str, Subscription]] = []
        self.running: list[Range] = []
        self.violations: list[tuple[str, str]] = []
        self.max_seq = 2
        self.allow_tree_change = False
        self.dead = False

    # ------------------------------------------------------------ tree edits
    def _tree_add(self, sub: Subscription) -> None:
        if self.seq & 1 and not self.allow_tree_change:
            self.violations.append(("seq_protocol", f"tree insert of S{sub.id} while seq odd"))
        self.itree.insert(sub.start, sub.end, sub.id, sub)
        sub.in_tree = True

    def _tree_del(self, sub: Subscription) -> None:
        if self.seq & 1 and not self.allow_tree_change:
            self.violations.append(("seq_protocol", f"tree remove of S{sub.id} while seq odd"))
        self.itree.remove(sub.start, sub.id)
        sub.in_tree = False

    # ------------------------------------------------------------ insert/remove
    def mmu_interval_notifier_insert(self, sub: Subscription) -> None:
        if self.active > 0:
            if self.seq & 1:
                self.deferred.append(("insert", sub))
            else:
                self.seq |= 1
                self.allow_tree_change = True
                self._tree_add(sub)
                self.allow_tree_change = False
            sub.invalidate_seq = self.seq
        else:
            sub.invalidate_seq = self.seq - 1
            self._tree_add(sub)

    def mmu_interval_notifier_remove(self, t: Thread, sub: Subscription) -> Gen[None]:
        if self.seq & 1:
            for i, (kind, s) in enumerate(self.deferred):
                if kind == "insert" and s is sub:
                    del self.deferred[i]
                    return
            self.deferred.append(("remove", sub))
            s0 = self.seq
            yield from wait(t, lambda: self.seq != s0, "notifier remove")
        elif sub.in_tree:
            self._tree_del(sub)

    # ------------------------------------------------------------ reader side
    def mmu_interval_read_begin(self, t: Thread, sub: Subscription) -> Gen[int]:
        s = sub.invalidate_seq
        if s == self.seq:
            yield from wait(t, lambda: self.seq != s, "read_begin")
        self.note_begin(t, sub)
        return s

    def note_begin(self, t: Thread, sub: Subscription) -> None:
        """Invariant 6(d)'s record of when ``t`` last began reading ``sub``
        (a subscription's events all happen on its own mm's counter)."""
        self.stamp += 1
        sub.begin_stamps[t.name] = self.stamp

    @staticmethod
    def mmu_interval_read_retry(sub: Subscription, s: int) -> bool:
        return sub.invalidate_seq != s

    def check_commit(self, t: Thread, sub: Subscription) -> None:
        """Invariant 6(d), at a commit whose read_retry was false."""
        begun = sub.begin_stamps.get(t.name, 0)
        if sub.last_success > begun:
            self.violations.append(
                ("seq_protocol", f"S{sub.id}: a callback succeeded between read_begin and commit"))

    @staticmethod
    def mmu_interval_set_seq(sub: Subscription, cur_seq: int) -> None:
        sub.invalidate_seq = cur_seq

    # ------------------------------------------------------------ writer side
    def mn_itree_inv_start_range(self, rng: Range) -> None:
        if self.dead:
            self.violations.append(("release_is_final", "invalidation started on a dead mm"))
        self.active += 1
        if self.bug is bugs.INVALIDATE_RANGE_END_OFF_BY_ONE:
            rng.end -= 1  # the callbacks see a range one page short
        if self.bug is bugs.ITREE_INCLUSIVE_END:
            # the overlap test takes a subscription's end as inclusive
            rng.hits = self.itree.overlaps(rng.start - 1, rng.end)
        else:
            rng.hits = self.itree.overlaps(rng.start, rng.end)
        if rng.hits:
            self.seq |= 1
        rng.cur_seq = self.seq
        self.running.append(rng)

    def mn_itree_inv_end(self, rng: Range) -> None:
        self.active -= 1
        if rng in self.running:
            self.running.remove(rng)
        else:
            self.violations.append(("pairing", "an invalidation ended twice"))
        if self.active == 0 and self.seq & 1:
            self.seq += 1
            for kind, sub in self.deferred:
                if kind == "insert":
                    self._tree_add(sub)
                elif sub.in_tree:
                    self._tree_del(sub)
            self.deferred.clear()


def invalidate(t: Thread, mn: Notifier, rng: Range, apply: Callable[[], None],
               notify: bool = True) -> Gen[bool]:
    """I(e, r) of SPEC §4: start; callbacks (a Y1 after each); apply; Y2; end.

    Returns False when a non-blockable callback failed: ``end`` then ran at
    once (before that callback's Y1) and ``apply`` was not called.  ``end``
    after Y2 runs at the start of the thread's next step, together with
    whatever the caller does next.  ``notify`` False (only for a mutant)
    skips every callback but keeps the Y1s."""
    rng.thread = t.name
    mn.mn_itree_inv_start_range(rng)
    host = mn.host
    for sub in rng.hits:
        if not notify:
            yield None  # Y1
            continue
        if not rng.blockable:
            t.nonblocking += 1
        callback = host.drivers.by_kind[sub.owner_kind].invalidate  # interval_sub->ops
        assert callback is not None, sub.owner_kind
        seq_before = sub.invalidate_seq
        ok = yield from callback(host, t, sub, rng)
        if not rng.blockable:
            t.nonblocking -= 1
        rng.returned += 1
        if not ok:
            if mn.bug is not bugs.SKIP_END_AFTER_FAILED_CALLBACK:  # Linux bug B5
                mn.mn_itree_inv_end(rng)  # end runs at once, before the Y1
            yield None  # Y1
            return False
        if not (rng.event == "migrate" and rng.owner == sub.owner
                and sub.invalidate_seq == seq_before):
            mn.stamp += 1  # 6(d): not an own migration's callback without set_seq (D24)
            sub.last_success = mn.stamp
        yield None  # Y1
    apply()
    yield None  # Y2
    mn.mn_itree_inv_end(rng)
    return True
