"""Cross-layer runtime policy: per workload a sub-network x graph variant, then the DVFS levels.

Hierarchical, as in the Dynamic-OFA runtime papers: workloads are placed in priority order at the highest
frequency the platform currently allows (thermal and battery caps), each taking the best operating point
that meets its targets given the contention of the workloads already placed (and never breaking theirs);
then each processor gets the lowest-energy frequency at which every target met at the cap is still met.
Measured latency corrects the model (feedback ratio), load spikes and retargets act at once, and
hysteresis (manager/hysteresis.py) keeps noise from making it oscillate, whichever input triggers a
decision. Stale platform inputs (PlatformState.stale) give the conservative decision: clocks at the cap.

The pieces: types.py (config, inputs, decision), controllers.py (battery mode, thermal cap, background
load), workload.py (per-workload state and feedback), selection.py + hysteresis.py (one workload's
point), placement.py (priority order), frequency.py (DVFS levels), memory.py (budget, materialisation);
the DVFS model itself is dynofa_ros/dvfs_model.py. ROS-free and unit-testable.
"""
from __future__ import annotations

import math
import time
from typing import Iterable

from dynofa_ros.dvfs_model import FrequencyDomain, PowerTable, device_threads, latency_scale, processor_kind
from dynofa_ros.manager.controllers import BackgroundLoad, BatteryMode, ThermalCap, hottest_per_kind, load_samples
from dynofa_ros.manager.frequency import FrequencyPlanner, LevelPlan
from dynofa_ros.manager.memory import MemoryLedger, materialise, memory_budget
from dynofa_ros.manager.placement import Placed, place
from dynofa_ros.manager.selection import KindContext
from dynofa_ros.manager.types import (MODES, STALE_INPUTS, FrequencyChoice, PlatformState, PolicyConfig,
                                      PolicyDecision, SubnetChoice, UnknownWorkload, WorkloadFeedback)
from dynofa_ros.manager.workload import WorkloadState
from dynofa_ros.operating_points import OperatingPointTable
from dynofa_ros.targets import Target

__all__ = ["MODES", "STALE_INPUTS", "FrequencyChoice", "FrequencyDomain", "PlatformState", "PolicyConfig",
           "PolicyDecision", "ResourcePolicy", "SubnetChoice", "Target", "UnknownWorkload", "WorkloadFeedback",
           "latency_scale", "processor_kind"]


class ResourcePolicy:
    """Stateful policy; feed it targets, platform state and feedback, call `decide(now)`."""

    def __init__(self, domains: Iterable[FrequencyDomain], config: PolicyConfig | None = None) -> None:
        self.config = config or PolicyConfig()
        self.domains = sorted(domains, key=lambda d: (d.kind, -d.max_hz, d.name))
        if not self.domains:
            raise ValueError("at least one frequency domain is needed (e.g. a generic cpu domain)")
        self._workloads: dict[str, WorkloadState] = {}
        self.platform = PlatformState()
        self._battery = BatteryMode(self.config)
        self._thermal = ThermalCap(self.config)
        self._load = BackgroundLoad(self.config)
        self._freq = FrequencyPlanner()
        self._hottest: dict[str, float] = {}
        self._zones_ignored = 0
        self._clock = -math.inf            # the latest `now` seen (decide / feedback)
        self._power: dict[str, PowerTable] = {}   # per kind, built on first use

    @property
    def mode(self) -> str:
        return self._battery.mode

    # ------------------------------------------------------------------------------------------ inputs

    def add_workload(self, name: str, table: OperatingPointTable, device_key: str, target: Target = Target(),
                     rate_hz: float = 0.0) -> None:
        c = self.config
        if len(self._workloads) >= c.max_workloads and name not in self._workloads:
            raise ValueError(f"workload {name!r}: at most {c.max_workloads} workloads (max_workloads)")
        if not name or len(name) > c.max_name_len:
            raise ValueError(f"workload name must be 1..{c.max_name_len} characters, got {len(name)}")
        try:  # "cpu" finds a table measured as "cpu@1t"
            device_key = table.device_for(device_key)
        except KeyError:
            raise ValueError(f"workload {name!r}: table was not measured on {device_key!r}; it has "
                             f"{list(table.devices)}") from None
        kind = processor_kind(device_key)
        if not any(d.kind == kind for d in self.domains):
            # e.g. a CUDA workload on a desktop profile: choose points, leave its clock alone
            self.domains.append(FrequencyDomain(f"{kind}_fixed", kind, (1,), compute_bound=0.0, static_w=0.0,
                                                dynamic_w=1.0, fixed=True))
            self._power.pop(kind, None)
        pts = sorted(table.points, key=lambda p: (p.latency(device_key, c.latency_stat), -p.accuracy))
        self._workloads[name] = WorkloadState(
            name=name, device_key=device_key, kind=kind, points=pts,
            base=[p.latency(device_key, c.latency_stat) for p in pts], target=target,
            rate_hz=rate_hz if rate_hz > 0 else c.default_rate_hz,
            threads=device_threads(device_key) if kind == "cpu" else 1, index={p.id: i for i, p in enumerate(pts)},
            _memory_s=c.ratio_memory_s)

    def workloads(self) -> list[str]:
        return list(self._workloads)

    def target(self, name: str) -> Target:
        return self._get(name).target

    def _get(self, name: str) -> WorkloadState:
        try:
            return self._workloads[name]
        except KeyError:
            raise UnknownWorkload(f"unknown workload {name!r}; configured: {sorted(self._workloads)}") from None

    def set_target(self, name: str, target: Target) -> None:
        w = self._get(name)
        if target != w.target:
            w.target = target
            w.urgent = True

    def update_platform(self, state: PlatformState, now: float | None = None) -> None:
        """New platform state. Background load = busy share not explained by our own workloads' fresh
        status (rate x latency); a stale load reading is forgotten at once. Only the hottest zone per
        processor kind is kept."""
        now = self._clock if now is None else now
        self.platform = state
        if "load" in state.stale:
            self._load.forget()
        else:
            own = {"cpu": 0.0, "gpu": 0.0}
            for w in self._workloads.values():
                own[w.kind] += w.own_load(now, self.config.feedback_max_age_s)
            self._load.update(load_samples(state.cpu_percent, state.gpu_percent, own))
        temps = {} if "temperature" in state.stale else state.temperatures_c
        self._hottest, self._zones_ignored = hottest_per_kind(temps, self.config.max_zones)

    def update_feedback(self, name: str, fb: WorkloadFeedback, now: float) -> bool:
        """Measured latency of the point we chose corrects the model for that workload; a status older
        than `feedback_max_age_s` (by its stamp) is ignored. True when the model was corrected."""
        w = self._get(name)
        self._clock = max(self._clock, now)
        return w.record(fb, now, self.config)

    def background_load(self, kind: str) -> float:
        return self._load.share.get(kind, 0.0)

    def feedback_ratio(self, name: str) -> float:
        w = self._get(name)
        return w.ratio(w.current) if w.current is not None else 1.0

    def caps(self) -> dict[str, float]:
        out = dict(self._thermal.caps)
        if self.mode == "critical":
            out = {k: min(v, self.config.critical_frequency_cap) for k, v in out.items()}
        return out

    # ------------------------------------------------------------------------------------------ decision

    def stale_inputs(self) -> tuple[str, ...]:
        return tuple(s for s in STALE_INPUTS if s in self.platform.stale)

    def decide(self, now: float | None = None) -> PolicyDecision:
        now = time.monotonic() if now is None else now
        self._clock = max(self._clock, now)
        t0 = time.perf_counter()
        deadline = t0 + self.config.time_budget_ms / 1000.0
        st, stale = self.platform, self.stale_inputs()
        battery = math.nan if "battery" in stale else st.battery_percent
        self._battery.update(battery, st.charging)
        self._thermal.update(self._hottest, now)
        caps = self.caps()
        order = sorted(self._workloads.values(), key=lambda w: (-w.target.priority, w.name))
        budget = memory_budget(self.config, st, order)
        memory = MemoryLedger.for_workloads(budget, order)
        subnets: dict[str, SubnetChoice] = {}
        freqs: list[FrequencyChoice] = []
        truncated = False
        for kind in ("cpu", "gpu"):
            doms = tuple(d for d in self.domains if d.kind == kind)
            group = [w for w in order if w.kind == kind]
            if not doms:
                continue
            if not group:
                self._freq.idle(kind, doms[0].levels_hz[0] / doms[0].max_hz)
                freqs += [FrequencyChoice(d.name, d.levels_hz[0], "userspace", "no workload on this processor")
                          for d in doms if not d.fixed]
                continue
            ctx = self._context(kind, doms, caps[kind], battery, now, deadline)
            choices, frac, why, cut = self._decide_kind(group, ctx, memory, stale)
            subnets.update(choices)
            truncated |= cut
            freqs += [FrequencyChoice(d.name, d.level_at_or_above(frac), "userspace", why) for d in doms if not d.fixed]
        materialised = materialise(order, subnets, budget)
        return PolicyDecision(subnets=subnets, frequencies=freqs, mode=self.mode, caps=caps,
                              materialised=materialised, search_ms=(time.perf_counter() - t0) * 1000.0,
                              truncated=truncated, stale=stale, zones_ignored=self._zones_ignored)

    def _context(self, kind: str, doms: tuple[FrequencyDomain, ...], cap: float, battery: float, now: float,
                 deadline: float) -> KindContext:
        rep = doms[0]
        power = self._power.get(kind) or self._power.setdefault(kind, PowerTable.build(doms))
        k = power.index(rep.cap_fraction(cap))
        thermal = self.mode == "normal" and self._thermal.limited and self.config.thermal_saves_energy
        return KindContext(kind=kind, rep=rep, power=power, cap_index=k,
                           s_cap=latency_scale(rep.compute_bound, power.fracs[k]), bg=self._load.share.get(kind, 0.0),
                           busy_power_w=power.busy_w[k], objective="thermal" if thermal else self.mode,
                           mode=self.mode, battery_percent=battery, now=now, deadline=deadline, config=self.config)

    def _decide_kind(self, group: list[WorkloadState], ctx: KindContext, memory: MemoryLedger,
                     stale: tuple[str, ...]) -> tuple[dict[str, SubnetChoice], float, str, bool]:
        placed, cut = place(group, ctx, memory)
        plan, why, cut_f = self._freq.choose(placed, ctx, stale)
        return {p.w.name: self._commit(p, ctx, plan, plan.lats[p.w.name]) for p in placed}, plan.frac, why, \
            cut or cut_f

    def _commit(self, p: Placed, ctx: KindContext, plan: LevelPlan, lat: float) -> SubnetChoice:
        """Make the choice current (switch bookkeeping, pins) and describe it."""
        w, c = p.w, self.config
        factor = w.factors(ctx.now)[p.i]
        point = w.points[p.i]
        if point is not w.current:
            w.switch_to(p.i, factor, ctx.now, c)
        w.urgent = False
        w.predicted_raw_ms = lat / factor
        if not c.frequency_applied:
            w.predicted_raw_ms /= latency_scale(ctx.rep.compute_bound, plan.frac)
        status = p.status
        t = w.target
        if not status and t.max_latency_ms > 0 and lat > t.max_latency_ms:
            status = f"predicted {lat:.1f} ms > {t.max_latency_ms:.1f} ms"
        energy = ctx.power.busy_w[plan.k] * lat
        return SubnetChoice(w.name, point, lat, energy, not status, p.reason, status)
