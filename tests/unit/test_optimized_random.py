"""Random smoke test of the optimized implementation: random ops and random
interleavings never raise, never report a violation, always drain, and the
final state after every process exits holds no memory."""

from __future__ import annotations

import random

from model.interface import Config
from model.ops import (
    Blocked,
    Complete,
    Dma,
    Dread,
    Dwrite,
    Evict,
    Exit,
    Fork,
    Madvise,
    Migrate,
    MigrateToDev,
    Mmap,
    Mprotect,
    Mremap,
    Munmap,
    Oomreap,
    Op,
    Open,
    Pin,
    Read,
    Reclaim,
    Reg,
    Snapshot,
    Submit,
    Unpin,
    Unreg,
    Write,
)
from model.optimized import OptimizedKernel


class Gen:
    """A random op source with static handle reservation (SPEC §2)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.pids = [0]
        self.devs: list[tuple[int, str]] = []
        self.regs: list[tuple[int, str]] = []
        self.jobs: list[int] = []

    def pick(self, items: list[tuple[int, str]], kind: str) -> int:
        c = [i for i, k in items if k == kind]
        return self.rng.choice(c) if c else 0

    def op(self) -> Op:
        r = self.rng
        p = 0 if r.random() < 0.6 else r.choice(self.pids)
        s = r.choice([0, 1, 100, 500, 512, 700, 1024])
        n = r.choice([1, 8, 64, 512, 600])
        v = r.choice([r.randrange(1100), r.randrange(8), 512 + r.randrange(8)])
        c = r.randrange(30)
        if c == 0:
            return Mmap(p, r.choice([0, 512, 3]), r.choice([16, 600, 1024]),
                        r.choice(["r", "rw", "rw", "none"]), r.choice(["private", "shared"]),
                        r.random() < 0.5)
        if c == 1:
            return Munmap(p, s, n)
        if c == 2:
            return Mremap(p, s, r.choice([1, 8, 512]), 4096)
        if c == 3:
            return Mprotect(p, s, n, r.choice(["none", "r", "rw"]))
        if c == 4:
            return Madvise(p, s, n, r.choice(["dontneed", "hugepage", "nohugepage"]))
        if c == 5:
            self.pids.append(len(self.pids))
            return Fork(p, self.pids[-1])
        if c == 6 and r.random() < 0.2:
            return Exit(r.choice(self.pids))
        if c in (7, 8, 9):
            return Write(p, v, r.randrange(100))
        if c == 10:
            kind = r.choice(["mirror", "userptr", "pin"])
            self.devs.append((len(self.devs), kind))
            return Open(p, kind, len(self.devs) - 1)  # type: ignore[arg-type]
        mirror = self.pick(self.devs, "mirror")
        if c == 11:
            return Dread(mirror, v, r.choice([1, 70]))
        if c == 12:
            return Dwrite(mirror, v, r.choice([1, 70]), r.randrange(100), 1)
        if c == 13:
            return Snapshot(mirror, v, 8)
        if c == 14:
            return MigrateToDev(mirror, v, r.choice([1, 4]))
        if c == 15:
            return Evict(mirror)
        if c == 16:
            self.regs.append((len(self.regs), "u"))
            return Reg(self.pick(self.devs, "userptr"), v, 4, r.choice(["ro", "rw"]),
                       len(self.regs) - 1)
        if c == 17:
            self.jobs.append(len(self.jobs))
            return Submit(self.pick(self.regs, "u"), r.choice(["read", "write"]), 0, 1, 5,
                          job=len(self.jobs) - 1)
        if c == 18:
            return Complete(r.choice(self.jobs) if self.jobs else 0)
        if c == 19:
            return Unreg(self.pick(self.regs, "u"))
        if c == 20:
            self.regs.append((len(self.regs), "p"))
            return Pin(self.pick(self.devs, "pin"), v, 4, r.choice(["ro", "rw"]),
                       len(self.regs) - 1)
        if c == 21:
            return Dma(self.pick(self.regs, "p"), r.choice(["read", "write"]), 0, 1, 3)
        if c == 22:
            return Unpin(self.pick(self.regs, "p"))
        if c in (23, 24):
            return Migrate(p, s, n) if r.random() < 0.5 else Reclaim(p, s, n)
        if c == 25 and r.random() < 0.3:
            return Oomreap(p)
        return Read(p, v)


def run_one(seed: int, steps: int = 150) -> None:
    rng = random.Random(seed)
    k = OptimizedKernel(Config(frames=rng.choice([40, 700, 4096]), device_frames=8))
    g = Gen(rng)
    t = 0
    for _ in range(steps):
        live = k.live_threads()
        if live and rng.random() < 0.5:
            k.step(rng.choice(live))
        else:
            name = f"T{t}"
            t += 1
            k.start(name, g.op())
            if rng.random() < 0.7:
                while name in k.live_threads() and not isinstance(k.step(name), Blocked):
                    pass
        assert k.take_violations() == [], seed
    for pid in range(len(g.pids)):  # exit everything, then drain (SPEC §5.4)
        k.start(f"T{t}", Exit(pid))
        t += 1
    for _ in range(2000):
        for j in k.active_jobs():
            k.start(f"T{t}", Complete(j))
            k.step(f"T{t}")
            t += 1
        outs = [k.step(name) for name in k.live_threads()]
        if all(isinstance(o, Blocked) for o in outs) and not k.active_jobs():
            break
    assert k.take_violations() == [], seed
    assert k.live_threads() == [], seed  # no deadlock
    for r, kind in g.regs:
        if kind == "p":
            k.start(f"T{t}", Unpin(r))
            k.step(f"T{t}")
            t += 1
    o = k.observe()
    assert o.pages_in_use == 0 and o.swap_in_use == 0, seed
    assert all(d.pages_in_use == 0 for d in o.devices), seed


def test_random_traces_never_fail() -> None:
    for seed in range(60):
        run_one(seed)
