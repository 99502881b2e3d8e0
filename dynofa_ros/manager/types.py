"""The policy's typed configuration, its inputs and its decision (data only, no behaviour)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from dynofa_ros.operating_points import OperatingPoint

MODES = ("normal", "saving", "critical")
STALE_INPUTS = ("load", "temperature", "battery")   # what PlatformState.stale may name


class UnknownWorkload(KeyError):
    """A target or status for a workload the manager was not configured with."""


@dataclass
class PlatformState:
    """Latest hardware state; NaN / empty where unknown. `stale` names expired inputs (STALE_INPUTS)."""
    battery_percent: float = math.nan
    charging: bool = False
    temperatures_c: dict[str, float] = field(default_factory=dict)
    cpu_percent: tuple[float, ...] = ()
    gpu_percent: float = math.nan
    memory_used_mb: float = math.nan
    memory_total_mb: float = math.nan
    stale: tuple[str, ...] = ()


@dataclass(frozen=True)
class WorkloadFeedback:
    """What a perception node reports (WorkloadStatus); `stamp_s`: when it was measured, on the clock
    `decide(now)` uses (NaN: as it arrives)."""
    active_subnet_id: str
    latency_p50_ms: float
    latency_p95_ms: float = math.nan
    input_rate_hz: float = math.nan
    output_rate_hz: float = math.nan
    stamp_s: float = math.nan


@dataclass
class PolicyConfig:
    latency_stat: str = "p95"               # table statistic compared with max_latency_ms (and fed back)
    up_margin: float = 0.10                 # headroom a *new* point needs on latency and energy bounds
    frequency_margin: float = 0.08          # headroom a *new* lower frequency needs (same idea)
    frequency_down_dwell_s: float = 3.0     # lower the clock no sooner than this after the last change
    min_dwell_s: float = 1.0                # no non-urgent switch sooner than this after the last one
    reversal_dwell_s: float = 10.0          # ... nor back towards the point just left sooner than this
    accuracy_gain_min: float = 0.002        # a non-urgent move up must gain at least this (fraction)
    energy_gain_min: float = 0.05           # a non-urgent energy-motivated change must save >= 5 %
    feedback_alpha: float = 0.2             # EWMA weight of a new measured/predicted latency ratio
    feedback_settle_s: float = 0.5          # ignore status this long after a switch (window still mixed)
    feedback_max_age_s: float = 5.0         # status older than this is ignored (and stops counting as load)
    feedback_clamp: tuple[float, float] = (0.25, 8.0)
    feedback_step: float = 1.5              # a sample counts at most this factor away from the current ratio
    ratio_memory_s: float = 60.0            # a point's measured ratio is used this long after its last status
    feedback_deadband: float = 0.05         # a point left while measured this much slower gets pinned
    pin_s: float = 10.0                     # ... and is not re-entered for this long (doubling on repeats)
    load_alpha: float = 0.3                 # EWMA of the background load ...
    load_spike: float = 0.2                 # ... except a rise by more than this is taken at once (a spike)
    contention_gain: float = 1.0            # latency x (1 + gain * busy share of co-runners)
    default_rate_hz: float = 30.0           # frame rate assumed until a status reports one
    throttle_c: float = 95.0                # hardware throttling temperature
    thermal_margin_c: float = 3.0           # hold the hottest zone this far below it
    thermal_gain: float = 0.05              # cap change per C of error per second
    thermal_hysteresis_c: float = 1.0       # raise the cap only this far below the set point
    thermal_min_cap: float = 0.5            # no lower than the hardware's own throttle would go
    thermal_saves_energy: bool = True       # while a thermal cap holds, pick points by energy (heat) like saving
    saving_below_percent: float = 40.0      # battery energy-saving mode
    critical_below_percent: float = 15.0
    battery_hysteresis_percent: float = 3.0
    saving_accuracy_tolerance: float = 0.02  # saving mode gives up at most this much accuracy for energy
    critical_frequency_cap: float = 0.7
    memory_budget_mb: float = 0.0           # 0 = unlimited: materialised points of all workloads together
    memory_reserve_mb: float = 256.0        # keep this much of the machine's memory free (PlatformLoad)
    time_budget_ms: float = 5.0             # the search returns its best so far after this
    frequency_applied: bool = True          # False (dry run): hardware stays at max, feedback knows it
    max_workloads: int = 16                 # input bounds: a flood cannot blow the decision time
    max_zones: int = 64                     # temperature zones looked at per update (real boards: <= 12)
    max_name_len: int = 128


@dataclass(frozen=True)
class SubnetChoice:
    workload: str
    point: OperatingPoint
    expected_latency_ms: float
    expected_energy_mj: float
    target_met: bool
    reason: str
    status: str                             # empty when met; else which constraint and why

    @property
    def subnet_id(self) -> str:
        return self.point.id


@dataclass(frozen=True)
class FrequencyChoice:
    domain: str
    frequency_hz: int
    governor: str
    reason: str


@dataclass
class PolicyDecision:
    subnets: dict[str, SubnetChoice]
    frequencies: list[FrequencyChoice]
    mode: str
    caps: dict[str, float]                  # frequency cap per processor kind (fraction of max)
    materialised: dict[str, list[str]]      # point ids each workload keeps resident
    search_ms: float
    truncated: bool                         # time budget hit: best so far returned
    stale: tuple[str, ...] = ()             # expired platform inputs: the decision is the conservative one
    zones_ignored: int = 0                  # temperature zones beyond max_zones in the last platform update
