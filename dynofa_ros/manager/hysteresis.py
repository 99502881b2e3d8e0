"""Hysteresis on the operating-point decision, the same whichever input triggered it (a status, the
timer, a platform reading): noise in the estimates must not make the manager switch back and forth.

Two independent holds keep the current point when no switch is urgent (urgent: a retarget, or the
current point no longer meets its latency, accuracy or memory bound):
- the dwell: no switch sooner than `min_dwell_s` after the last one, and none back in the direction it
  came from (a reversal) sooner than `reversal_dwell_s`, doubled for each recent reversal (up to 16x);
- the gain band: a current point that still meets every bound stays unless the new one is better by at
  least `accuracy_gain_min` (normal mode) or `energy_gain_min` of its energy (energy objectives).
A new point also needs `up_margin` headroom on the latency and energy bounds, the current one only has to
fit (see `selection.candidates`).
"""
from __future__ import annotations

from dynofa_ros.manager.types import PolicyConfig
from dynofa_ros.manager.workload import WorkloadState


def dwell_hold(w: WorkloadState, best: int, now: float, config: PolicyConfig) -> str:
    """Why the dwell keeps the current point (empty: it does not)."""
    since = now - w.last_switch
    if since < config.min_dwell_s:
        return "dwell time"
    direction = 1 if best > w.current_index else -1
    if direction == -w.last_direction and since < w.reversal_dwell(config):
        return "reversal dwell"
    return ""


def gain_hold(objective: str, cur: int, best: int, accuracy: list[float], energy: list[float],
              config: PolicyConfig) -> str:
    """Why the gain band keeps the current point (empty: the gain is worth a switch)."""
    if objective == "normal":
        small = accuracy[best] - accuracy[cur] < config.accuracy_gain_min
    else:
        small = energy[cur] - energy[best] < config.energy_gain_min * energy[cur]
    return "gain too small" if small else ""
