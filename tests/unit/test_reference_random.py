"""Random smoke test of the reference model: random op sequences under random
thread interleavings must never raise and never report a violation."""

from __future__ import annotations

import random
import time

from model.interface import Config
from model.ops import (
    Blocked,
    Complete,
    Dma,
    Done,
    Dread,
    Dwrite,
    Err,
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
from model.reference import ReferenceKernel


class RandomTrace:
    """Draws ops over a small address space, reserving handles as a parser would."""

    PROLOGUE: tuple[Op, ...] = (
        Mmap(0, 0, 1024, "rw", "private", True),
        Mmap(0, 1024, 256, "rw", "shared"),
        Open(0, "mirror", 0),
        Open(0, "userptr", 1),
        Open(0, "pin", 2),
    )

    def __init__(self, rng: random.Random, kernel: ReferenceKernel) -> None:
        self.rng = rng
        self.kernel = kernel
        self.next = {"P": 1, "D": 3, "R": 0, "J": 0}

    def _pick(self, letter: str, known: list[int]) -> int:
        """Mostly a handle that exists, sometimes any reserved number."""
        if known and self.rng.random() < 0.9:
            return self.rng.choice(known)
        return self.rng.randrange(max(1, self.next[letter]))

    def _rng_range(self, p: int) -> tuple[int, int]:
        r = self.rng
        vmas = self.kernel.vmas(p)
        if vmas and r.random() < 0.85:
            vma = r.choice(vmas)
            s = r.randrange(vma.start, vma.end)
        else:
            s = r.choice([0, 0, 256, 500, 512, 1000, r.randrange(2048)])
        n = r.choice([1, 2, 16, 64, 100, 512, 600, 1024, r.randrange(1, 1100)])
        return s, n

    def _take(self, letter: str) -> int:
        num = self.next[letter]
        self.next[letter] += 1
        return num

    def op(self) -> Op:
        r = self.rng
        st = self.kernel.state
        p = self._pick("P", [q.pid for q in st.procs.values() if q.valid and q.state == "live"])
        devs: dict[str, list[int]] = {"mirror": [], "userptr": [], "pin": []}
        for dev in st.devices.values():
            if not dev.dead:
                devs[dev.kind].append(dev.id)
        regs: dict[str, list[int]] = {"userptr": [], "pin": []}
        for g in st.regions.values():
            if not g.gone:
                regs[g.kind].append(g.id)
        mirror = self._pick("D", devs["mirror"])
        userptr = self._pick("D", devs["userptr"])
        pin_dev = self._pick("D", devs["pin"])
        obj = self._pick("R", regs["userptr"])
        region = self._pick("R", regs["pin"])
        s, n = self._rng_range(p)
        x = r.randrange(-5, 100)
        kind = r.choice(["mmap"] * 4 + ["munmap", "mremap", "mprotect", "madvise", "fork",
                         "migrate", "reclaim", "open", "dread", "dwrite",
                         "snapshot", "migrate_to_dev", "evict", "reg", "submit", "complete",
                         "unreg", "pin", "dma", "unpin"] * 3 + ["read", "write"] * 12)
        if r.random() < 0.01:
            kind = r.choice(["exit", "oomreap"])
        if kind == "mmap":
            return Mmap(p, s, n, r.choice(["rw", "rw", "r", "none"]),
                        r.choice(["private", "private", "shared"]), r.random() < 0.5)
        if kind == "munmap":
            return Munmap(p, s, n)
        if kind == "mremap":
            return Mremap(p, s, min(n, 300), r.randrange(4096))
        if kind == "mprotect":
            return Mprotect(p, s, n, r.choice(["rw", "r", "none"]))
        if kind == "madvise":
            return Madvise(p, s, n, r.choice(["dontneed", "hugepage", "nohugepage"]))
        if kind == "fork":
            return Fork(p, self._take("P"))
        if kind == "exit":
            return Exit(p)
        if kind in ("migrate", "reclaim"):
            return (Migrate if kind == "migrate" else Reclaim)(p, s, n)
        if kind == "oomreap":
            return Oomreap(p)
        if kind == "open":
            return Open(p, r.choice(["mirror", "mirror", "userptr", "pin"]), self._take("D"))
        if kind == "dread":
            return Dread(mirror, s, min(n, 200))
        if kind == "dwrite":
            return Dwrite(mirror, s, min(n, 200), x, r.choice([None, 1]))
        if kind == "snapshot":
            return Snapshot(mirror, s, min(n, 200))
        if kind == "migrate_to_dev":
            return MigrateToDev(mirror, s, min(n, 100))
        if kind == "evict":
            return Evict(mirror)
        if kind == "reg":
            return Reg(userptr, s, min(n, 64), r.choice(["ro", "rw"]), self._take("R"))
        if kind == "submit":
            return Submit(obj, r.choice(["read", "write"]), 0, r.randrange(1, 8), x, None,
                          self._take("J"))
        if kind == "complete":
            return self.complete()
        if kind == "unreg":
            return Unreg(obj)
        if kind == "pin":
            return Pin(pin_dev, s, min(n, 64), r.choice(["ro", "rw"]), self._take("R"))
        if kind == "dma":
            return Dma(region, r.choice(["read", "write"]), 0, 1, x)
        if kind == "unpin":
            return Unpin(region)
        v = s if r.random() < 0.9 else r.randrange(2048)
        return Read(p, v) if kind == "read" else Write(p, v, x)

    def complete(self) -> Op:
        jobs = self.kernel.active_jobs()
        return Complete(jobs[0] if jobs else self.rng.randrange(max(1, self.next["J"])))


def run_random(seed: int, lines: int, frames: int = 4096,
               threads: int = 4) -> tuple[ReferenceKernel, int]:
    """Run ``lines`` random lines with up to ``threads`` Tn threads at once;
    return the kernel and the steps taken."""
    rng = random.Random(seed)
    kernel = ReferenceKernel(Config(frames=frames, device_frames=rng.choice([8, 64, 1024])))
    trace = RandomTrace(rng, kernel)
    steps = 0
    log: list[str] = []
    for num, op in enumerate(RandomTrace.PROLOGUE):
        kernel.start(f"L{num}", op)
        while not isinstance(kernel.step(f"L{num}"), Done):
            pass
    for line in range(len(RandomTrace.PROLOGUE), lines):
        live = kernel.live_threads()
        choice = rng.random()
        busy = 0.45 if threads <= 4 else 0.7
        if live and choice < busy:
            who = rng.choice(live)
            result = kernel.step(who)
            log.append(f"step {who} => {result}")
            steps += 1
            assert not isinstance(result, Err)
        elif choice < busy + 0.15 and len(live) < threads:
            name = f"T{rng.randrange(threads + 2)}"
            op = trace.op()
            log.append(f"{name} = {op} => {kernel.start(name, op)}")
        else:
            name = f"L{line}"
            op = trace.op()
            assert kernel.start(name, op) is not None
            while True:
                out = kernel.step(name)
                steps += 1
                if isinstance(out, Done | Blocked):
                    break
            log.append(f"{name}: {op} => {out}")
        violations = kernel.take_violations()
        assert not violations, (seed, line, violations[:3], log[-60:])
    for _ in range(200):  # drain: complete jobs, step every thread
        for job in kernel.active_jobs():
            kernel.start("L999999", Complete(job))
            kernel.step("L999999")
        outs = [kernel.step(name) for name in kernel.live_threads()]
        steps += len(outs)
        violations = kernel.take_violations()
        assert not violations, (seed, "drain", violations[:3], log[-60:])
        if all(isinstance(o, Blocked) for o in outs) and not kernel.active_jobs():
            break
    kernel.observe()
    return kernel, steps


def test_random_sequences_raise_nothing_and_violate_nothing() -> None:
    for seed in range(25):
        run_random(seed, 120, frames=random.Random(seed).choice([600, 4096]))


def test_random_many_threads() -> None:
    for seed in range(100, 110):
        run_random(seed, 150, threads=8)


def test_random_speed_is_reasonable() -> None:
    start = time.perf_counter()
    _kernel, steps = run_random(1000, 150)
    assert steps > 0
    assert time.perf_counter() - start < 20
