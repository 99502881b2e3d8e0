"""What the resource manager is told, kept with the time it arrived (ROS-free; the node feeds it).

- Every platform input (load, battery, each temperature zone) carries its receive time and expires after
  `expiry_s`: an expired reading is pruned and the input is named in `PlatformState.stale`, so a dead
  monitor's last 0.9 CPU load stops counting instead of holding the manager at high background load.
- A temperature counts only once confirmed: a zone's value is the second-highest of its last 3 fresh
  readings, so one 150 C outlier never sets a cap, and a zone nobody refreshes expires like the rest.
- Every set keyed by a name from the wire is bounded (LRU, with one notice when the cap is first hit):
  temperature zones (a flood of 10,000 zones cannot blow the decision budget) and warning keys.
- Parameter enums and names are checked here too (ranges: `dynofa_ros.bounds.Bound`), so start-up and
  run-time sets share one rule.
"""
from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from dynofa_ros.manager.policy import PlatformState
from dynofa_ros.targets import FIELDS, Target

DEFAULT_EXPIRY_S = 3.0      # a few monitor periods at the monitor's default 2 Hz
MAX_ZONES = 64              # real boards have <= 12 thermal zones
ZONE_WINDOW = 3             # readings kept per zone; the value is the second-highest of them
MAX_CORES = 1024            # cpu_percent entries looked at
MAX_KEY_CHARS = 64          # a zone name from the wire is cut to this
WARN_PERIOD_S = 10.0        # one warning per key this often
MAX_WARN_KEYS = 256
CONTROL_MODES = ("managed", "manual")


# ---------------------------------------------------------------------------------------------- parameters
def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    """`value` when it is one of `choices`, else ValueError listing them (never a silent default)."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {str(value)[:MAX_KEY_CHARS]!r}")
    return str(value)


def check_names(name: str, values: Iterable[str], cap: int) -> list[str]:
    """Workload names: 1..cap distinct identifiers (each becomes a parameter prefix `<name>.`)."""
    names = list(values)
    if not names or len(names) > cap:
        raise ValueError(f"{name} must list 1..{cap} names, got {len(names)}")
    for n in names:
        if not (n.isidentifier() and n.isascii() and len(n) <= MAX_KEY_CHARS):
            raise ValueError(f"{name}: {n[:MAX_KEY_CHARS]!r} is not a name (letters, digits, _; "
                             f"at most {MAX_KEY_CHARS} characters)")
    if len(set(names)) != len(names):
        raise ValueError(f"{name} lists a name twice: {names}")
    return names


# ---------------------------------------------------------------------------------------------- warnings
class WarningLimiter:
    """At most one warning per key per `period_s`, counting the ones held back; at most `cap` keys
    remembered (least recent dropped). Keys should be few (a kind of problem, a configured name)."""

    def __init__(self, period_s: float = WARN_PERIOD_S, cap: int = MAX_WARN_KEYS) -> None:
        self.period_s = period_s
        self.cap = cap
        self._last: OrderedDict[str, list] = OrderedDict()  # key -> [last warned at, held back since]
        self.cap_hit = False            # set once, when the first key beyond `cap` arrives
        self._cap_reported = False

    def allow(self, key: str, now: float) -> int | None:
        """None: hold this one back; else warn now, and this many were held back since the last one."""
        entry = self._last.get(key)
        if entry is not None and now - entry[0] < self.period_s:
            entry[1] += 1
            return None
        held = entry[1] if entry is not None else 0
        self._last[key] = [now, 0]
        self._last.move_to_end(key)
        if len(self._last) > self.cap:
            self._last.popitem(last=False)
            self.cap_hit = True
        return held

    def cap_notice(self) -> bool:
        """True exactly once, after the cap was first hit (the caller logs that names are being dropped)."""
        if self.cap_hit and not self._cap_reported:
            self._cap_reported = True
            return True
        return False


# ---------------------------------------------------------------------------------------------- platform
@dataclass(frozen=True)
class _Load:
    cpu_percent: tuple[float, ...]
    gpu_percent: float
    memory_used_mb: float
    memory_total_mb: float


class PlatformInputs:
    """Load, battery and temperature readings with their receive times; `snapshot(now)` is what the
    policy may use now. `version` changes whenever a snapshot would (a reading arrived or expired)."""

    def __init__(self, expiry_s: float = DEFAULT_EXPIRY_S, max_zones: int = MAX_ZONES) -> None:
        self.expiry_s = expiry_s
        self.max_zones = max_zones
        self._load: _Load | None = None
        self._battery: tuple[float, bool] | None = None
        self._zones: OrderedDict[str, deque[tuple[float, float]]] = OrderedDict()
        self._seen: dict[str, float] = {}       # input -> when its latest reading arrived
        self.version = 0
        self.zones_evicted = 0                  # zones dropped to make room (cap hit)

    def on_load(self, cpu_percent: Sequence[float], gpu_percent: float, memory_used_mb: float,
                memory_total_mb: float, now: float) -> None:
        cpu = tuple(float(c) for c in cpu_percent[:MAX_CORES])
        self._load = _Load(cpu, float(gpu_percent), float(memory_used_mb), float(memory_total_mb))
        self._arrived("load", now)

    def on_battery(self, percent: float, charging: bool, now: float) -> None:
        self._battery = (float(percent) if math.isfinite(percent) else math.nan, bool(charging))
        self._arrived("battery", now)

    def on_temperature(self, zone: str, celsius: float, now: float) -> bool:
        """Record one reading; False when it is not a temperature (NaN, inf, below absolute zero).
        A new zone beyond `max_zones` evicts the least recently updated one (counted in zones_evicted)."""
        if not math.isfinite(celsius) or celsius < -273.15:
            return False
        key = zone[:MAX_KEY_CHARS] or "unknown"
        readings = self._zones.get(key)
        if readings is None:
            readings = self._zones[key] = deque(maxlen=ZONE_WINDOW)
            if len(self._zones) > self.max_zones:
                self._zones.popitem(last=False)
                self.zones_evicted += 1
        self._zones.move_to_end(key)
        readings.append((now, float(celsius)))
        self._arrived("temperature", now)
        return True

    def _arrived(self, name: str, now: float) -> None:
        self._seen[name] = now
        self.version += 1

    def prune(self, now: float) -> None:
        """Drop every reading older than `expiry_s` (and zones left with none)."""
        horizon = now - self.expiry_s
        dropped = False
        for key in list(self._zones):
            readings = self._zones[key]
            while readings and readings[0][0] < horizon:
                readings.popleft()
                dropped = True
            if not readings:
                del self._zones[key]
        if self._load is not None and self._seen["load"] < horizon:
            self._load = None
            dropped = True
        if self._battery is not None and self._seen["battery"] < horizon:
            self._battery = None
            dropped = True
        if dropped:
            self.version += 1

    def stale(self, now: float) -> tuple[str, ...]:
        """Inputs that were received but whose latest reading has expired (never received: not stale)."""
        return tuple(n for n in ("load", "temperature", "battery")
                     if n in self._seen and now - self._seen[n] > self.expiry_s)

    def ages(self, now: float) -> dict[str, float]:
        """Seconds since each received input's latest reading."""
        return {n: now - t for n, t in self._seen.items()}

    def confirmed_temperatures(self) -> dict[str, float]:
        """Per zone the second-highest of its fresh readings: a value counts once two readings reach it."""
        out = {}
        for key, readings in self._zones.items():
            if len(readings) >= 2:
                out[key] = sorted(v for _, v in readings)[-2]
        return out

    def zone_count(self) -> int:
        return len(self._zones)

    def snapshot(self, now: float) -> PlatformState:
        """The platform state to decide on now: expired readings pruned, stale inputs named."""
        self.prune(now)
        state = PlatformState(temperatures_c=self.confirmed_temperatures(), stale=self.stale(now))
        if self._load is not None:
            state.cpu_percent = self._load.cpu_percent
            state.gpu_percent = self._load.gpu_percent
            state.memory_used_mb = self._load.memory_used_mb
            state.memory_total_mb = self._load.memory_total_mb
        if self._battery is not None:
            state.battery_percent, state.charging = self._battery
        return state


# ---------------------------------------------------------------------------------------------- workloads
class WorkloadInputs:
    """Per configured workload: when its status last arrived, its control mode, and whether the manager
    holds an explicit target for it (set by topic or parameter) or may adopt the one its status reports."""

    def __init__(self, names: Iterable[str], expiry_s: float = DEFAULT_EXPIRY_S) -> None:
        self.expiry_s = expiry_s
        self._seen: dict[str, float] = {}
        self._mode: dict[str, str] = {n: "managed" for n in names}
        self._explicit: set[str] = set()

    def on_status(self, name: str, control_mode: str, now: float) -> bool:
        """Record a status; False when its control mode is unknown (then treated as managed)."""
        self._seen[name] = now
        known = control_mode in CONTROL_MODES or control_mode == ""  # empty: a node predating the field
        self._mode[name] = control_mode if control_mode in CONTROL_MODES else "managed"
        return known

    def manual(self, name: str) -> bool:
        """The workload's node has a hand-set sub-network and ignores decisions (its latest status says so)."""
        return self._mode.get(name) == "manual"

    def mode(self, name: str) -> str:
        return self._mode.get(name, "managed")

    def age(self, name: str, now: float) -> float:
        """Seconds since its latest status (inf: none yet)."""
        return now - self._seen[name] if name in self._seen else math.inf

    def stale(self, name: str, now: float) -> bool:
        return name in self._seen and now - self._seen[name] > self.expiry_s

    def set_explicit(self, name: str) -> None:
        self._explicit.add(name)

    def should_adopt(self, name: str, reported: Target, current: Target) -> bool:
        """Adopt a status's target (restart recovery) while no explicit target is held, the status carries
        one (all zeros: the node was never given a target) and it differs from the current one."""
        values = lambda t: tuple(getattr(t, f) for f in FIELDS)  # noqa: E731 - field values, not class
        return (name not in self._explicit and values(reported) != values(Target())
                and values(reported) != values(current))
