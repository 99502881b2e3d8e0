"""Scenario traces and the workloads they run, for the evaluation world.

Workloads are Dynamic-OFA's own Xavier NX measurements (REFERENCE.md / its repository): the GPU points
(top-1 % @ ms) 74.2@41, 75.0@45, 76.1@49, 77.5@51, 78.3@57, 79.0@62, and the CPU points of the paper
figure, 72.5 % @ 0.50 s to 78.5 % @ 1.85 s (7 points, latencies geometric in between: an interpolation).
The same numbers are the controllers' operating-point tables (what a user measured) and the world's
truth alone at the top clock (which the world then perturbs per unit, seed and condition).
"""
from __future__ import annotations

import functools
import random
from dataclasses import dataclass

from dynofa_ros.evaluation.world import CoRunner, Job
from dynofa_ros.operating_points import OperatingPointTable, table_from_dict

GPU_POINTS = ((74.2, 41.0), (75.0, 45.0), (76.1, 49.0), (77.5, 51.0), (78.3, 57.0), (79.0, 62.0))
CPU_POINTS = tuple((72.5 + i, 500.0 * (1850.0 / 500.0) ** (i / 6)) for i in range(7))
TABLE_P95 = 1.10          # the tables' p95 / median (ASSUMPTION: what a 500-run measurement gives)


@dataclass(frozen=True)
class Workload:
    name: str
    device_key: str         # table device key
    processor: str          # world processor its threads run on
    rate_hz: float
    points: tuple[tuple[float, float], ...]

    def point_ids(self) -> list[str]:
        return [f"{self.name}-{i}" for i in range(len(self.points))]

    def table(self, latency_scale: float = 1.0) -> OperatingPointTable:
        """The operating-point table a controller is given; `latency_scale` mis-calibrates it."""
        return _table(self, latency_scale)

    def job(self) -> Job:
        return Job(self.name, self.processor, self.rate_hz,
                   {pid: ms for pid, (_, ms) in zip(self.point_ids(), self.points)})

    def accuracy(self, point_id: str) -> float:
        return self.points[self.point_ids().index(point_id)][0] / 100.0


@functools.lru_cache(maxsize=64)
def _table(w: Workload, latency_scale: float) -> OperatingPointTable:
    pts = [dict(id=pid, architecture=f"{w.name} level {i}", graph_variant="eager", bn_stats=None,
                resolution=160 + 8 * i, accuracy=acc / 100.0, mflops=150.0 + 40 * i, params_m=4.0 + 0.5 * i,
                memory_mb=18.0 + 3 * i,
                latency_ms={w.device_key: {"median": ms * latency_scale, "p95": ms * latency_scale * TABLE_P95}})
           for i, (pid, (acc, ms)) in enumerate(zip(w.point_ids(), w.points))]
    return table_from_dict(dict(version=1, devices=[w.device_key], points=pts,
                                supernet=dict(family="ofa_mbv3", checkpoint="none.pt", num_classes=1000,
                                              normalization=dict(mean=[0.5] * 3, std=[0.25] * 3), in_channels=3)))


WORKLOADS = (Workload("camera", "cuda", "gpu", 10.0, GPU_POINTS),
             Workload("cpu_net", "cpu", "cpu0", 0.4, CPU_POINTS))
BASE_TARGETS = {"camera": 60.0, "cpu_net": 1400.0}
BURST = CoRunner(cpu_cores=4.5, gpu_share=0.3, mem_traffic=0.35)   # a CPU+GPU co-running process


@dataclass(frozen=True)
class Phase:
    start_s: float
    label: str
    ambient_c: float = 25.0
    targets_ms: tuple[tuple[str, float], ...] = tuple(BASE_TARGETS.items())


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    duration_s: float
    phases: tuple[Phase, ...]
    bursts: tuple[tuple[float, float], ...] = ()      # (start, end) of co-runner bursts
    battery_wh: float = 20.0
    battery_percent: float = 90.0

    def phase_index(self, t: float) -> int:
        return max(i for i, p in enumerate(self.phases) if t >= p.start_s - 1e-9)

    def conditions(self, t: float) -> tuple[int, float, dict[str, float], CoRunner]:
        """(phase index, ambient C, latency targets ms, co-runner) at time t."""
        i = self.phase_index(t)
        ph = self.phases[i]
        busy = any(a <= t < b for a, b in self.bursts)
        return i, ph.ambient_c, dict(ph.targets_ms), BURST if busy else CoRunner()


def _bursts(seed: int, duration: float, start: float, every: float, length: float) -> tuple[tuple[float, float], ...]:
    rng = random.Random(seed * 31 + 5)
    out, t = [], start
    while t < duration:
        t0 = t + rng.uniform(-0.25, 0.25) * every
        out.append((t0, t0 + length * rng.uniform(0.7, 1.3)))
        t += every
    return tuple(out)


def scenarios(seed: int, phase_s: float = 60.0) -> list[Scenario]:
    """The four traces (4 phases of `phase_s` each); co-runner timing varies with the seed."""
    d = 4 * phase_s
    at = [k * phase_s for k in range(4)]
    tg = lambda cam, cpu: (("camera", cam), ("cpu_net", cpu))  # noqa: E731
    return [
        Scenario("battery_drain", "a small 2 Wh pack from 48 %: crosses the manager's 40 % saving threshold",
                 d, tuple(Phase(a, f"battery band {k + 1}") for k, a in enumerate(at)),
                 battery_wh=2.0 * phase_s / 60.0, battery_percent=48.0),
        Scenario("thermal_soak", "enclosure heating up: ambient 35 -> 55 -> 70 -> 78 C",
                 d, tuple(Phase(a, f"ambient {amb:.0f} C", ambient_c=amb) for a, amb in zip(at, (35, 55, 70, 78)))),
        Scenario("corunner_bursts", "a co-running process (4.5 CPU cores, 30 % GPU, 35 % DRAM traffic) in "
                 f"bursts of about {phase_s / 7.5:.0f} s every {phase_s / 3:.0f} s",
                 d, tuple(Phase(a, f"bursts {k + 1}") for k, a in enumerate(at)),
                 bursts=_bursts(seed, d, phase_s / 6, phase_s / 3, phase_s / 7.5)),
        Scenario("target_changes", "latency targets change: camera 60 -> 50 -> 75 -> 55 ms, CPU 1400 -> 1900 "
                 "-> 1100 -> 1600 ms",
                 d, tuple(Phase(a, f"camera {c:.0f} ms, cpu {u:.0f} ms", targets_ms=tg(c, u))
                          for a, (c, u) in zip(at, ((60, 1400), (50, 1900), (75, 1100), (55, 1600))))),
    ]
