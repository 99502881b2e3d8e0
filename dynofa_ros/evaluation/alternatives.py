"""Controllers judged on the evaluation world: the policy under test and the alternatives a user has.

- Linux governors, emulated per DVFS domain from the kernel's rules (Documentation/admin-guide/pm/
  cpufreq.rst and the schedutil commit message, kernel/sched/cpufreq_schedutil.c):
  performance = max; powersave = min; schedutil next_freq = 1.25 * max_freq * util with
  frequency-invariant util (tipping point util = 0.8), lowest level at or above (RELATION_L);
  ondemand: load above up_threshold (80 %) -> max, else min + load * (max - min), closest level.
  Applied to the GPU devfreq too (its real default is nvhost_podgov: an emulation, not the same rule).
  The sub-network is what a user picks: the most accurate point whose table p95 meets the target at
  the top clock, re-picked when the target changes.
- Dynamic-OFA's reference runtime loop: sub-network only, clocks fixed at max (jetson_clocks); the
  mean latency of the last 20 frames above target -> one level down; the next level predicted (table
  x measured ratio) within 90 % of the target -> one level up; the level just left is not re-entered for
  10 s. Switching is in-process here (the reference restarts a process, 5-30 s): generous to it.
- The best static configuration (one sub-network and one clock per processor for the whole trace) and a
  hindsight oracle (the best fixed configuration per phase), found by search on the noise-free world.
"""
from __future__ import annotations

import math
from dataclasses import replace

from dynofa_ros.evaluation.harness import Command, Loop, Observation, Tally, start
from dynofa_ros.evaluation.scenarios import Scenario, Workload
from dynofa_ros.manager.policy import PlatformState, PolicyConfig, ResourcePolicy, WorkloadFeedback
from dynofa_ros.platform.profiles import load_profile
from dynofa_ros.targets import Target

PROFILE = "jetson_xavier_nx"
UP_THRESHOLD = 0.80          # ondemand default
SCHEDUTIL_C = 1.25


def _levels() -> dict[str, tuple[int, ...]]:
    """DVFS levels per domain, as sysfs lists them (the profile holds those lists)."""
    return {d.name: d.levels_hz for d in load_profile(PROFILE).domains}


def user_pick(w: Workload, target_ms: float) -> str:
    """The most accurate point whose table p95 meets the target at the top clock (else the fastest)."""
    table = w.table()
    ok = [p for p in table.points if target_ms <= 0 or p.latency(w.device_key, "p95") <= target_ms]
    if not ok:
        return min(table.points, key=lambda p: p.latency(w.device_key)).id
    return max(ok, key=lambda p: p.accuracy).id


def governor_hz(rule: str, levels: tuple[int, ...], cur_hz: float, util: float) -> int:
    """One governor decision for a domain from its busy share `util` at `cur_hz`."""
    fmin, fmax = levels[0], levels[-1]
    if rule == "performance":
        return fmax
    if rule == "powersave":
        return fmin
    if rule == "schedutil":
        want = SCHEDUTIL_C * fmax * (util * cur_hz / fmax)          # frequency-invariant utilisation
        return next((f for f in levels if f >= want - 1.0), fmax)
    if rule == "ondemand":
        if util > UP_THRESHOLD:
            return fmax
        want = fmin + util * (fmax - fmin)
        return min(levels, key=lambda f: abs(f - want))
    raise ValueError(f"unknown governor {rule!r}")


class Governor:
    """A Linux governor for every domain with the user's fixed sub-network choice."""

    def __init__(self, rule: str) -> None:
        self.rule = rule
        self.name = rule
        self.levels = _levels()

    def reset(self, workloads: tuple[Workload, ...], scenario: Scenario) -> None:
        self.workloads = workloads

    def control(self, obs: Observation) -> Command:
        points = {w.name: user_pick(w, obs.targets_ms.get(w.name, 0.0)) for w in self.workloads}
        freqs = {d: governor_hz(self.rule, lv, obs.requested_hz.get(d, lv[-1]), obs.utilisation.get(d, 0.0))
                 for d, lv in self.levels.items()}
        return Command(points, freqs)


class ReferenceLoop:
    """Dynamic-OFA's runtime loop: sub-network only, clocks at max."""
    name = "dynamic-ofa reference loop"

    def __init__(self, pin_s: float = 10.0) -> None:
        self.pin_s = pin_s
        self.levels = _levels()

    def reset(self, workloads: tuple[Workload, ...], scenario: Scenario) -> None:
        self.workloads = workloads
        self.order = {w.name: sorted(w.table().points, key=lambda p: p.latency(w.device_key)) for w in workloads}
        self.level: dict[str, int] = {}
        self.since: dict[str, float] = {}
        self.pinned: dict[str, tuple[int, float]] = {}

    def _adjust(self, w: Workload, obs: Observation) -> None:
        pts, i = self.order[w.name], self.level[w.name]
        st, target = obs.statuses.get(w.name), obs.targets_ms.get(w.name, 0.0)
        window_s = 20.0 / w.rate_hz                      # a full window of frames on this level
        if st is None or st.point_id != pts[i].id or obs.time_s - self.since[w.name] < window_s or target <= 0:
            return
        if st.latency_mean_ms > target and i > 0:
            self.pinned[w.name] = (i, obs.time_s + self.pin_s)
            self.level[w.name], self.since[w.name] = i - 1, obs.time_s
        elif i + 1 < len(pts):
            ratio = st.latency_mean_ms / pts[i].latency(w.device_key)
            pin_level, until = self.pinned.get(w.name, (-1, -math.inf))
            if pts[i + 1].latency(w.device_key) * ratio <= 0.9 * target and not (pin_level == i + 1 and obs.time_s < until):
                self.level[w.name], self.since[w.name] = i + 1, obs.time_s

    def control(self, obs: Observation) -> Command:
        for w in self.workloads:
            if w.name not in self.level:
                pick = user_pick(w, obs.targets_ms.get(w.name, 0.0))
                self.level[w.name] = [p.id for p in self.order[w.name]].index(pick)
                self.since[w.name] = obs.time_s
            self._adjust(w, obs)
        return Command({w.name: self.order[w.name][self.level[w.name]].id for w in self.workloads},
                       {d: lv[-1] for d, lv in self.levels.items()})


class PolicyController:
    """The policy under test, through its public API only. `calibration` scales its own model (profile
    power and table latencies) to test robustness; the world stays the same."""

    def __init__(self, calibration: float = 1.0, name: str | None = None) -> None:
        self.calibration = calibration
        self.name = name or ("policy" if calibration == 1.0 else f"policy (model {calibration - 1:+.0%})")

    def reset(self, workloads: tuple[Workload, ...], scenario: Scenario) -> None:
        prof = load_profile(PROFILE)
        s = self.calibration
        domains = [replace(d, static_w=d.static_w * s, dynamic_w=d.dynamic_w * s) for d in prof.domains]
        self.policy = ResourcePolicy(domains, PolicyConfig(throttle_c=prof.thermal.throttle_c))
        for w in workloads:
            self.policy.add_workload(w.name, w.table(s), w.device_key, Target(), rate_hz=w.rate_hz)
        self.targets: dict[str, float] = {}

    def control(self, obs: Observation) -> Command:
        pol = self.policy
        for name, ms in obs.targets_ms.items():
            if self.targets.get(name) != ms:
                pol.set_target(name, Target(max_latency_ms=ms))
                self.targets[name] = ms
        if obs.new_sensors and obs.sensors is not None:
            s = obs.sensors
            pol.update_platform(PlatformState(battery_percent=s.battery_percent, charging=False,
                                              temperatures_c=dict(s.temperatures_c), cpu_percent=s.cpu_percent,
                                              gpu_percent=s.gpu_percent))
        for name in sorted(obs.new_statuses):
            st = obs.statuses[name]
            pol.update_feedback(name, WorkloadFeedback(st.point_id, st.latency_p50_ms, st.latency_p95_ms,
                                                       st.input_rate_hz, st.output_rate_hz), obs.time_s)
        d = pol.decide(obs.time_s)
        return Command({n: c.point.id for n, c in d.subnets.items()},
                       {f.domain: f.frequency_hz for f in d.frequencies})


class Fixed:
    """One fixed command per phase (the static point and the oracle)."""
    blind = True                 # reads nothing: the loop may skip building observations

    def __init__(self, name: str, schedule: list[Command], scenario: Scenario) -> None:
        self.name, self.schedule, self.scenario = name, schedule, scenario

    def reset(self, workloads: tuple[Workload, ...], scenario: Scenario) -> None:
        pass

    def control(self, obs: Observation) -> Command:
        return self.schedule[min(self.scenario.phase_index(obs.time_s), len(self.schedule) - 1)]


# ------------------------------------------------------------------------------------------- search

SEARCH_DT_S = 1.0          # frames are simulated one by one whatever the step; this coarsens load and heat
MET_GOAL = 0.95              # a configuration "meets" a phase when this share of frames is on time


def _kind_domains(levels: dict[str, tuple[int, ...]], w: Workload) -> list[str]:
    kind = "gpu" if w.processor == "gpu" else "cpu"
    return [d for d in levels if (d == "gpu") == (kind == "gpu")]


def _candidate_levels(lv: tuple[int, ...]) -> list[int]:
    """Levels worth trying: from a quarter of max up, at most about 7 of them (the top one always)."""
    usable = [f for f in lv if f >= 0.25 * lv[-1]]
    step = max(1, math.ceil(len(usable) / 7))
    return sorted(set(usable[::-1][::step]))


def _segment(loop: Loop, cmd: Command, t_end: float) -> Tally:
    twin = loop.fork(Fixed("candidate", [cmd], loop.scenario))
    twin.phases = [Tally() for _ in twin.phases]
    twin.run_until(t_end, SEARCH_DT_S)
    total = Tally()
    for t in twin.phases:
        total.add(t)
    return total


def _best_for(loop: Loop, base: Command, w: Workload, t_end: float, levels: dict[str, tuple[int, ...]],
              objective: str) -> Command:
    """Best point and clock for one workload with the others held at `base`. Feasible: at least MET_GOAL
    of its frames on time (or within a point of the best reachable share) without the other workloads
    losing share. objective "accuracy": the most accurate feasible one, then the least energy (what the
    policy does in its normal mode); "energy": the least energy, whatever the accuracy."""
    doms = _kind_domains(levels, w)
    ref = _segment(loop, base, t_end)
    others_ref = {n: m / a for n, (a, m) in ref.per_workload.items() if n != w.name and a}
    tried = []
    for pid in w.point_ids():
        for hz in _candidate_levels(levels[doms[0]]):
            cmd = Command({**base.points, w.name: pid}, {**base.frequencies_hz, **{d: hz for d in doms}})
            seg = _segment(loop, cmd, t_end)
            a, m = seg.per_workload.get(w.name, [0.0, 0.0])
            others_ok = all(seg.per_workload[n][1] / seg.per_workload[n][0] >= r - 0.01
                            for n, r in others_ref.items() if seg.per_workload[n][0])
            tried.append((m / a if a else 1.0, w.accuracy(pid), seg.energy_j, others_ok, cmd))
    reachable = [t[0] for t in tried if t[3]] or [t[0] for t in tried]
    goal = min(MET_GOAL, max(reachable) - 0.01)
    ok = [t for t in tried if t[0] >= goal and t[3]] or [max(tried, key=lambda t: t[0])]
    if objective == "energy":
        return min(ok, key=lambda t: (t[2], -t[1]))[4]
    return max(ok, key=lambda t: (round(t[1], 4), -t[2]))[4]


def best_fixed(loop: Loop, targets: dict[str, float], workloads: tuple[Workload, ...], t_end: float,
               objective: str) -> Command:
    """Coordinate search (GPU workload first, then CPU) from the user's choice at max clocks."""
    levels = _levels()
    cmd = Command({w.name: user_pick(w, targets.get(w.name, 0.0)) for w in workloads},
                  {d: lv[-1] for d, lv in levels.items()})
    for w in sorted(workloads, key=lambda w: w.processor != "gpu"):
        cmd = _best_for(loop, cmd, w, t_end, levels, objective)
    return cmd


def oracle(scenario: Scenario, seed: int, workloads: tuple[Workload, ...], objective: str = "energy") -> Fixed:
    """Hindsight oracle: phase by phase, the best fixed configuration given the state the previous
    phases left (temperature, battery), on the noise-free world of this seed."""
    schedule: list[Command] = []
    holder = Fixed("oracle", schedule, scenario)
    loop = start(holder, scenario, seed, noise=False)
    for k, ph in enumerate(scenario.phases):
        t_end = scenario.phases[k + 1].start_s if k + 1 < len(scenario.phases) else scenario.duration_s
        schedule.append(best_fixed(loop, dict(ph.targets_ms), workloads, t_end, objective))
        loop.run_until(t_end, SEARCH_DT_S)
    return Fixed(f"oracle, {objective} first (best fixed per phase)", list(schedule), scenario)


def best_static(scenario: Scenario, seed: int, workloads: tuple[Workload, ...], objective: str = "energy") -> Fixed:
    """One configuration for the whole trace, chosen in hindsight (targets of the first phase for the
    start point; met share judged against the targets of the moment)."""
    loop = start(Fixed("static", [], scenario), scenario, seed, noise=False)
    cmd = best_fixed(loop, dict(scenario.phases[0].targets_ms), workloads, scenario.duration_s, objective)
    return Fixed(f"best static point, {objective} first", [cmd], scenario)


__all__ = ["Governor", "ReferenceLoop", "PolicyController", "Fixed", "oracle", "best_static",
           "governor_hz", "user_pick"]
