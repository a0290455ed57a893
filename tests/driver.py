"""A test driver for one implementation: runs plain ops to completion and
steps named threads, failing the test on any invariant violation."""

from __future__ import annotations

from model.interface import Config, Factory
from model.observation import Observation
from model.ops import OK, Done, Err, Op, OpResult, StepOutcome, Yielded


class Driver:
    def __init__(self, factory: Factory, **config: int) -> None:
        self.k = factory(Config(**config))  # type: ignore[arg-type]
        self.line = 0

    def start(self, name: str, op: Op) -> None:
        assert self.k.start(name, op) == OK

    def step(self, name: str) -> StepOutcome | Err:
        out = self.k.step(name)
        self.clean()
        return out

    def clean(self) -> None:
        assert self.k.take_violations() == []

    def steps(self, op: Op) -> list[StepOutcome | Err]:
        """Run ``op`` as the next plain thread ``Li``; every step's outcome."""
        self.line += 1
        name = f"L{self.line}"
        self.start(name, op)
        outs: list[StepOutcome | Err] = []
        while True:
            outs.append(self.step(name))
            if not isinstance(outs[-1], Yielded):
                return outs

    def run(self, op: Op) -> OpResult | str:
        """The line result of ``op`` as a plain op: its result, or ``blocked Li``."""
        last = self.steps(op)[-1]
        if isinstance(last, Done):
            return last.result
        return f"blocked L{self.line}" if not isinstance(last, Err) else str(last)

    def obs(self) -> Observation:
        return self.k.observe()
