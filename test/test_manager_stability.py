"""Stability of the policy in closed loop (ROS-free): under a steady target, once settled, at most one
sub-network switch per 10 s, whichever input triggers the decisions.

The loop feeds what the node feeds: WorkloadStatus feedback (measured latency = the model at the applied
frequency and the true co-runner load, times lognormal noise) every 0.5 s, PlatformLoad (noisy) every
1 s, and a 10 Hz control timer, interleaved, each followed by a decision, for 10 simulated minutes on the
shipped Fashion-MNIST table (its r16 and r20 points lie close in latency and energy). Before the fix
(commit a8a6ffd) the energy-bound scenario switched r16 <-> r20 390-410 times in the settled 9 minutes
(seeds 0-2), up to 14 times within 10 s, mostly on status-triggered decisions.
"""
from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass
from pathlib import Path

import pytest

from dynofa_ros.manager.policy import PlatformState, PolicyConfig, ResourcePolicy, Target, WorkloadFeedback
from dynofa_ros.dvfs_model import latency_scale
from dynofa_ros.operating_points import load_table
from dynofa_ros.platform.profiles import load_profile

PERIOD_S = {"timer": 0.1, "status": 0.5, "platform": 1.0}
FIRST_S = {"timer": 0.0, "status": 0.05, "platform": 0.13}
SETTLE_S = 60.0
SOAK_S = 600.0
WINDOW_S = 10.0


@dataclass(frozen=True)
class Scenario:
    target: Target
    noise: float = 0.15                 # sigma of the lognormal noise on each status's latency
    load_percent: float = 30.0          # true co-runner load (the monitor reports it with +-8 % noise)
    burst_percent: float = 0.0          # co-runner bursts: this much more load every other `burst_s`
    burst_s: float = 3.0
    battery_percent: float = math.nan
    frequency_applied: bool = True


SCENARIOS = {
    "energy bound (the reported flip-flop)": Scenario(Target(max_energy_mj=150.0)),
    "energy and latency bounds": Scenario(Target(max_latency_ms=14.0, max_energy_mj=150.0)),
    "latency bound": Scenario(Target(max_latency_ms=14.0)),
    "latency bound, dry run": Scenario(Target(max_latency_ms=14.0), frequency_applied=False),
    "latency bound, battery saving mode": Scenario(Target(max_latency_ms=16.0), battery_percent=30.0),
    "latency bound, busy co-runner": Scenario(Target(max_latency_ms=20.0), load_percent=60.0),
    "latency bound, bursty co-runner": Scenario(Target(max_latency_ms=14.0), load_percent=10.0, burst_percent=50.0),
    "energy bound, bursty co-runner": Scenario(Target(max_energy_mj=150.0), load_percent=10.0, burst_percent=50.0),
    "no energy point fits (lowest energy)": Scenario(Target(max_energy_mj=100.0)),
}


LEGACY_TABLE = Path(__file__).resolve().parent / "fixtures" / "legacy" / "fmnist_ofa_mbv3.yaml"


def soak(sc: Scenario, seed: int, duration: float = SOAK_S) -> list[tuple[float, str, str, str]]:
    """(time, trigger, from, to) of every sub-network switch in a closed-loop run."""
    prof = load_profile("generic_x86")
    table = load_table(LEGACY_TABLE)  # the table the scenarios were tuned on (its r16/r20 points lie close)
    dom = prof.domains[0]
    pol = ResourcePolicy(prof.domains, PolicyConfig(frequency_applied=sc.frequency_applied,
                                                    throttle_c=prof.thermal.throttle_c))
    pol.add_workload("cam", table, "cpu", sc.target, rate_hz=10.0)
    rng = random.Random(seed)
    events = [(FIRST_S[k], k) for k in PERIOD_S]
    cur, freq, switches = None, dom.max_hz, []
    while events[0][0] <= duration:
        now, trigger = heapq.heappop(events)
        heapq.heappush(events, (now + PERIOD_S[trigger], trigger))
        load_true = sc.load_percent + (sc.burst_percent if int(now / sc.burst_s) % 2 else 0.0)
        if trigger == "status" and cur is not None:
            p = table.point(cur)
            applied = freq if sc.frequency_applied else dom.max_hz
            model = latency_scale(dom.compute_bound, applied / dom.max_hz) * (1.0 + load_true / 100.0)
            n = math.exp(rng.gauss(0.0, sc.noise))
            pol.update_feedback("cam", WorkloadFeedback(cur, p.latency("cpu", "median") * model * n,
                                                        p.latency("cpu", "p95") * model * n, 10.0, 10.0), now)
        elif trigger == "platform":
            load = min(100.0, max(0.0, rng.gauss(load_true, 8.0)))
            pol.update_platform(PlatformState(cpu_percent=(load, load), battery_percent=sc.battery_percent))
        d = pol.decide(now)
        c = d.subnets["cam"]
        if cur is not None and c.subnet_id != cur:
            switches.append((now, trigger, cur, c.subnet_id))
        cur, freq = c.subnet_id, d.frequencies[0].frequency_hz
    return switches


def worst_window(times: list[float], window: float) -> int:
    """Most switches inside any `window`-second interval."""
    return max((sum(1 for u in times if t <= u < t + window) for t in times), default=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_at_most_one_switch_per_10_s_once_settled(name, seed):
    sc = SCENARIOS[name]
    switches = soak(sc, seed)
    settled = [s for s in switches if s[0] >= SETTLE_S]
    times = [s[0] for s in settled]
    worst = worst_window(times, WINDOW_S)
    short = [(round(t, 2), trig, a.split("-")[1], b.split("-")[1]) for t, trig, a, b in settled[:6]]
    settled_s = SOAK_S - SETTLE_S
    assert len(settled) <= settled_s / WINDOW_S, f"{len(settled)} settled switches: {short}"
    if sc.burst_percent:
        # a co-runner that comes and goes: a point tried while it is away may have to be left when it
        # returns (a probe and its undo), but never more than that within 10 s
        assert worst <= 2, f"{worst} switches within 10 s: {short}"
    else:
        # steady load: it settles (at most one switch a minute) and never switches twice within 10 s
        assert len(settled) <= settled_s / 60.0, f"{len(settled)} settled switches: {short}"
        assert worst <= 1, f"{worst} switches within 10 s: {short}"
