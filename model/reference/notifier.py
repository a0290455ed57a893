"""Notifiers and the sequence protocol, SPEC §4 verbatim.

Each mm has ``seq`` (2 at start), ``active`` (0), a tree of subscriptions
and a ``deferred`` list::

    insert(sub):
      if active > 0:
          if seq is odd: append (insert, sub) to deferred   # enters at the final end
          else:          seq |= 1; put sub in the tree
          sub.invalidate_seq = seq                          # its first read_begin waits
      else: sub.invalidate_seq = seq - 1; put sub in the tree

    remove(sub):
      if seq is odd:
          if (insert, sub) is in deferred: drop it; return
          append (remove, sub) to deferred; s = seq; wait until seq != s
      else: take sub out of the tree

    I(e, [a,b), owner, blockable):
      start: active += 1; hits = tree ∩ [a,b) in (start, id) order
             if hits: seq |= 1
             for sub in hits: callback(...)               # Y1 after each
               a failed (non-blockable) callback: end at once, then Y1; no change
      apply  (one action), Y2
      end:   active -= 1
             if active == 0 and seq is odd: seq += 1; apply deferred; empty it

    read_begin(sub):   s = sub.invalidate_seq; if s == seq: wait until seq != s
    read_retry(sub,s): sub.invalidate_seq != s              # pairs with set_seq
    set_seq(sub,c):    sub.invalidate_seq = c               # in every successful callback

The hit list is fixed at start.  The interleaving the protocol rules out::

    reader (dread/submit)           invalidation
    s = read_begin(sub)
    walk: record entry E
                                    start: seq |= 1; callback: set_seq(sub, seq)
                                    apply: E changes
    commit: read_retry(sub, s) -> true (E is stale): retry   <- required
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from .mm import collect
from .state import Invalidation, Notifier, Process, State, Subscription
from .threads import Gen, Thread, wait, y

T = TypeVar("T")

Callback = Callable[
    [State, Thread, Subscription, str, int, int, "int | None", bool, int], Gen[bool]
]
"""A driver's ``invalidate``: callback(st, thread, sub, event, a, b, owner,
blockable, cur_seq) -> success; found from the subscription's owner kind
(``interval_sub->ops->invalidate``)."""


def callback_of(st: State, sub: Subscription) -> Callback:
    driver = st.drivers.get(sub.owner_kind)
    assert driver is not None and driver.invalidate is not None, sub.owner_kind
    return driver.invalidate


def _make_odd(n: Notifier) -> None:
    if n.seq % 2 == 0:
        n.seq |= 1
        n.tree_when_odd = frozenset(n.tree)


def insert(st: State, proc: Process, sub: Subscription) -> None:
    n = proc.notifier
    st.subs[sub.id] = sub
    if n.active > 0:
        if n.seq % 2 == 1:
            n.deferred.append(("insert", sub.id))
        else:
            n.seq |= 1
            n.tree.add(sub.id)
            sub.in_tree = True
            n.tree_when_odd = frozenset(n.tree)
        sub.invalidate_seq = n.seq
    else:
        sub.invalidate_seq = n.seq - 1
        n.tree.add(sub.id)
        sub.in_tree = True


def remove(st: State, th: Thread, proc: Process, sub: Subscription) -> Gen[None]:
    n = proc.notifier
    if n.seq % 2 == 1:
        if ("insert", sub.id) in n.deferred:
            n.deferred.remove(("insert", sub.id))
            sub.removed = True
            return
        n.deferred.append(("remove", sub.id))
        s = n.seq
        yield from wait(st, th, lambda: n.seq != s, f"remove of subscription {sub.id}")
    else:
        n.tree.discard(sub.id)
        sub.in_tree = False
        sub.removed = True


def read_begin(st: State, th: Thread, sub: Subscription) -> Gen[int]:
    n = st.procs[sub.pid].notifier
    s = sub.invalidate_seq
    if s == n.seq:
        yield from wait(st, th, lambda: n.seq != s, f"read_begin on subscription {sub.id}")
    return s


def read_retry(sub: Subscription, s: int) -> bool:
    return sub.invalidate_seq != s


def set_seq(sub: Subscription, c: int) -> None:
    sub.invalidate_seq = c


def _end(st: State, proc: Process, inv: Invalidation) -> None:
    n = proc.notifier
    if n.running.pop(inv.id, None) is None:
        st.violate("pairing", f"invalidation {inv.id} of P{proc.pid} ends twice")
    n.active -= 1
    if n.active == 0 and n.seq % 2 == 1:
        n.seq += 1
        n.tree_when_odd = None
        for what, sid in n.deferred:
            sub = st.subs[sid]
            if what == "insert":
                n.tree.add(sid)
                sub.in_tree = True
            else:
                n.tree.discard(sid)
                sub.in_tree = False
                sub.removed = True
        n.deferred = []


def invalidate(st: State, th: Thread, proc: Process, event: str, a: int, b: int,
               owner: int | None, blockable: bool,
               apply: Callable[[], T]) -> Gen[tuple[bool, T | None]]:
    """Run ``I(event, [a,b), owner, blockable)``; ``apply`` is its apply.

    Returns ``(True, apply's result)``, or ``(False, None)`` after a failed
    callback (the op then makes no change in [a, b))."""
    n = proc.notifier
    if proc.state == "dead":
        st.violate("release_is_final", f"an invalidation starts on dead P{proc.pid}")
    hits = sorted((st.subs[sid] for sid in n.tree
                   if st.subs[sid].start < b and a < st.subs[sid].end),
                  key=lambda sub: (sub.start, sub.id))
    inv = Invalidation(st.new_id("inval"), proc.pid, event, a, b, {sub.id for sub in hits})
    n.running[inv.id] = inv
    n.active += 1
    if hits:
        _make_odd(n)
    for sub in hits:
        if sub.removed:
            st.violate("seq_protocol", f"removed subscription {sub.id} is called")
        if not blockable:
            th.nonblockable += 1
        th.in_callback += 1
        st.costs["callbacks"] += 1
        seq_before = sub.invalidate_seq
        try:
            ok = yield from callback_of(st, sub)(st, th, sub, event, a, b, owner,
                                                 blockable, n.seq)
        finally:
            th.in_callback -= 1
            if not blockable:
                th.nonblockable -= 1
        inv.pending.discard(sub.id)
        if ok:
            if not (event == "migrate" and owner == sub.owner
                    and sub.invalidate_seq == seq_before):
                sub.successes += 1  # 6(d): not an own migration's callback without set_seq (D24)
        else:
            st.costs["nonblockable_failed" if not blockable else "blockable_failed"] += 1
            if blockable:
                st.violate("no_block_when_nonblockable",
                           f"a blockable callback of subscription {sub.id} fails")
            _end(st, proc, inv)
            yield from y()  # Y1
            return (False, None)
        yield from y()  # Y1
    st.applying = inv
    result = apply()
    st.applying = None
    collect(st)
    yield from y()  # Y2
    _end(st, proc, inv)
    return (True, result)
