"""Platform monitors, discovered at run time from sysfs/procfs (paths differ between Jetson models and
JetPack releases, so nothing is hard-coded beyond the kernel's own layouts).

Every reader takes `root` (default "/") so tests can point it at a fake tree laid out like a Xavier NX or
an AGX Orin. A missing or unreadable file yields None / NaN and never raises: monitoring must survive a
board that lacks a sensor.
"""
from __future__ import annotations

import glob
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

GPU_DEVFREQ_NAMES = ("gv11b", "ga10b", "gp10b", "gpu")


def read_text(path: str | os.PathLike) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def read_int(path: str | os.PathLike) -> int | None:
    s = read_text(path)
    try:
        return int(s) if s is not None else None
    except ValueError:
        return None


def read_ints(path: str | os.PathLike) -> list[int]:
    s = read_text(path)
    if not s:
        return []
    try:
        return sorted(int(v) for v in s.split())
    except ValueError:
        return []


def _cpu_list(text: str | None) -> list[int]:
    """'0-3' or '0 1 2 3' or '0,2-3' -> [0, 1, 2, 3]."""
    out: list[int] = []
    for part in re.split(r"[\s,]+", text or ""):
        if "-" in part:
            a, b = part.split("-", 1)
            out += range(int(a), int(b) + 1)
        elif part.isdigit():
            out.append(int(part))
    return sorted(set(out))


def _natural(path: str) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path))


# ----------------------------------------------------------------------------------------------- CPU freq

@dataclass(frozen=True)
class CpuCluster:
    """One cpufreq policy (cluster). Frequencies in kHz, as the kernel writes them."""
    name: str                    # "cpu<first cpu>", the domain name used in FrequencyDecision
    cpus: tuple[int, ...]
    path: Path                   # .../cpuN/cpufreq of the first cpu
    available_khz: tuple[int, ...]          # scaling_available_frequencies; empty where the driver lists none
    governors: tuple[str, ...]
    limits_khz: tuple[int, int] | None = None   # (cpuinfo_min_freq, cpuinfo_max_freq) where both are readable


def discover_cpu_clusters(root: str | os.PathLike = "/") -> list[CpuCluster]:
    base = Path(root) / "sys/devices/system/cpu"
    seen: dict[tuple[int, ...], CpuCluster] = {}
    for d in sorted(glob.glob(str(base / "cpu[0-9]*")), key=_natural):
        cpu = int(Path(d).name[3:])
        cf = Path(d) / "cpufreq"
        if not cf.is_dir():
            continue
        cpus = tuple(_cpu_list(read_text(cf / "related_cpus")) or _cpu_list(read_text(cf / "affected_cpus"))
                     or [cpu])
        if cpus in seen:
            continue
        avail = tuple(v for v in read_ints(cf / "scaling_available_frequencies") if v > 0)
        lo, hi = read_int(cf / "cpuinfo_min_freq"), read_int(cf / "cpuinfo_max_freq")
        limits = (lo, hi) if lo is not None and hi is not None and 0 < lo <= hi else None
        govs = tuple((read_text(cf / "scaling_available_governors") or "").split())
        seen[cpus] = CpuCluster(f"cpu{min(cpus)}", cpus, cf, avail, govs, limits)
    return list(seen.values())


@dataclass(frozen=True)
class CpuFreqReading:
    cluster: str
    cur_khz: int | None
    min_khz: int | None
    max_khz: int | None
    governor: str | None


def read_cpu_freq(cluster: CpuCluster) -> CpuFreqReading:
    p = cluster.path
    return CpuFreqReading(cluster.name, read_int(p / "scaling_cur_freq"), read_int(p / "scaling_min_freq"),
                          read_int(p / "scaling_max_freq"), read_text(p / "scaling_governor"))


# ----------------------------------------------------------------------------------------------- GPU

@dataclass(frozen=True)
class GpuDevfreq:
    """The GPU's devfreq node (frequencies in Hz) and its load file (per-mille), if found."""
    name: str                     # devfreq entry name, e.g. 17000000.gv11b
    path: Path                    # /sys/class/devfreq/<name> (resolved)
    available_hz: tuple[int, ...]  # available_frequencies; empty where the driver lists none
    load_path: Path | None


def discover_gpu(root: str | os.PathLike = "/") -> GpuDevfreq | None:
    """Scan /sys/class/devfreq: the entry whose name or device of_node name is gv11b/ga10b/gp10b/gpu."""
    root = Path(root)
    for entry in sorted(glob.glob(str(root / "sys/class/devfreq/*")), key=_natural):
        name = Path(entry).name
        suffix = name.rsplit(".", 1)[-1].lower()
        of_name = (read_text(Path(entry) / "device/of_node/name") or "").lower()
        if not (suffix in GPU_DEVFREQ_NAMES or of_name in GPU_DEVFREQ_NAMES or name.startswith("gpu")):
            continue
        path = Path(os.path.realpath(entry)) if root == Path("/") else Path(entry)
        load = None
        for cand in (Path(entry) / "device/load", root / "sys/devices/gpu.0/load",
                     root / "sys/devices/platform/gpu.0/load", root / "sys/devices/platform/bus@0/gpu.0/load"):
            if cand.is_file():
                load = cand
                break
        # no fallback to the current min/max: after a crash they may be pinned values, not the GPU's range
        avail = tuple(v for v in read_ints(path / "available_frequencies") if v > 0)
        return GpuDevfreq(name, path, avail, load)
    return None


@dataclass(frozen=True)
class GpuReading:
    cur_hz: int | None
    min_hz: int | None
    max_hz: int | None
    governor: str | None
    load_percent: float           # NaN where unknown


def read_gpu(gpu: GpuDevfreq) -> GpuReading:
    load = read_int(gpu.load_path) if gpu.load_path else None
    return GpuReading(read_int(gpu.path / "cur_freq"), read_int(gpu.path / "min_freq"),
                      read_int(gpu.path / "max_freq"), read_text(gpu.path / "governor"),
                      load / 10.0 if load is not None else math.nan)


# ----------------------------------------------------------------------------------------------- thermal

def read_thermal_zones(root: str | os.PathLike = "/") -> dict[str, float]:
    """Zone type -> degrees C. Unreadable zones and the -256 C 'offline' sentinel are left out; duplicate
    types get a '#n' suffix so no reading is lost."""
    out: dict[str, float] = {}
    for z in sorted(glob.glob(str(Path(root) / "sys/class/thermal/thermal_zone*")), key=_natural):
        t = read_text(Path(z) / "type")
        v = read_int(Path(z) / "temp")
        if not t or v is None or v <= -100000:
            continue
        key, n = t, 1
        while key in out:
            n += 1
            key = f"{t}#{n}"
        out[key] = v / 1000.0
    return out


# ----------------------------------------------------------------------------------------------- battery

@dataclass(frozen=True)
class BatteryReading:
    name: str
    percent: float                # NaN where unknown
    voltage_v: float
    current_a: float              # negative while discharging (sensor_msgs/BatteryState convention)
    status: str                   # Charging / Discharging / Full / Not charging / Unknown


def read_battery(root: str | os.PathLike = "/") -> BatteryReading | None:
    for d in sorted(glob.glob(str(Path(root) / "sys/class/power_supply/*")), key=_natural):
        if (read_text(Path(d) / "type") or "").lower() != "battery":
            continue
        cap, uv, ua = (read_int(Path(d) / f) for f in ("capacity", "voltage_now", "current_now"))
        status = read_text(Path(d) / "status") or "Unknown"
        cur = ua / 1e6 if ua is not None else math.nan
        # the kernel reports current_now unsigned on many drivers: sign it from the status
        if math.isfinite(cur) and status == "Discharging" and cur > 0:
            cur = -cur
        return BatteryReading(Path(d).name, float(cap) if cap is not None else math.nan,
                              uv / 1e6 if uv is not None else math.nan, cur, status)
    return None


# ----------------------------------------------------------------------------------------------- power rails

@dataclass(frozen=True)
class RailReading:
    rail: str
    voltage_mv: float
    current_ma: float
    power_mw: float


def _skip_rail(label: str) -> bool:
    lab = label.strip().lower()
    return not lab or lab == "nc" or "sum of shunt" in lab


def read_power_rails(root: str | os.PathLike = "/") -> list[RailReading]:
    """INA3221 rails: hwmon (JetPack 5+: inX_label, inX_input mV, currX_input mA) or the JetPack 4 iio
    driver (rail_name_X, in_powerX_input mW, in_voltageX_input, in_currentX_input)."""
    out: list[RailReading] = []
    for dev in sorted(glob.glob(str(Path(root) / "sys/bus/i2c/devices/*")), key=_natural):
        if not (read_text(Path(dev) / "name") or "").lower().startswith("ina3221"):
            continue
        for hw in sorted(glob.glob(f"{dev}/hwmon/hwmon*"), key=_natural):
            for lab in sorted(glob.glob(f"{hw}/in*_label"), key=_natural):
                idx = Path(lab).name[2:-len("_label")]
                label = read_text(lab) or ""
                if _skip_rail(label):
                    continue
                mv, ma = read_int(f"{hw}/in{idx}_input"), read_int(f"{hw}/curr{idx}_input")
                if mv is None or ma is None:
                    continue
                out.append(RailReading(label, float(mv), float(ma), mv * ma / 1000.0))
        for iio in sorted(glob.glob(f"{dev}/iio:device*"), key=_natural):
            for rn in sorted(glob.glob(f"{iio}/rail_name_*"), key=_natural):
                idx = rn.rsplit("_", 1)[1]
                label = read_text(rn) or ""
                if _skip_rail(label):
                    continue
                mw = read_int(f"{iio}/in_power{idx}_input")
                mv, ma = read_int(f"{iio}/in_voltage{idx}_input"), read_int(f"{iio}/in_current{idx}_input")
                if mw is None:
                    continue
                out.append(RailReading(label, float(mv) if mv is not None else math.nan,
                                       float(ma) if ma is not None else math.nan, float(mw)))
    return out


# ----------------------------------------------------------------------------------------------- memory / load

def read_memory(root: str | os.PathLike = "/") -> tuple[int, int] | None:
    """(used, total) bytes from /proc/meminfo; used = total - available."""
    text = read_text(Path(root) / "proc/meminfo")
    if not text:
        return None
    kv = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit():
            kv[parts[0].rstrip(":")] = int(parts[1]) * 1024
    if "MemTotal" not in kv:
        return None
    avail = kv.get("MemAvailable", kv.get("MemFree", 0))
    return kv["MemTotal"] - avail, kv["MemTotal"]


class CpuLoad:
    """Per-core busy % between calls: psutil on the real system; /proc/stat under a fake root."""

    def __init__(self, root: str | os.PathLike = "/") -> None:
        self.root = Path(root)
        self._prev: list[tuple[int, int]] | None = None
        if self.root == Path("/"):
            import psutil
            self._psutil = psutil
            psutil.cpu_percent(percpu=True)  # prime: the first psutil call has no interval
        else:
            self._psutil = None
            self._prev = self._stat()

    def _stat(self) -> list[tuple[int, int]]:
        out = []
        for line in (read_text(self.root / "proc/stat") or "").splitlines():
            if re.match(r"cpu\d+ ", line):
                v = [int(x) for x in line.split()[1:]]
                idle = v[3] + (v[4] if len(v) > 4 else 0)
                out.append((sum(v), idle))
        return out

    def percent(self) -> list[float]:
        if self._psutil is not None:
            return [float(x) for x in self._psutil.cpu_percent(percpu=True)]
        cur = self._stat()
        prev, self._prev = self._prev or cur, cur
        out = []
        for (t1, i1), (t0, i0) in zip(cur, prev):
            dt = t1 - t0
            out.append(100.0 * (1.0 - (i1 - i0) / dt) if dt > 0 else 0.0)
        return out


# ----------------------------------------------------------------------------------------------- together

@dataclass
class PlatformSnapshot:
    cpu_percent: list[float]
    gpu_percent: float
    memory_used_bytes: int
    memory_total_bytes: int
    cpu_freq: list[CpuFreqReading]
    gpu: GpuReading | None
    temperatures_c: dict[str, float]
    battery: BatteryReading | None
    rails: list[RailReading]
    modelled: bool = False
    notes: list[str] = field(default_factory=list)


class SysfsPlatformMonitor:
    """Discovers once, reads on demand; what is missing is listed in `notes`, not raised."""

    def __init__(self, root: str | os.PathLike = "/") -> None:
        self.root = Path(root)
        self.clusters = discover_cpu_clusters(root)
        self.gpu = discover_gpu(root)
        self.load = CpuLoad(root)
        self.notes = []
        if not self.clusters:
            self.notes.append("no cpufreq (VM/container?): CPU frequency unknown")
        if self.gpu is None:
            self.notes.append("no GPU devfreq node")
        elif self.gpu.load_path is None:
            self.notes.append(f"GPU {self.gpu.name}: no load file")

    def read(self) -> PlatformSnapshot:
        mem = read_memory(self.root) or (0, 0)
        gpu = read_gpu(self.gpu) if self.gpu else None
        rails = read_power_rails(self.root)
        temps = read_thermal_zones(self.root)
        batt = read_battery(self.root)
        notes = list(self.notes)
        if not temps:
            notes.append("no thermal zones")
        if batt is None:
            notes.append("no battery in power_supply")
        if not rails:
            notes.append("no INA3221 power rails")
        return PlatformSnapshot(
            cpu_percent=self.load.percent(), gpu_percent=gpu.load_percent if gpu else math.nan,
            memory_used_bytes=mem[0], memory_total_bytes=mem[1],
            cpu_freq=[read_cpu_freq(c) for c in self.clusters], gpu=gpu, temperatures_c=temps, battery=batt,
            rails=rails, notes=notes)
