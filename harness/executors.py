"""Executors turn a list of run configs into finished runs in the store.

`local` runs them one after another in this process. A run that raises is recorded in the summary
and the sweep goes on; a diverged run is stored (status "diverged") like any other.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field

from .config import RunConfig
from .errors import HarnessError
from .progress import progress_bar
from .run import Evaluations, RunRecord, execute
from .store import RunStore


@dataclass
class SweepSummary:
    records: list[RunRecord] = field(default_factory=list)
    failures: list[tuple[RunConfig, str]] = field(default_factory=list)
    wall_time_s: float = 0.0

    @property
    def done(self) -> int:
        return sum(not r.cached for r in self.records)

    @property
    def cached(self) -> int:
        return sum(r.cached for r in self.records)

    def line(self) -> str:
        return (
            f"{len(self.records) + len(self.failures)} runs: {self.done} trained, {self.cached} cached, "
            f"{len(self.failures)} failed, {self.wall_time_s:.1f} s"
        )


def run_local(configs: list[RunConfig], store: RunStore, force: bool = False, evaluations: Evaluations = Evaluations()) -> SweepSummary:
    summary = SweepSummary()
    t0 = time.perf_counter()
    bar = progress_bar(total=len(configs), desc="sweep", unit="run")
    for cfg in configs:
        try:
            summary.records.append(execute(cfg, store, force=force, evaluations=evaluations))
        except HarnessError:
            raise  # bad input is the user's to fix, not a failed run
        except Exception as exc:  # a crashing run must not take the sweep down
            summary.failures.append((cfg, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
        bar.update(1)
        bar.set_postfix(failed=len(summary.failures))
    bar.close()
    summary.wall_time_s = time.perf_counter() - t0
    return summary
