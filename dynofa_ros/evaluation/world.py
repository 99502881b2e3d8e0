"""An independent model of a Jetson Xavier NX, used only to JUDGE controllers (never given to them).

The policy under test plans with its own model (`latency = table * (b / f + 1 - b) * contention`,
`power = static + dynamic * (f / fmax) ** e * util`, config/devices/*.yaml). This module shares none of
that code or those numbers and adds what that model lacks:

- voltage-frequency curves with a floor (below the knee, lower clocks save only linearly);
- leakage that grows with voltage and temperature, and a thermal RC node so temperature follows power,
  with the board's own software throttling;
- a memory-bound share of every DNN's latency that does not scale with the core clock;
- idle power (clock-gated residual, GPU leakage while powered) and CPU core power-gating (C6) in idle
  gaps, so race-to-idle is sometimes worth it;
- interference from co-runners: GPU time slicing, CPU cores shared past the free clusters, and memory
  bandwidth contention that also stretches the memory-bound share;
- per-frame latency noise with rare bursts, and sensors that are noisy, quantised and delayed.

Controllers see only what a real board gives: per-workload status computed from measured frames
(p50 / p95 / mean over the last 20), cpu / gpu load, thermal zones and the battery gauge, through
`sensors()` (delayed, noisy); the rails (VDD_IN, VDD_CPU_GPU_CV, VDD_SOC) are measured like INA3221.

Sources (figures that are not from a source are marked ASSUMPTION):
[DS]   NVIDIA Jetson Xavier NX Data Sheet DS-09693: 6 Carmel cores in 3 clusters of 2, 384-core Volta GPU
       up to 1100 MHz, 10 / 15 / 20 W power modes.
[L4T]  cpufreq / devfreq frequency tables as listed by L4T 35 on the module (115.2-1907.2 MHz CPU,
       114.75-1109.25 MHz GPU); NVIDIA Jetson Linux Developer Guide, "Platform Power and Performance,
       Jetson Xavier NX series": rails VDD_IN (module input), VDD_CPU_GPU_CV (CPU, GPU, DLA/PVA),
       VDD_SOC; cpuidle C6 core power-down on Carmel; GPU rail-gating after an idle autosuspend delay.
[FORUM] NVIDIA developer forum "Interpretation of Jetson NX power rail" (t/200883): VDD_IN is the module
       total; DDR and interface rails are inside VDD_IN only, hence VDD_CPU_GPU_CV + VDD_SOC < VDD_IN.
[TDG]  Jetson Xavier NX Thermal Design Guide TDG-09733: software throttling from about 96-97 C.
[DOFA] Dynamic-OFA (Lou et al., CVPRW 2021, arXiv 2105.03596), Xavier NX: a GPU DNN takes 43 ms alone
       at 1.1 GHz and 69 ms at 803 MHz with one co-runner. The memory share and the interference
       constants below are chosen so that this figure is reproduced (test_evaluation_world checks it).
[KANG] Kang, "Beyond CPU-GPU Frequency: Memory-Clock and Tail Effects in Edge Inference Latency
       Estimation" (arXiv 2606.16106, Orin Nano): memory clock shifts latency +11 to +48 %, deadline
       misses cluster in bursts. Used only qualitatively (memory share, bursty tail).
"""
from __future__ import annotations

import bisect
import math
import random
from collections import deque
from dataclasses import dataclass, field

# ------------------------------------------------------------------------------------------- constants

T_REF_C = 50.0                  # leakage reference temperature


@dataclass(frozen=True)
class VfCurve:
    """Supply voltage as a piecewise-linear function of frequency (V at Hz)."""
    points: tuple[tuple[float, float], ...]

    def volts(self, hz: float) -> float:
        pts = self.points
        if hz <= pts[0][0]:
            return pts[0][1]
        for (f0, v0), (f1, v1) in zip(pts, pts[1:]):
            if hz <= f1:
                return v0 + (v1 - v0) * (hz - f0) / (f1 - f0)
        return pts[-1][1]


@dataclass(frozen=True)
class Processor:
    """One DVFS domain's physics. Dynamic power = ceff * V^2 * f * activity."""
    name: str
    kind: str                   # cpu | gpu
    cores: int
    levels_hz: tuple[int, ...]
    vf: VfCurve
    busy_w_at_max: float        # dynamic power, every core busy, at max clock
    idle_activity: float        # residual switching while clock-gated idle (share of busy dynamic)
    leak_w_at_max: float        # leakage at max-clock voltage and T_REF_C
    leak_doubling_c: float      # leakage doubles every this many degrees
    idle_power_gated: float     # share of idle time in a power-gated state (no leakage): CPU C6

    @property
    def max_hz(self) -> int:
        return self.levels_hz[-1]

    def ceff(self) -> float:
        return self.busy_w_at_max / (self.vf.volts(self.max_hz) ** 2 * self.max_hz)

    def power_w(self, hz: float, util: float, temp_c: float, powered: bool = True) -> tuple[float, float]:
        """(dynamic, leakage) W at `util` busy share of its cores."""
        if not powered:
            return 0.0, 0.0
        v = self.vf.volts(hz)
        busy = self.ceff() * v * v * hz
        dyn = busy * (util + (1.0 - util) * self.idle_activity)
        leak = (self.leak_w_at_max * (v / self.vf.volts(self.max_hz))
                * 2.0 ** ((temp_c - T_REF_C) / self.leak_doubling_c))
        return dyn, leak * (util + (1.0 - util) * (1.0 - self.idle_power_gated))

    def level(self, hz: float) -> int:
        """The available level the driver picks for a request: the lowest at or above it (clamped)."""
        i = bisect.bisect_left(self.levels_hz, hz - 1.0)
        return self.levels_hz[min(i, len(self.levels_hz) - 1)]


_CPU_KHZ = (115200, 192000, 268800, 345600, 422400, 499200, 576000, 652800, 729600, 806400, 883200, 960000,
            1036800, 1113600, 1190400, 1267200, 1344000, 1420800, 1497600, 1574400, 1651200, 1728000, 1804800,
            1881600, 1907200)                                                                  # [L4T]
_GPU_HZ = (114750000, 204000000, 306000000, 408000000, 510000000, 599250000, 701250000, 752250000, 803250000,
           854250000, 905250000, 956250000, 1007250000, 1058250000, 1109250000)                  # [L4T]
# ASSUMPTION: Tegra194's BPMP voltage tables are not public. Typical 12 nm shape: a floor near 0.6 V up
# to a knee, then roughly linear to about 1.0-1.05 V at the top clock.
CPU_VF = VfCurve(((115.2e6, 0.60), (806.4e6, 0.62), (1420.8e6, 0.80), (1907.2e6, 1.05)))
GPU_VF = VfCurve(((114.75e6, 0.60), (510e6, 0.62), (803.25e6, 0.78), (1109.25e6, 1.00)))


def _cpu_cluster(name: str) -> Processor:
    # ASSUMPTION: 1.6 W dynamic per busy 2-core cluster at 1.9 GHz and 0.12 W leakage at 50 C: in the
    # 20 W mode (2 cores at 1.9 GHz) the CPU share of VDD_CPU_GPU_CV is a few watts [DS].
    # C6 in 90 % of idle time (gaps shorter than its target residency stay in WFI) [L4T cpuidle].
    return Processor(name, "cpu", 2, tuple(k * 1000 for k in _CPU_KHZ), CPU_VF, busy_w_at_max=1.6,
                     idle_activity=0.03, leak_w_at_max=0.12, leak_doubling_c=25.0, idle_power_gated=0.9)


# ASSUMPTION: 4.5 W dynamic for a fully busy GPU at 1.1 GHz and 0.55 W leakage at 50 C (a DNN at full
# GPU load keeps VDD_CPU_GPU_CV at about 5-6 W in the 15 W mode). Clock-gated idle keeps 8 % of the
# switching (clock tree); the GPU stays powered (leaks) in the short gaps between frames, it rail-gates
# only when no GPU work arrives for a whole step (autosuspend) [L4T].
GPU = Processor("gpu", "gpu", 1, _GPU_HZ, GPU_VF, busy_w_at_max=4.5, idle_activity=0.08, leak_w_at_max=0.55,
                leak_doubling_c=25.0, idle_power_gated=0.0)


@dataclass(frozen=True)
class WorldConfig:
    """The rest of the module and the board. All ASSUMPTION unless marked."""
    processors: tuple[Processor, ...] = (_cpu_cluster("cpu0"), _cpu_cluster("cpu2"), _cpu_cluster("cpu4"), GPU)
    soc_w: float = 1.1              # VDD_SOC (fabric, always-on, media blocks) at idle
    ddr_idle_w: float = 0.6         # DDR self-refresh / background, inside VDD_IN only [FORUM]
    ddr_w_per_traffic: float = 1.4  # DDR + EMC power at full memory traffic
    other_w: float = 0.4            # interfaces and PLLs inside VDD_IN [FORUM]
    regulator_eff: float = 0.88     # module regulators: VDD_IN = rails / efficiency
    carrier_eff: float = 0.92       # battery -> module DC-DC on the robot
    r_c_per_w: float = 2.3          # junction-to-ambient, heatsink + fan
    c_j_per_c: float = 40.0         # time constant R*C ~ 90 s
    zone_c_per_w: dict = field(default_factory=lambda: {"CPU-therm": ("cpu", 0.6), "GPU-therm": ("gpu", 0.5),
                                                        "SOC0-therm": (None, 0.0)})
    throttle_c: float = 96.0        # software throttling trip [TDG]
    throttle_release_c: float = 5.0
    throttle_fraction: float = 0.6  # clocks capped to this share of max while throttled
    gpu_mem_share: float = 0.30     # latency share bound by memory, not the GPU clock (fits [DOFA])
    cpu_mem_share: float = 0.22     # same for the CPU
    interference_mem: float = 0.6   # memory share stretch per unit of others' memory traffic
    latency_sigma: float = 0.05     # per-frame lognormal jitter
    burst_p: float = 0.02           # share of frames in a slow burst [KANG, qualitative]
    burst_factor: float = 1.35
    table_mismatch: float = 0.04    # truth differs from the published table per point (unit-to-unit)
    monitor_period_s: float = 1.0   # the platform monitor publishes once a second ...
    sensor_delay_s: float = 0.5     # ... and its reading reaches the controller this much later
    temp_noise_c: float = 0.3
    temp_step_c: float = 0.5        # thermal zone resolution
    load_noise: float = 0.03        # cpu / gpu load reading noise (share)
    power_noise: float = 0.02       # INA3221 reading noise (share)
    os_load: float = 0.03           # background OS load per core


XAVIER_NX = WorldConfig()


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


# ------------------------------------------------------------------------------------------- inputs

@dataclass(frozen=True)
class Job:
    """A DNN workload as the world runs it: published latencies alone at the top clock, per point."""
    name: str
    processor: str                  # "gpu", or the CPU cluster its 2 threads run on ("cpu0")
    rate_hz: float                  # camera rate; a frame arriving while one is in flight is dropped
    truth_ms: dict[str, float]


@dataclass(frozen=True)
class CoRunner:
    """Work beside the DNNs: CPU cores it keeps busy at the top clock, GPU time, DRAM traffic share."""
    cpu_cores: float = 0.0
    gpu_share: float = 0.0
    mem_traffic: float = 0.0


@dataclass
class FrameCount:
    """Frames of one job in one step; in the noise-free world `met` is an expectation."""
    arrived: float = 0.0
    processed: float = 0.0
    met: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Status:
    """What a perception node reports (WorkloadStatus), from its last 20 measured frames."""
    point_id: str
    latency_p50_ms: float
    latency_p95_ms: float
    latency_mean_ms: float
    input_rate_hz: float
    output_rate_hz: float


@dataclass(frozen=True)
class Sensors:
    """A platform-monitor reading: noisy, quantised, `sensor_delay_s` old."""
    time_s: float
    cpu_percent: tuple[float, ...]
    gpu_percent: float
    temperatures_c: dict[str, float]
    battery_percent: float
    rails_w: dict[str, float]       # VDD_IN, VDD_CPU_GPU_CV, VDD_SOC


# ------------------------------------------------------------------------------------------- the world

JOB_TRAFFIC = 0.35      # ASSUMPTION: DRAM traffic share a DNN causes while it runs
WINDOW = 20             # frames per status window (as the perception node)
RATE_STEPS = 50         # steps the reported rates average over (5 s at 0.1 s steps)


class World:
    """The judged platform. Call set_* then step(dt, targets); read sensors(), status(), energy."""

    def __init__(self, jobs: list[Job], seed: int, ambient_c: float = 25.0, battery_wh: float = 10.0,
                 battery_percent: float = 100.0, noise: bool = True, config: WorldConfig = XAVIER_NX) -> None:
        self.cfg = config
        self.jobs = {j.name: j for j in jobs}
        self.proc = {p.name: p for p in config.processors}
        self.rng = random.Random(seed)
        self.noise = noise
        mis = random.Random(seed * 7919 + 1)   # unit-to-unit mismatch: fixed per seed, noise or not
        self.mismatch = {(j.name, pid): math.exp(mis.gauss(0.0, config.table_mismatch))
                         for j in jobs for pid in sorted(j.truth_ms)}
        self.requested = {n: p.max_hz for n, p in self.proc.items()}
        self.points = {j.name: next(iter(j.truth_ms)) for j in jobs}
        self.corunner = CoRunner()
        self.ambient_c = ambient_c
        self.temp_c = ambient_c + 4.0 * config.r_c_per_w     # a board idling at about 4 W
        self.throttled = False
        self.time_s = 0.0
        self.battery_j = battery_wh * 3600.0 * battery_percent / 100.0
        self.capacity_j = battery_wh * 3600.0
        self.energy_j = {"VDD_IN": 0.0, "VDD_CPU_GPU_CV": 0.0, "VDD_SOC": 0.0}
        self.corunner_work = [0.0, 0.0]                 # delivered, demanded (core-seconds at max clock)
        self.throttled_s = 0.0
        self.max_temp_c = self.temp_c
        self._busy = {j.name: 0.0 for j in jobs}
        self._spill = 0.0
        self._credit = {j.name: 0.0 for j in jobs}
        self._inflight: dict[str, list[tuple[float, float]]] = {j.name: [] for j in jobs}
        self._waiting = {j.name: False for j in jobs}
        self._util = {n: 0.0 for n in self.proc}
        self._power = {n: 0.0 for n in self.proc}
        self._rails = {"VDD_IN": 0.0, "VDD_CPU_GPU_CV": 0.0, "VDD_SOC": config.soc_w}
        self._window = {j.name: deque(maxlen=WINDOW) for j in jobs}
        self._served = {j.name: deque(maxlen=RATE_STEPS) for j in jobs}   # (dt, arrived, served) per step
        self._history: deque[Sensors] = deque()
        self._util_acc: dict[str, float] = {}
        self._acc_s = 0.0

    # ---- what a controller may change
    def set_frequency(self, domain: str, hz: float) -> None:
        if domain in self.proc:
            self.requested[domain] = self.proc[domain].level(hz)

    def set_point(self, job: str, point_id: str) -> None:
        if point_id not in self.jobs[job].truth_ms:
            raise KeyError(f"job {job!r} has no point {point_id!r}")
        self.points[job] = point_id

    # ---- what the scenario changes
    def set_corunner(self, corunner: CoRunner) -> None:
        self.corunner = corunner

    def set_ambient(self, ambient_c: float) -> None:
        self.ambient_c = ambient_c

    # ---- physics
    def effective_hz(self, domain: str) -> int:
        p = self.proc[domain]
        hz = self.requested[domain]
        if self.throttled:
            cap = [f for f in p.levels_hz if f <= self.cfg.throttle_fraction * p.max_hz]
            hz = min(hz, cap[-1] if cap else p.levels_hz[0])
        return hz

    def latency_ms(self, job: str, point_id: str | None = None) -> float:
        """Mean latency of `job` now: compute share scaled by the clock and stretched by co-runners on
        the same processor, memory share stretched only by others' DRAM traffic."""
        j = self.jobs[job]
        pid = point_id or self.points[job]
        p = self.proc[j.processor]
        t = j.truth_ms[pid] * self.mismatch[(job, pid)]
        gpu = p.kind == "gpu"
        m = self.cfg.gpu_mem_share if gpu else self.cfg.cpu_mem_share
        others = [o for o in self.jobs.values() if o.name != job]
        if gpu:
            share = self.corunner.gpu_share + sum(self._busy[o.name] for o in others if o.processor == j.processor)
        else:
            share = self._spill + sum(self._busy[o.name] for o in others if o.processor == j.processor)
        traffic = self.corunner.mem_traffic + JOB_TRAFFIC * sum(self._busy[o.name] for o in others)
        compute = t * (1.0 - m) * p.max_hz / self.effective_hz(j.processor) * (1.0 + min(1.0, share))
        return compute + t * m * (1.0 + self.cfg.interference_mem * min(1.0, traffic))

    def _frame_latency(self, mean_ms: float) -> float:
        lat = mean_ms * math.exp(self.rng.gauss(0.0, self.cfg.latency_sigma))
        return lat * self.cfg.burst_factor if self.rng.random() < self.cfg.burst_p else lat

    def _met_probability(self, mean_ms: float, target_ms: float) -> float:
        if target_ms <= 0:
            return 1.0
        c, s = self.cfg, self.cfg.latency_sigma
        fast = _phi(math.log(target_ms / mean_ms) / s)
        slow = _phi(math.log(target_ms / (mean_ms * c.burst_factor)) / s)
        return (1.0 - c.burst_p) * fast + c.burst_p * slow

    def _start_frame(self, job: str, t: float, mean: float, target_ms: float, out: FrameCount) -> None:
        lat = self._frame_latency(mean) if self.noise else mean
        self._inflight[job].append((t, t + lat / 1000.0))
        out.processed += 1
        out.latencies_ms.append(lat)
        if self.noise:
            out.met += target_ms <= 0 or lat <= target_ms
        else:
            out.met += self._met_probability(mean, target_ms)

    def _run_frames(self, job: str, dt: float, target_ms: float) -> FrameCount:
        """Frames of one step, one at a time per job. Depth-1 input queue: a frame arriving while one is in
        flight waits, replacing (dropping) any frame already waiting; dropped frames never meet a target."""
        j = self.jobs[job]
        mean = self.latency_ms(job)
        t0, t1 = self.time_s, self.time_s + dt
        out = FrameCount()
        fl = self._inflight[job]

        def start_waiting(before: float) -> None:
            if self._waiting[job] and (not fl or fl[-1][1] <= before):
                self._waiting[job] = False
                self._start_frame(job, fl[-1][1] if fl else t0, mean, target_ms, out)

        self._credit[job] += j.rate_hz * dt
        n = int(self._credit[job] + 1e-9)
        self._credit[job] -= n
        for k in range(n):
            a = t0 + dt * (k + 1) / (n + 1)
            start_waiting(a)
            if not fl or fl[-1][1] <= a:
                self._start_frame(job, a, mean, target_ms, out)
            else:
                self._waiting[job] = True     # (a frame already waiting is replaced: lost)
        start_waiting(t1)
        out.arrived = n
        busy = sum(max(0.0, min(e, t1) - max(s, t0)) for s, e in fl)
        self._inflight[job] = [(s, e) for s, e in fl if e > t1]
        self._busy[job] = min(1.0, busy / dt)
        self._window[job].extend(out.latencies_ms)
        self._served[job].append((dt, out.arrived, out.processed))
        return out

    def _utilisation(self, dt: float) -> None:
        """Busy share of every processor; the CPU co-runner fills cpu4, then cpu2, then spills onto the
        DNN's cluster (time-shared with it)."""
        c = self.corunner
        util = {n: self.cfg.os_load if p.kind == "cpu" else 0.0 for n, p in self.proc.items()}
        for j in self.jobs.values():
            util[j.processor] += self._busy[j.name]
        util["gpu"] = util.get("gpu", 0.0) + c.gpu_share
        demand = c.cpu_cores
        for name in ("cpu4", "cpu2", "cpu0"):
            p = self.proc[name]
            cap = p.cores * self.effective_hz(name) / p.max_hz * max(0.0, 1.0 - util[name])
            take = min(demand, cap)
            util[name] += take / (p.cores * self.effective_hz(name) / p.max_hz)
            demand -= take
            if name == "cpu0":
                self._spill = min(1.0, take / (p.cores * self.effective_hz(name) / p.max_hz))
        self.corunner_work[0] += (c.cpu_cores - demand) * dt
        self.corunner_work[1] += c.cpu_cores * dt
        self._util = {n: min(1.0, u) for n, u in util.items()}

    def _power_w(self) -> dict[str, float]:
        cfg, rails = self.cfg, {}
        cv = 0.0
        for n, p in self.proc.items():
            powered = p.kind != "gpu" or self._util[n] > 0
            dyn, leak = p.power_w(self.effective_hz(n), self._util[n], self.temp_c, powered)
            self._power[n] = dyn + leak
            cv += dyn + leak
        traffic = min(1.0, self.corunner.mem_traffic + JOB_TRAFFIC * sum(self._busy.values()))
        ddr = cfg.ddr_idle_w + cfg.ddr_w_per_traffic * traffic
        rails["VDD_CPU_GPU_CV"] = cv
        rails["VDD_SOC"] = cfg.soc_w
        rails["VDD_IN"] = (cv + cfg.soc_w + ddr + cfg.other_w) / cfg.regulator_eff
        return rails

    def _thermal(self, dt: float, p_w: float) -> None:
        c = self.cfg
        tau = c.r_c_per_w * c.c_j_per_c
        t_inf = self.ambient_c + p_w * c.r_c_per_w
        self.temp_c = t_inf + (self.temp_c - t_inf) * math.exp(-dt / tau)
        self.max_temp_c = max(self.max_temp_c, self.temp_c)
        if self.temp_c >= c.throttle_c:
            self.throttled = True
        elif self.throttled and self.temp_c < c.throttle_c - c.throttle_release_c:
            self.throttled = False
        self.throttled_s += dt if self.throttled else 0.0

    def step(self, dt: float, targets_ms: dict[str, float]) -> dict[str, FrameCount]:
        """Advance `dt` seconds with the current settings; frames per job judged against `targets_ms`."""
        frames = {name: self._run_frames(name, dt, targets_ms.get(name, 0.0)) for name in self.jobs}
        self._utilisation(dt)
        rails = self._power_w()
        self._rails = rails
        for k, v in rails.items():
            self.energy_j[k] += v * dt
        self.battery_j = max(0.0, self.battery_j - rails["VDD_IN"] / self.cfg.carrier_eff * dt)
        self._thermal(dt, rails["VDD_IN"])
        self.time_s += dt
        self._record(dt)
        return frames

    # ---- what a real board lets a controller read
    def _record(self, dt: float) -> None:
        """Monitor readings: load averaged over `monitor_period_s`, noise and quantisation added when the
        reading is taken; delivered `sensor_delay_s` later."""
        c, g = self.cfg, self.rng.gauss if self.noise else (lambda mu, sigma: mu)
        for n, u in list(self._util.items()) + [("rail:" + k, v) for k, v in self._rails.items()]:
            self._util_acc[n] = self._util_acc.get(n, 0.0) + u * dt
        self._acc_s += dt
        if self._acc_s < c.monitor_period_s - 1e-9:
            return
        avg = {n: v / self._acc_s for n, v in self._util_acc.items()}
        self._util_acc, self._acc_s = {}, 0.0
        cpu = []
        for n, p in self.proc.items():
            if p.kind == "cpu":
                cpu += [min(100.0, max(0.0, 100.0 * (avg[n] + g(0.0, c.load_noise)))) for _ in range(p.cores)]
        gpu = min(100.0, max(0.0, 100.0 * (avg.get("gpu", 0.0) + g(0.0, c.load_noise))))
        temps = {}
        for zone, (kind, c_per_w) in c.zone_c_per_w.items():
            local = sum(self._power[n] for n, p in self.proc.items() if p.kind == kind) * c_per_w
            t = self.temp_c + local + g(0.0, c.temp_noise_c)
            temps[zone] = round(t / c.temp_step_c) * c.temp_step_c
        rails = {k: avg["rail:" + k] * (1.0 + g(0.0, c.power_noise)) for k in self._rails}
        self._history.append(Sensors(self.time_s, tuple(cpu), gpu, temps, float(math.floor(self.battery_percent)),
                                     rails))
        while len(self._history) > 1 and self._history[1].time_s <= self.time_s - c.sensor_delay_s + 1e-9:
            self._history.popleft()

    def sensors(self) -> Sensors | None:
        """The newest reading at least `sensor_delay_s` old (None before the first one is due)."""
        h = self._history
        if not h or h[0].time_s > self.time_s - self.cfg.sensor_delay_s + 1e-9:
            return None
        return h[0]

    def status(self, job: str) -> Status | None:
        """WorkloadStatus from the last 20 measured frames (None until 3 frames were served)."""
        win = sorted(self._window[job])
        if len(win) < 3:
            return None
        served = self._served[job]
        span = sum(s[0] for s in served)
        p95 = win[max(0, math.ceil(0.95 * len(win)) - 1)]
        return Status(self.points[job], win[len(win) // 2] if len(win) % 2 else 0.5 * (win[len(win) // 2 - 1]
                      + win[len(win) // 2]), p95, sum(win) / len(win), sum(s[1] for s in served) / span,
                      sum(s[2] for s in served) / span)

    def clear_window(self, job: str) -> None:
        """A switch restarts the node's latency window (frames of the old point no longer count)."""
        self._window[job].clear()

    def utilisation(self, domain: str) -> float:
        """Busy share over the last step, as the kernel's governor sees it (exact, undelayed)."""
        return self._util[domain]

    @property
    def battery_percent(self) -> float:
        return 100.0 * self.battery_j / self.capacity_j if self.capacity_j > 0 else math.nan

    @property
    def rails_w(self) -> dict[str, float]:
        return dict(self._rails)
