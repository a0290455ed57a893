"""Argument drawing for the stateful engine: values as bugs like them.

:class:`Arguments` is the half of ``fuzz.stateful.MirrorMachine`` that picks
an op's arguments from what the machine knows exists (live pids, devices,
registered regions, the guide's VMAs), biased the way bugs in this area like
them: 512-page boundaries of a window of 8 huge pages at page 0, VMA edges,
edges of pinned and registered ranges, pages inside VMAs, recently used
addresses, the process of the device last used, small counts, counts that
reach or straddle the next edge; values are fresh (distinct, so reads tell
writes apart); about 1 draw in 20 is wild (EINVAL, ESRCH, EFAULT paths).

Every choice is a Hypothesis draw whose simplest value is the plainest one
(P0, the first address category, count 1), so that examples shrink well.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from hypothesis import strategies as st

from fuzz.guide import Guide
from fuzz.strategies import booleans, draw, integers, sampled_from
from fuzz.trace import StepLine
from model import ops as m
from model.decl import Arg, OpDecl, device_kinds
from model.ops import (
    ADDRESS_PAGES,
    HUGE_PAGES,
    MAX_VALUE_PAGES,
    SCHEMA_BY_KEYWORD,
    WORD_MAX,
    WORD_MIN,
    LineResult,
)

BLOCKS: Final = 8
WINDOW: Final = BLOCKS * HUGE_PAGES
"""Addresses mostly lie in [0, WINDOW): 8 huge pages from page 0."""
REGION_PAGES: Final = HUGE_PAGES + 1
"""The most pages a userptr object or a pin region spans: registering
faults every page in, and the reference checks every invariant over every
resident page at every step, so that big regions only slow examples down."""
RECENT: Final = 8
WILD_ADDRESSES: Final = (-1, ADDRESS_PAGES - 1, ADDRESS_PAGES, 1 << 40)
WILD_COUNTS: Final = (0, -1, MAX_VALUE_PAGES + 1, ADDRESS_PAGES)
WILD_WORDS: Final = (WORD_MAX, WORD_MIN, 1 << 63, -(1 << 64))

STRIDES: Final = sampled_from((None, 1, 0, -1, 7))
WILD: Final = integers(0, 19).map(lambda k: k == 19)
"""True about one time in 20; shrinks to False."""


def choices(arg: Arg) -> st.SearchStrategy[str]:
    """An enum's values, the heaviest (as the codec weighs them) first: the
    simplest draw is the most common value."""
    return sampled_from([str(v) for v, _ in arg.ranked])


@dataclass(frozen=True)
class Region:
    """A userptr object or pin region created successfully."""

    r: int
    d: int
    p: int
    s: int
    n: int
    mode: str


class Arguments:
    """Draws arguments from the handles and VMAs a machine knows of."""

    guide: Guide
    lines: list[StepLine]
    reserved: dict[str, int]
    pids: list[int]  # created, not exited nor reaped
    gone: list[int]
    devices: dict[str, list[tuple[int, int]]]  # kind -> [(device, its pid)]
    regions: dict[str, list[Region]]
    recent: deque[int]
    device_pid: int | None  # the process of the device or region last used

    def __init__(self) -> None:
        super().__init__()
        self.reserved = dict(m.FIRST_HANDLE)
        self.pids = [0]
        self.gone = []
        self.devices = {kind: [] for kind in device_kinds()}
        self.regions = {d.keyword: [] for d in SCHEMA_BY_KEYWORD.values() if d.reserves == "R"}
        self.recent = deque(maxlen=RECENT)
        self.device_pid = None

    def _append(self, line: StepLine) -> LineResult | None:
        raise NotImplementedError  # the machine appends (and runs) the line

    def _pid(self, data: st.DataObject, choices: Sequence[int] | None = None) -> int:
        """A live pid, often the process of the device last used (whose
        invalidations that device sees); rarely a gone one (ESRCH) or one not
        yet created (EINVAL)."""
        pool = choices or self.pids
        if not pool or draw(data, WILD, label="wild pid"):
            return draw(data, sampled_from([*self.gone, self.reserved["P"]]))
        mine = self.device_pid
        if mine is not None and mine in pool and draw(data, booleans(), label="device's pid"):
            return mine
        return draw(data, sampled_from(pool), label="pid")

    def _device(self, data: st.DataObject, kind: str) -> tuple[int, int]:
        """(device, its pid); rarely a device of another kind (EINVAL)."""
        pool = self.devices[kind]
        if draw(data, WILD, label="wild device"):
            pool = [dev for k, devs in self.devices.items() if k != kind for dev in devs] or pool
        d, p = draw(data, sampled_from(pool), label="device")
        self.device_pid = p
        return d, p

    def _region(self, data: st.DataObject, kind: str) -> Region:
        g = draw(data, sampled_from(self.regions[kind]), label="region")
        self.device_pid = g.p
        return g

    def _need_device(self, data: st.DataObject, kind: m.DeviceKind) -> tuple[int, int]:
        """A device of ``kind`` for an op that needs one: when none exists,
        the line that opens one is appended first (syzkaller's way with
        resources), so that device ops never wait for an ``open`` to come
        along by chance."""
        if not self.devices[kind]:
            p = self._pid(data)
            self._append(StepLine(m.Open(p, kind)))
            if not self.devices[kind]:  # the open failed (a gone pid): EINVAL next
                return self.reserved["D"], p
        return self._device(data, kind)

    def _need_region(self, data: st.DataObject, made_by: str) -> Region | None:
        """A region made by op ``made_by`` (a userptr object by ``reg``, a pin
        region by ``pin``) for an op that needs one: when none exists, the
        lines that open a device and register a range of one of its
        process's VMAs are appended first.  None when that failed."""
        if not self.regions[made_by]:
            maker = SCHEMA_BY_KEYWORD[made_by]
            op = self._draw_op(data, maker)
            if op is None:
                return None
            self._append(StepLine(op))
            if not self.regions[made_by]:
                return None
        return self._region(data, made_by)

    # ------------------------------------------------------- ops by role

    def _draw_op(self, data: st.DataObject, decl: OpDecl) -> m.Op | None:
        """An op of ``decl`` with each field drawn by its role, in the
        declaration's draw order; None when a region it needs could not be
        made.  The reserved handle is filled when the line is appended."""
        ctx: dict[str, object] = {}
        pid = 0
        region: Region | None = None
        for name in decl.draw_order:
            arg = decl.arg(name)
            value: object
            if arg.role in ("pid", "victim"):
                value = pid = self._pid(data)
            elif arg.role == "device":
                value, pid = self._need_device(data, arg.of or "")
            elif arg.role == "region":
                region = self._need_region(data, arg.of or "") if decl.retires is None else (
                    self._region(data, arg.of or ""))
                if region is None:
                    return None
                value, pid = region.r, region.p
            elif arg.role == "job":
                value = draw(data, sampled_from(self.guide.jobs()), label="job")
            elif arg.role == "addr":
                value = self._address(data, pid)
            elif arg.role == "count":
                # a region, or a CPU range access (one step per page), spans at most
                # REGION_PAGES: every step of it is checked on both sides
                cap = REGION_PAGES if decl.reserves == "R" or decl.access else (arg.cap or WINDOW)
                start = ctx[arg.of or "s"]
                assert isinstance(start, int)
                value = self._count(data, pid, start, cap)
            elif arg.role in ("off", "cnt"):
                assert region is not None
                if "off" not in ctx:
                    ctx["off"], ctx["cnt"] = self._window(data, region)
                continue
            elif arg.role in ("word", "stride") and ctx.get("direction") == "read":
                value = None  # a read job or DMA carries no payload
            elif arg.role == "word":
                value = self._word(data)
            elif arg.role == "stride":
                value = draw(data, STRIDES, label="stride")
            elif arg.role == "flag":
                value = draw(data, booleans(), label=name)
            else:
                value = draw(data, choices(arg), label=name)
            ctx[name] = value
        return decl.cls(**ctx)  # type: ignore[no-any-return]

    def _edges(self, pid: int) -> list[int]:
        edges = {HUGE_PAGES * k for k in range(BLOCKS + 1)}
        for vma in self.guide.vmas(pid):
            edges.update((vma.start, vma.end))
        for kind in self.regions.values():
            for g in kind:
                edges.update((g.s, g.s + g.n))
        return sorted(edges)

    def _address(self, data: st.DataObject, pid: int) -> int:
        how = "wild" if draw(data, WILD, label="wild address") else draw(data, sampled_from(
            ("boundary", "inside", "inside", "edge", "recent", "window", "region")),
            label="address kind")
        vmas = self.guide.vmas(pid)
        regions = [g for kind in self.regions.values() for g in kind]
        if how == "inside" and vmas:
            vma = draw(data, sampled_from(vmas))
            v = vma.start + draw(data, integers(0, vma.end - vma.start - 1))
        elif how == "edge" and vmas:
            vma = draw(data, sampled_from(vmas))
            v = draw(data, sampled_from((vma.start, vma.end))) + draw(data,
                sampled_from((0, -1, 1, -2, 2)))
        elif how == "recent" and self.recent:
            v = draw(data, sampled_from(list(self.recent)))
        elif how == "region" and regions:
            g = draw(data, sampled_from(regions))
            v = draw(data, sampled_from((g.s, g.s + g.n - 1, g.s + g.n, g.s - 1)))
        elif how == "window":
            v = draw(data, integers(0, WINDOW - 1))
        elif how == "wild":
            v = draw(data, sampled_from(WILD_ADDRESSES))
        else:
            v = HUGE_PAGES * draw(data, integers(0, BLOCKS - 1)) + draw(data,
                sampled_from((0, 1, -1, 4, -4)))
        v = max(v, 0) if how != "wild" else v
        self.recent.appendleft(v)
        return v

    def _count(self, data: st.DataObject, pid: int, s: int, cap: int = WINDOW) -> int:
        how = "wild" if draw(data, WILD, label="wild count") else draw(data, sampled_from(
            ("small", "fit", "fit", "to_edge", "to_edge", "huge", "big")), label="count kind")
        if how == "fit":  # stay inside the VMA holding s
            room = next((v.end - s for v in self.guide.vmas(pid) if v.start <= s < v.end), 0)
            if room > 0:
                return min(cap, draw(data, sampled_from((room, 1, min(room, 16)))))
        if how == "to_edge":
            above = [e for e in self._edges(pid) if e > s]
            if above:
                e = draw(data, sampled_from(above))
                return max(1, e - s + draw(data, sampled_from((0, 1, -1, 3))))
        if how == "huge":
            return draw(data, sampled_from((HUGE_PAGES, 2 * HUGE_PAGES, HUGE_PAGES + 1,
                                              HUGE_PAGES - 1, 4 * HUGE_PAGES)))
        if how == "big":
            return draw(data, integers(1, cap))
        if how == "wild":
            return draw(data, sampled_from(WILD_COUNTS))
        return draw(data, integers(1, 16))

    def _word(self, data: st.DataObject) -> int:
        if draw(data, WILD, label="wild word"):
            return draw(data, sampled_from(WILD_WORDS))
        return 100 + len(self.lines)  # fresh: reads tell writes apart

    def _range(self, data: st.DataObject, pid: int, cap: int = WINDOW) -> tuple[int, int]:
        s = self._address(data, pid)
        return s, self._count(data, pid, s, cap)

    def _window(self, data: st.DataObject, g: Region) -> tuple[int, int]:
        """(off, cnt) into a region of ``g.n`` pages."""
        how = draw(data, sampled_from(("all", "one", "tail")), label="window")
        if draw(data, WILD, label="wild window"):
            how = draw(data, sampled_from(("past", "wild")))
        if how == "one":
            return draw(data, integers(0, g.n - 1)), 1
        if how == "tail":
            off = draw(data, integers(0, g.n - 1))
            return off, g.n - off
        if how == "past":
            return 0, g.n + 1
        if how == "wild":
            return draw(data, sampled_from(((-1, 1), (g.n, 1), (0, 0))))
        return 0, g.n

    def _payload(self, data: st.DataObject, direction: str) -> tuple[int | None, int | None]:
        if direction == "read":
            return None, None
        stride = draw(data, STRIDES, label="stride")
        return self._word(data), stride
