"""Closed loop: a controller acts on the evaluation world through what a real board exposes, and the
world's own accounting judges it (energy from its rails, frames against the targets of the moment)."""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Protocol

from dynofa_ros.evaluation.scenarios import WORKLOADS, Scenario, Workload
from dynofa_ros.evaluation.world import Sensors, Status, World

DT_S = 0.1                  # world step and control period (the manager's default control_rate_hz: 10)
STATUS_PERIOD_S = 1.0       # perception nodes publish WorkloadStatus once a second


@dataclass
class Observation:
    """Everything a controller may read at one control instant."""
    time_s: float
    targets_ms: dict[str, float]
    sensors: Sensors | None                 # newest delivered monitor reading (delayed)
    new_sensors: bool
    statuses: dict[str, Status]             # newest status per workload
    new_statuses: set[str]
    utilisation: dict[str, float]           # per domain, the kernel's own view (for the governors)
    requested_hz: dict[str, int]


@dataclass
class Command:
    points: dict[str, str]
    frequencies_hz: dict[str, float]


class Controller(Protocol):
    name: str

    def reset(self, workloads: tuple[Workload, ...], scenario: Scenario) -> None: ...

    def control(self, obs: Observation) -> Command: ...


@dataclass
class Tally:
    """Per-phase accounting."""
    energy_j: float = 0.0
    cv_energy_j: float = 0.0
    arrived: float = 0.0
    met: float = 0.0
    processed: float = 0.0
    accuracy_sum: float = 0.0
    switches: int = 0
    seconds: float = 0.0
    per_workload: dict[str, list[float]] = field(default_factory=dict)   # name -> [arrived, met]

    def add(self, other: "Tally") -> None:
        for k in ("energy_j", "cv_energy_j", "arrived", "met", "processed", "accuracy_sum", "switches", "seconds"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        for n, (a, m) in other.per_workload.items():
            cur = self.per_workload.setdefault(n, [0.0, 0.0])
            cur[0] += a
            cur[1] += m

    def summary(self) -> dict[str, float]:
        minutes = max(self.seconds, 1e-9) / 60.0
        out = {"energy_j": self.energy_j, "cpu_gpu_cv_energy_j": self.cv_energy_j,
               "frames": self.arrived, "met_share": self.met / self.arrived if self.arrived else math.nan,
               "mean_accuracy": self.accuracy_sum / self.processed if self.processed else math.nan,
               "switches": self.switches, "switches_per_min": self.switches / minutes}
        for n, (a, m) in self.per_workload.items():
            out[f"met_share_{n}"] = m / a if a else math.nan
        return out


@dataclass
class Loop:
    """One run in progress: the world, the controller and the accounting (copyable, for the searches)."""
    scenario: Scenario
    world: World
    controller: Controller
    phases: list[Tally]
    statuses: dict[str, Status] = field(default_factory=dict)
    last_status_s: float = -math.inf
    last_sensors_s: float = -math.inf
    last_targets: dict[str, float] = field(default_factory=dict)

    def observe(self, targets: dict[str, float]) -> Observation:
        w = self.world
        new = set()
        if w.time_s - self.last_status_s >= STATUS_PERIOD_S - 1e-9:
            self.last_status_s = w.time_s
            for name in w.jobs:
                st = w.status(name)
                if st is not None:
                    self.statuses[name] = st
                    new.add(name)
        s = w.sensors()
        fresh = s is not None and s.time_s > self.last_sensors_s
        if fresh:
            self.last_sensors_s = s.time_s
        return Observation(w.time_s, dict(targets), s, fresh, dict(self.statuses), new,
                           {n: w.utilisation(n) for n in w.proc}, dict(w.requested))

    def step(self, dt: float) -> None:
        w, sc = self.world, self.scenario
        phase, ambient, targets, corunner = sc.conditions(w.time_s)
        w.set_ambient(ambient)
        w.set_corunner(corunner)
        blind = getattr(self.controller, "blind", False)
        obs = Observation(w.time_s, targets, None, False, {}, set(), {}, {}) if blind else self.observe(targets)
        cmd = self.controller.control(obs)
        tally = self.phases[phase]
        for name, pid in cmd.points.items():
            if pid != w.points[name]:
                tally.switches += w.time_s > 0     # the first command only sets the start
                w.set_point(name, pid)
        for dom, hz in cmd.frequencies_hz.items():
            w.set_frequency(dom, hz)
        e0, cv0 = w.energy_j["VDD_IN"], w.energy_j["VDD_CPU_GPU_CV"]
        frames = w.step(dt, targets)
        tally.energy_j += w.energy_j["VDD_IN"] - e0
        tally.cv_energy_j += w.energy_j["VDD_CPU_GPU_CV"] - cv0
        tally.seconds += dt
        wl = {x.name: x for x in WORKLOADS}
        for name, fc in frames.items():
            tally.arrived += fc.arrived
            tally.met += fc.met
            tally.processed += fc.processed
            tally.accuracy_sum += fc.processed * wl[name].accuracy(w.points[name])
            cur = tally.per_workload.setdefault(name, [0.0, 0.0])
            cur[0] += fc.arrived
            cur[1] += fc.met

    def run_until(self, t_end: float, dt: float = DT_S) -> None:
        while self.world.time_s < t_end - 1e-9:
            self.step(min(dt, t_end - self.world.time_s))

    def fork(self, controller: Controller) -> "Loop":
        """A copy of this run (world state included) continuing with another controller."""
        twin = copy.deepcopy(self)
        twin.controller = controller
        return twin


def start(controller: Controller, scenario: Scenario, seed: int, noise: bool = True) -> Loop:
    world = World([w.job() for w in WORKLOADS], seed, ambient_c=scenario.phases[0].ambient_c,
                  battery_wh=scenario.battery_wh, battery_percent=scenario.battery_percent, noise=noise)
    controller.reset(WORKLOADS, scenario)
    return Loop(scenario, world, controller, [Tally() for _ in scenario.phases])


def result(loop: Loop) -> dict:
    """Totals and per-phase figures of a finished run."""
    total = Tally()
    for t in loop.phases:
        total.add(t)
    w = loop.world
    out = total.summary()
    done, want = w.corunner_work
    out.update({"phases": [t.summary() for t in loop.phases], "throttled_s": w.throttled_s,
                "max_temp_c": w.max_temp_c, "final_battery_percent": w.battery_percent,
                "corunner_work_share": done / want if want else 1.0, "duration_s": w.time_s})
    return out


def run(controller: Controller, scenario: Scenario, seed: int, noise: bool = True, dt: float = DT_S) -> dict:
    loop = start(controller, scenario, seed, noise)
    loop.run_until(scenario.duration_s, dt)
    return result(loop)
