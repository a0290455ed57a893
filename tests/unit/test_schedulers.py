"""fuzz.schedulers: determinism, totality, and the PCT priority rules."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from fuzz.schedulers import PCT, Scheduler, Uniform

THREADS = ["T1", "T2", "T3", "L4"]


def choices(scheduler: Scheduler, rounds: int, threads: list[str] = THREADS) -> list[str]:
    return [scheduler.choose(threads) for _ in range(rounds)]


@pytest.mark.parametrize("make", [
    lambda rng: Uniform(rng),
    lambda rng: PCT(rng, depth=3, max_steps=20),
])
def test_same_seed_same_run(make: object) -> None:
    runs = []
    for _ in range(2):
        sched = make(random.Random(7))  # type: ignore[operator]
        out = choices(sched, 30)
        sched.forget(out[-1])
        out += choices(sched, 10, THREADS[1:])
        runs.append(out)
    assert runs[0] == runs[1]
    other = [choices(make(random.Random(s)), 30) for s in range(8)]  # type: ignore[operator]
    assert any(o != runs[0][:30] for o in other)  # the seed matters


@pytest.mark.parametrize("sched", [Uniform(random.Random(1)), PCT(random.Random(1))])
def test_choice_is_one_of_the_threads(sched: Scheduler) -> None:
    rng = random.Random(2)
    for _ in range(200):
        threads = rng.sample(THREADS, rng.randrange(1, len(THREADS) + 1))
        assert sched.choose(threads) in threads
    with pytest.raises(ValueError):
        sched.choose([])


def test_uniform_reaches_every_thread_evenly() -> None:
    counts = Counter(choices(Uniform(random.Random(3)), 4000))
    assert set(counts) == set(THREADS)
    assert min(counts.values()) > 800  # 1000 expected each


def test_pct_depth_one_runs_the_top_thread_until_it_leaves() -> None:
    sched = PCT(random.Random(4), depth=1, max_steps=10)
    first = sched.choose(THREADS)
    assert choices(sched, 50) == [first] * 50
    assert first == max(THREADS, key=sched.priority)
    rest = [t for t in THREADS if t != first]
    second = sched.choose(rest)
    assert second == max(rest, key=sched.priority)


def test_pct_initial_priorities_are_distinct_and_random() -> None:
    tops: Counter[str] = Counter()
    for seed in range(400):
        sched = PCT(random.Random(seed), depth=3, max_steps=5)
        sched.choose(THREADS)
        prios = [sched.priority(t) for t in THREADS]
        assert len(set(prios)) == len(THREADS)
        # above every change-point priority, unless dropped at a change point already
        kept = [p for t, p in zip(THREADS, prios, strict=True) if t not in sched.lowered]
        assert all(p >= sched.depth for p in kept)
        first = PCT(random.Random(seed), depth=1)
        tops[first.choose(THREADS)] += 1
    assert set(tops) == set(THREADS)
    assert min(tops.values()) > 60  # 100 expected each


def test_pct_change_point_drops_the_running_thread_to_the_bottom() -> None:
    sched = PCT(random.Random(5), depth=2, max_steps=10)
    (point,) = sched.change_points
    assert 1 <= point <= 10 and sched.change_points[point] == 1
    out = choices(sched, 12)
    top = out[0]
    assert out[: point - 1] == [top] * (point - 1)
    assert top not in out[point - 1:]  # demoted at the change point
    assert sched.priority(top) == 1 < min(sched.priority(t) for t in THREADS if t != top)


def test_pct_change_points_are_distinct_and_in_range() -> None:
    for seed in range(100):
        sched = PCT(random.Random(seed), depth=5, max_steps=6)
        assert len(sched.change_points) == 4
        assert all(1 <= k <= 6 for k in sched.change_points)
        assert sorted(sched.change_points.values()) == [1, 2, 3, 4]


def test_pct_forget_makes_a_reused_name_new() -> None:
    sched = PCT(random.Random(6), depth=1)
    sched.choose(["T1", "T2"])
    assert sched.priority("T1") > 0
    sched.forget("T1")
    assert sched.priority("T1") == 0
    assert sched.choose(["T1"]) == "T1"
    assert sched.priority("T1") > 0


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        PCT(random.Random(0), depth=0)
    with pytest.raises(ValueError):
        PCT(random.Random(0), max_steps=0)
