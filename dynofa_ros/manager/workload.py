"""Per-workload state: its operating points, target, current point, and the measured-latency model
correction (feedback ratios and pins), as in the Dynamic-OFA reference runtime loop."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from dynofa_ros.manager.types import PolicyConfig, WorkloadFeedback
from dynofa_ros.operating_points import OperatingPoint
from dynofa_ros.targets import Target


@dataclass
class WorkloadState:
    name: str
    device_key: str
    kind: str
    points: list[OperatingPoint]            # sorted fastest first
    base: list[float]                       # table latency of points (ms)
    target: Target
    rate_hz: float
    threads: int = 1                        # cores one inference keeps busy (device key, e.g. cpu@2t)
    current: OperatingPoint | None = None
    last_switch: float = -math.inf
    last_direction: int = 0                 # +1: last switch went to a slower point, -1: to a faster one
    reversals: int = 0                      # recent back-and-forth switches: the reversal dwell doubles
    urgent: bool = True                     # retarget pending: next decision may switch at once
    ratios: dict[str, float] = field(default_factory=dict)   # measured/modelled latency per point id
    pinned: dict[str, float] = field(default_factory=dict)   # point id -> until when it may not be re-entered
    pin_count: dict[str, int] = field(default_factory=dict)
    measured_at: dict[str, float] = field(default_factory=dict)   # point id -> when its ratio was last measured
    feedback: WorkloadFeedback | None = None
    feedback_at: float = -math.inf          # when the last accepted status arrived
    predicted_raw_ms: float = math.nan      # model latency (no feedback) of the current point, last decision
    materialised: list[str] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)    # point id -> position in `points`
    _factors: tuple[float, list[float]] | None = field(default=None, repr=False)
    _memory_s: float = 60.0                 # PolicyConfig.ratio_memory_s, set by the policy
    _rings: list[list[int]] | None = field(default=None, repr=False)

    @property
    def current_index(self) -> int:
        return self.index[self.current.id] if self.current is not None else -1

    def ratio(self, p: OperatingPoint) -> float:
        return self.ratios.get(p.id, 1.0)

    def factors(self, now: float) -> list[float]:
        """Feedback correction per point. A point measured within `ratio_memory_s` keeps its own measured
        ratio (forgetting it at once would make the manager probe it again and again); the others take
        the current point's ratio, as the Dynamic-OFA reference runtime loop does (a slower one no less
        than its table entry). A point
        left for being measured too slow is pinned: for a while never predicted faster than its table
        entry. Cached until `now` or the state changes (a decision asks for it several times)."""
        if self._factors is None or self._factors[0] != now:
            self._factors = (now, self._compute_factors(now))
        return self._factors[1]

    def _compute_factors(self, now: float) -> list[float]:
        if self.current is None:
            return [1.0] * len(self.points)
        ci = self.index[self.current.id]
        cur_ratio = self.ratio(self.current)
        out = []
        for i, p in enumerate(self.points):
            pinned = self.pinned.get(p.id, -math.inf) > now
            if i == ci:
                out.append(cur_ratio)
            elif self.remembers(p.id, now):
                out.append(max(1.0, self.ratio(p)) if pinned else self.ratio(p))
            else:   # never predict an unmeasured slower point faster than its table entry
                out.append(cur_ratio if self.base[i] <= self.base[ci] else max(1.0, cur_ratio))
        return out

    def reversal_dwell(self, config: PolicyConfig) -> float:
        """How long a switch back in the direction it came from waits: `reversal_dwell_s`, doubled for
        every recent reversal (a co-runner that comes and goes cannot drag the manager along)."""
        return config.reversal_dwell_s * 2 ** self.reversals

    def remembers(self, point_id: str, now: float) -> bool:
        return now - self.measured_at.get(point_id, -math.inf) <= self._memory_s

    def ring(self, i: int) -> list[int]:
        """The other points by distance from point `i`, the faster first on ties: the ones most likely
        next (computed once; materialisation walks it every decision)."""
        if self._rings is None:
            n = len(self.points)
            self._rings = [sorted((j for j in range(n) if j != c), key=lambda j, c=c: (abs(j - c), j > c))
                           for c in range(n)]
        return self._rings[i]

    def util(self, lat_ms: float) -> float:
        return min(1.0, lat_ms * self.rate_hz / 1000.0)

    def own_load(self, now: float, max_age_s: float) -> float:
        """Busy cores this workload explains by its last fresh status (rate x latency x threads: a
        `cpu@2t` inference keeps two cores busy); 0 when expired."""
        fb = self.feedback
        if fb is None or now - self.feedback_at > max_age_s:
            return 0.0
        if math.isfinite(fb.output_rate_hz) and math.isfinite(fb.latency_p50_ms):
            return fb.output_rate_hz * fb.latency_p50_ms / 1000.0 * self.threads
        return 0.0

    def record(self, fb: WorkloadFeedback, now: float, config: PolicyConfig) -> bool:
        """Take a status; True when it updated the current point's ratio. A status measured more than
        `feedback_max_age_s` ago is ignored altogether."""
        if math.isfinite(fb.stamp_s) and now - fb.stamp_s > config.feedback_max_age_s:
            return False
        self.feedback, self.feedback_at = fb, now
        if math.isfinite(fb.input_rate_hz) and fb.input_rate_hz > 0:
            self.rate_hz = fb.input_rate_hz
        # compare like with like: the measured statistic the targets are judged on
        p95 = config.latency_stat == "p95" and fb.latency_p95_ms > 0
        measured = fb.latency_p95_ms if p95 else fb.latency_p50_ms
        if (self.current is None or fb.active_subnet_id != self.current.id
                or now - self.last_switch < config.feedback_settle_s
                or not (measured > 0) or not (self.predicted_raw_ms > 0)):
            return False
        lo, hi = config.feedback_clamp
        r = self.ratio(self.current)
        # one outlying status moves the ratio by at most feedback_alpha * (step - 1): a lasting change
        # still gets through in a few statuses, a single spike cannot flip the decision
        step = config.feedback_step
        sample = min(hi, max(lo, r / step, min(r * step, measured / self.predicted_raw_ms)))
        self.ratios[self.current.id] = r + config.feedback_alpha * (sample - r)
        self.measured_at[self.current.id] = now
        self._factors = None
        return True

    def switch_to(self, i: int, factor: float, now: float, config: PolicyConfig) -> None:
        """Make point `i` current. A more accurate point left while measured slower than its model is
        pinned (whatever the target: latency or energy), for longer on each repeat."""
        p, old = self.points[i], self.current
        if old is not None:
            oi = self.index[old.id]
            if p.accuracy < old.accuracy and self.ratio(old) > 1.0 + config.feedback_deadband:
                k = self.pin_count[old.id] = self.pin_count.get(old.id, 0) + 1
                self.pinned[old.id] = now + config.pin_s * 2 ** min(4, k - 1)
            direction = 1 if i > oi else -1
            since = now - self.last_switch
            if direction == -self.last_direction and since < 2 * self.reversal_dwell(config):
                self.reversals = min(4, self.reversals + 1)
            elif since > 4 * self.reversal_dwell(config):
                self.reversals = 0
            self.last_direction = direction
        self.last_switch = now
        self.current = p
        self._factors = None
        if not self.remembers(p.id, now):
            self.ratios[p.id] = factor   # entered on this estimate; measurements take over after settling
