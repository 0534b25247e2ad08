"""A sweep's units of work and its tally: `Task` (one run to compute, or to evaluate), `SweepSummary`
(what the sweep computed, found cached, saw fail or skipped, and how long it waited)."""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.config import RunConfig
from harness.store.identity import run_id
from harness.sweep.evaluations import Evaluations
from harness.sweep.run import RunRecord


@dataclass
class Task:
    cfg: RunConfig
    evaluations: Evaluations
    evaluate_only: bool = False  # the run is trained; only evaluations are missing
    state: bytes | None = None  # its checkpoint, read once the run is leased
    attempts: int = 0

    @property
    def run_id(self) -> str:
        return run_id(self.cfg)


@dataclass
class SweepSummary:
    records: list[RunRecord] = field(default_factory=list)
    failures: list[tuple[RunConfig, str]] = field(default_factory=list)
    skipped: list[tuple[RunConfig, str]] = field(default_factory=list)  # failed earlier, or leased by another sweep
    wall_time_s: float = 0.0
    waited: int = 0  # runs found leased by another process and waited for
    waited_s: float = 0.0  # time spent waiting for them

    @property
    def done(self) -> int:
        return sum(not r.cached for r in self.records)

    @property
    def cached(self) -> int:
        return sum(r.cached for r in self.records)

    def line(self) -> str:
        total = len(self.records) + len(self.failures) + len(self.skipped)
        waited = (
            f" (waited {self.waited_s:.0f} s for {self.waited} runs leased by another process)" if self.waited else ""
        )
        return (
            f"{total} runs: {self.done} computed, {self.cached} cached, {len(self.failures)} failed, "
            f"{len(self.skipped)} skipped, {self.wall_time_s:.1f} s{waited}"
        )
