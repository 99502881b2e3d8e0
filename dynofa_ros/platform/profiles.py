"""Device profiles (config/devices/<name>.yaml): DVFS domains and the power / thermal / battery model.

The numbers are modelled (each file lists its sources); they feed the simulated platform, the policy's
energy estimates and the benchmarks, and are labelled as modelled wherever they surface.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from dynofa_ros.dvfs_model import FrequencyDomain

PROFILE_NAMES = ("jetson_xavier_nx", "jetson_orin_nano", "jetson_agx_orin", "generic_x86")


@dataclass(frozen=True)
class ThermalModel:
    zones: tuple[str, ...]
    ambient_c: float
    throttle_c: float
    resistance_c_per_w: float
    capacity_j_per_c: float


@dataclass(frozen=True)
class BatteryModel:
    capacity_wh: float
    voltage_v: float


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    description: str
    domains: tuple[FrequencyDomain, ...]
    board_idle_w: float
    thermal: ThermalModel
    battery: BatteryModel
    sources: tuple[str, ...]
    modelled: bool = True

    def domain(self, name: str) -> FrequencyDomain:
        for d in self.domains:
            if d.name == name:
                return d
        raise KeyError(f"profile {self.name!r} has no domain {name!r}; it has {[d.name for d in self.domains]}")


def _search_dirs() -> list[Path]:
    """Source tree first, then every `share/dynofa_ros/config/devices` on AMENT_PREFIX_PATH."""
    dirs = [Path(__file__).resolve().parents[2] / "config" / "devices"]
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            dirs.append(Path(prefix) / "share" / "dynofa_ros" / "config" / "devices")
    return dirs


def find_profile(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or os.sep in name_or_path:
        if not p.is_file():
            raise FileNotFoundError(f"device profile file {p} does not exist")
        return p
    for d in _search_dirs():
        if (d / f"{name_or_path}.yaml").is_file():
            return d / f"{name_or_path}.yaml"
    raise FileNotFoundError(f"no device profile {name_or_path!r}; known: {list(PROFILE_NAMES)} "
                            f"(searched {[str(d) for d in _search_dirs()]})")


def load_profile(name_or_path: str) -> DeviceProfile:
    path = find_profile(name_or_path)
    with open(path, encoding="utf-8") as f:
        try:
            d = yaml.safe_load(f)
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: not valid YAML: {' '.join(str(exc).split())[:200]}") from None
    try:
        domains = []
        for dd in d["domains"]:
            if "levels_khz" in dd:
                levels = tuple(sorted(int(k) * 1000 for k in dd["levels_khz"]))
            else:
                levels = tuple(sorted(int(h) for h in dd["levels_hz"]))
            if not levels or levels[0] <= 0:
                raise ValueError(f"domain {dd.get('name')!r} needs at least one level, all > 0 Hz")
            domains.append(FrequencyDomain(
                name=str(dd["name"]), kind=str(dd["kind"]), levels_hz=levels,
                compute_bound=float(dd.get("compute_bound", 0.85)), static_w=float(dd["static_w"]),
                dynamic_w=float(dd["dynamic_w"]), exponent=float(dd.get("exponent", 2.4)),
                cores=int(dd.get("cores", 1))))
        t, b = d["thermal"], d["battery"]
        return DeviceProfile(
            name=str(d["name"]), description=str(d.get("description", "")), domains=tuple(domains),
            board_idle_w=float(d["board_idle_w"]),
            thermal=ThermalModel(tuple(t["zones"]), float(t["ambient_c"]), float(t["throttle_c"]),
                                 float(t["resistance_c_per_w"]), float(t["capacity_j_per_c"])),
            battery=BatteryModel(float(b["capacity_wh"]), float(b["voltage_v"])),
            sources=tuple(d.get("sources", ())), modelled=bool(d.get("modelled", True)))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: malformed device profile: {exc!r}") from exc
