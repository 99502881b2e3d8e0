"""sysfs monitors and actuators against fake trees laid out like a Jetson Xavier NX (JetPack 5) and an AGX
Orin (JetPack 6), including unwritable paths, missing files, dry run, the allowlist and restore."""
from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from dynofa_ros.platform.actuators import SysfsFrequencyActuator, SysfsWriter
from dynofa_ros.platform.monitors import (SysfsPlatformMonitor, discover_cpu_clusters, discover_gpu, read_battery,
                                          read_memory, read_power_rails, read_thermal_zones)

NX_CPU_KHZ = [115200, 422400, 729600, 1036800, 1190400, 1497600, 1728000, 1907200]
ORIN_CPU_KHZ = [115200, 729600, 1113600, 1497600, 1881600, 2201600]
NX_GPU_HZ = [114750000, 306000000, 510000000, 803250000, 1109250000]
ORIN_GPU_HZ = [306000000, 510000000, 816000000, 1020000000, 1300500000]


def _w(path: Path, text: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{text}\n")


def _cpufreq(root: Path, cpus: int, cluster_size: int, khz: list[int], governors: str) -> None:
    base = root / "sys/devices/system/cpu"
    for first in range(0, cpus, cluster_size):
        members = list(range(first, first + cluster_size))
        pol = base / f"cpufreq/policy{first}"
        for f, v in {"related_cpus": " ".join(map(str, members)), "affected_cpus": " ".join(map(str, members)),
                     "scaling_available_frequencies": " ".join(map(str, khz)),
                     "scaling_available_governors": governors, "scaling_governor": "schedutil",
                     "scaling_cur_freq": khz[-1], "scaling_min_freq": khz[0], "scaling_max_freq": khz[-1],
                     "cpuinfo_min_freq": khz[0], "cpuinfo_max_freq": khz[-1],
                     "scaling_setspeed": "<unsupported>"}.items():
            _w(pol / f, v)
        for c in members:  # as in the kernel: cpuN/cpufreq -> ../cpufreq/policyM
            (base / f"cpu{c}").mkdir(parents=True, exist_ok=True)
            os.symlink(f"../cpufreq/policy{first}", base / f"cpu{c}/cpufreq")


def _devfreq(root: Path, device_dir: str, name: str, hz: list[int], load_at: str, load: int) -> None:
    dev = root / device_dir
    node = dev / "devfreq" / name
    for f, v in {"available_frequencies": " ".join(map(str, hz)), "min_freq": hz[0], "max_freq": hz[-1],
                 "cur_freq": hz[-1], "governor": "nvhost_podgov"}.items():
        _w(node / f, v)
    os.symlink(os.path.relpath(dev, node), node / "device")
    _w(root / load_at, load)
    (root / "sys/class/devfreq").mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.relpath(node, root / "sys/class/devfreq"), root / "sys/class/devfreq" / name)
    # a non-GPU devfreq node that must be ignored
    _w(root / "sys/devices/platform/15340000.vic/devfreq/15340000.vic/min_freq", 1)
    if not (root / "sys/class/devfreq/15340000.vic").exists():
        os.symlink("../../devices/platform/15340000.vic/devfreq/15340000.vic", root / "sys/class/devfreq/15340000.vic")


def _thermal(root: Path, zones: dict[str, int]) -> None:
    for i, (t, v) in enumerate(zones.items()):
        _w(root / f"sys/class/thermal/thermal_zone{i}/type", t)
        _w(root / f"sys/class/thermal/thermal_zone{i}/temp", v)


def _ina3221_hwmon(root: Path, dev: str, channels: list[tuple[str, int, int]]) -> None:
    d = root / "sys/bus/i2c/devices" / dev
    _w(d / "name", "ina3221")
    for i, (label, mv, ma) in enumerate(channels, start=1):
        _w(d / f"hwmon/hwmon3/in{i}_label", label)
        _w(d / f"hwmon/hwmon3/in{i}_input", mv)
        _w(d / f"hwmon/hwmon3/curr{i}_input", ma)


def _proc(root: Path) -> None:
    _w(root / "proc/meminfo", "MemTotal:        7999040 kB\nMemFree:          100000 kB\n"
                              "MemAvailable:    5999040 kB\n")
    _w(root / "proc/stat", "cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 50 0 50 400 0 0 0 0 0 0\n"
                           "cpu1 50 0 50 400 0 0 0 0 0 0\nintr 1\n")


def make_xavier_nx(root: Path) -> Path:
    """JetPack 5 Xavier NX: 3 clusters of 2 with userspace governor, gv11b, load at gpu.0, INA3221 hwmon."""
    _cpufreq(root, 6, 2, NX_CPU_KHZ, "interactive conservative ondemand userspace powersave performance schedutil")
    _devfreq(root, "sys/devices/17000000.gv11b", "17000000.gv11b", NX_GPU_HZ, "sys/devices/gpu.0/load", 734)
    _thermal(root, {"AO-therm": 40500, "CPU-therm": 44000, "GPU-therm": 42500, "PLL-therm": 41000,
                    "PMIC-Die": 100000, "Tboard_tegra": 39000, "Tdiode_tegra": 41750, "thermal-fan-est": 42000})
    _ina3221_hwmon(root, "7-0040", [("VDD_IN", 5000, 1500), ("VDD_CPU_GPU_CV", 5000, 600),
                                    ("VDD_SOC", 5000, 300), ("sum of shunt voltages", 15000, 2400)])
    _proc(root)
    return root


def make_agx_orin(root: Path) -> Path:
    """JetPack 6 AGX Orin: 3 clusters of 4 without userspace governor, bus@0/17000000.gpu with its own load,
    a battery (robot), INA3221 channels including NC."""
    _cpufreq(root, 12, 4, ORIN_CPU_KHZ, "ondemand performance schedutil")
    _devfreq(root, "sys/devices/platform/bus@0/17000000.gpu", "17000000.gpu", ORIN_GPU_HZ,
             "sys/devices/platform/bus@0/17000000.gpu/load", 250)
    _thermal(root, {"cpu-thermal": 51000, "gpu-thermal": 49000, "cv0-thermal": -256000, "soc0-thermal": 48000,
                    "tj-thermal": 52000})
    _ina3221_hwmon(root, "1-0040", [("VDD_GPU_SOC", 5000, 2000), ("VDD_CPU_CV", 5000, 1000),
                                    ("VIN_SYS_5V0", 5000, 900)])
    _ina3221_hwmon(root, "1-0041", [("NC", 0, 0), ("VDDQ_VDD2_1V8AO", 5000, 200), ("NC", 0, 0)])
    bat = root / "sys/class/power_supply/BAT0"
    for f, v in {"type": "Battery", "status": "Discharging", "capacity": 63, "voltage_now": 15200000,
                 "current_now": 1250000}.items():
        _w(bat / f, v)
    _w(root / "sys/class/power_supply/AC/type", "Mains")
    _proc(root)
    return root


@pytest.fixture
def nx(tmp_path):
    return make_xavier_nx(tmp_path / "nx")


@pytest.fixture
def orin(tmp_path):
    return make_agx_orin(tmp_path / "orin")


def test_xavier_nx_monitors(nx):
    clusters = discover_cpu_clusters(nx)
    assert [c.name for c in clusters] == ["cpu0", "cpu2", "cpu4"]
    assert clusters[1].cpus == (2, 3) and clusters[0].available_khz[-1] == 1907200
    gpu = discover_gpu(nx)
    assert gpu.name == "17000000.gv11b" and gpu.available_hz[-1] == 1109250000
    snap = SysfsPlatformMonitor(nx).read()
    assert snap.gpu_percent == pytest.approx(73.4)
    assert snap.temperatures_c["CPU-therm"] == 44.0 and snap.temperatures_c["PMIC-Die"] == 100.0
    assert [r.rail for r in snap.rails] == ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"]
    assert snap.rails[0].power_mw == pytest.approx(7500.0)
    assert snap.battery is None and "no battery in power_supply" in snap.notes
    assert snap.memory_total_bytes == 7999040 * 1024 and snap.memory_used_bytes == 2000000 * 1024
    assert [f.cur_khz for f in snap.cpu_freq] == [1907200] * 3


def test_agx_orin_monitors(orin):
    assert [c.name for c in discover_cpu_clusters(orin)] == ["cpu0", "cpu4", "cpu8"]
    gpu = discover_gpu(orin)
    assert gpu.name == "17000000.gpu" and gpu.load_path.name == "load"
    zones = read_thermal_zones(orin)
    assert "cv0-thermal" not in zones and zones["tj-thermal"] == 52.0  # -256 C = offline sensor
    rails = read_power_rails(orin)
    assert [r.rail for r in rails] == ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"]
    b = read_battery(orin)
    assert b.percent == 63 and b.voltage_v == pytest.approx(15.2) and b.current_a == pytest.approx(-1.25)
    snap = SysfsPlatformMonitor(orin).read()
    assert snap.gpu_percent == pytest.approx(25.0) and len(snap.cpu_percent) == 2


def test_missing_and_unreadable_files_do_not_raise(nx):
    (nx / "sys/devices/gpu.0/load").unlink()
    (nx / "sys/class/thermal/thermal_zone1/temp").unlink()
    (nx / "sys/class/thermal/thermal_zone2/temp").unlink()
    (nx / "sys/class/thermal/thermal_zone2/temp").mkdir()  # unreadable: a directory
    (nx / "proc/meminfo").unlink()
    mon = SysfsPlatformMonitor(nx)
    snap = mon.read()
    assert math.isnan(snap.gpu_percent) and any("no load file" in n for n in snap.notes)
    assert "CPU-therm" not in snap.temperatures_c and "GPU-therm" not in snap.temperatures_c
    assert snap.memory_total_bytes == 0
    assert read_memory(nx / "nowhere") is None
    empty = SysfsPlatformMonitor(nx / "nowhere")
    assert not empty.clusters and empty.gpu is None and empty.read().rails == []


def _read(p: Path) -> str:
    return p.read_text().strip()


def test_cpu_userspace_setspeed_and_restore_on_nx(nx):
    act = SysfsFrequencyActuator(nx)
    assert sorted(act.domains) == ["cpu0", "cpu2", "cpu4", "gpu"]
    res = act.apply([("cpu0", 1_000_000_000), ("cpu2", 115_200_000)])
    assert all(r.ok for r in res), res
    pol0, pol2 = nx / "sys/devices/system/cpu/cpufreq/policy0", nx / "sys/devices/system/cpu/cpufreq/policy2"
    assert _read(pol0 / "scaling_governor") == "userspace"
    assert _read(pol0 / "scaling_setspeed") == "1036800"  # lowest level >= 1.0 GHz
    assert _read(pol2 / "scaling_setspeed") == "115200"
    # one write target per cluster: cpu1 is the same policy, nothing else was written
    assert {Path(r.path).parent.parent.name for r in res} == {"cpu0", "cpu2"}
    act.restore()
    assert _read(pol0 / "scaling_governor") == "schedutil" and _read(pol2 / "scaling_governor") == "schedutil"


def test_cpu_min_max_order_and_gpu_order_on_orin(orin):
    act = SysfsFrequencyActuator(orin)
    pol4 = orin / "sys/devices/system/cpu/cpufreq/policy4"
    res = act.apply([("cpu4", 700_000_000)])   # lowering: min first, then max
    assert [Path(r.path).name for r in res] == ["scaling_min_freq", "scaling_max_freq"]
    assert _read(pol4 / "scaling_min_freq") == _read(pol4 / "scaling_max_freq") == "729600"
    res = act.apply([("cpu4", 2_000_000_000)])  # raising above the current max: max first
    assert [Path(r.path).name for r in res] == ["scaling_max_freq", "scaling_min_freq"]
    gpu = orin / "sys/devices/platform/bus@0/17000000.gpu/devfreq/17000000.gpu"
    res = act.apply([("gpu", 500_000_000)])
    assert [Path(r.path).name for r in res] == ["min_freq", "max_freq"]
    assert _read(gpu / "min_freq") == _read(gpu / "max_freq") == "510000000"
    res = act.apply([("gpu", 1_000_000_000)])
    assert [Path(r.path).name for r in res] == ["max_freq", "min_freq"]
    restored = act.restore()
    assert all(r.ok for r in restored)
    assert _read(gpu / "min_freq") == "306000000" and _read(gpu / "max_freq") == "1300500000"
    assert _read(pol4 / "scaling_min_freq") == "115200" and _read(pol4 / "scaling_max_freq") == "2201600"
    res = act.apply([("cpu99", 1)])
    assert not res[0].ok and "no such DVFS domain" in res[0].error


def test_dry_run_writes_nothing(orin):
    act = SysfsFrequencyActuator(orin, dry_run=True)
    res = act.apply([("cpu0", 115_200_000), ("gpu", 306_000_000)])
    assert all(r.ok and r.dry_run for r in res)
    assert _read(orin / "sys/devices/system/cpu/cpufreq/policy0/scaling_max_freq") == "2201600"


def test_permission_denied_and_missing_files_are_reported_not_fatal(nx):
    pol0 = nx / "sys/devices/system/cpu/cpufreq/policy0"
    # tests run as root, so chmod 000 would not stop us: a path that cannot be opened for writing stands in
    (pol0 / "scaling_setspeed").unlink()
    (pol0 / "scaling_setspeed").mkdir()
    act = SysfsFrequencyActuator(nx)
    (nx / "sys/devices/17000000.gv11b/devfreq/17000000.gv11b/max_freq").unlink()   # vanished file
    res = act.apply([("cpu0", 1_000_000_000), ("cpu2", 729_600_000), ("gpu", 306_000_000)])
    failed = {Path(r.path).name: r.error for r in res if not r.ok}
    assert "scaling_setspeed" in failed and "IsADirectoryError" in failed["scaling_setspeed"]
    assert "max_freq" in failed
    assert _read(nx / "sys/devices/system/cpu/cpufreq/policy2/scaling_setspeed") == "729600"  # others applied
    act.restore()  # also reports, does not raise


def test_allowlist_refuses_other_paths(tmp_path):
    target = tmp_path / "important"
    target.write_text("keep\n")
    w = SysfsWriter([tmp_path / "allowed"])
    r = w.write(target, "overwritten")
    assert not r.ok and "allowlist" in r.error
    assert target.read_text() == "keep\n"
    w2 = SysfsWriter([tmp_path / "allowed"])
    assert not w2.write(tmp_path / "allowed", 5).ok  # never creates a file that is not there
    (tmp_path / "allowed").write_text("1\n")
    assert w2.write(tmp_path / "allowed", 5).ok and w2.original(tmp_path / "allowed") == "1"
    assert (tmp_path / "allowed").read_text() == "5"


def test_no_frequency_list_clamps_to_cpuinfo_or_refuses(nx):
    pol2, pol4 = nx / "sys/devices/system/cpu/cpufreq/policy2", nx / "sys/devices/system/cpu/cpufreq/policy4"
    (pol2 / "scaling_available_frequencies").unlink()
    (pol4 / "scaling_available_frequencies").unlink()
    (pol4 / "cpuinfo_min_freq").write_text("garbage\n")
    (nx / "sys/devices/17000000.gv11b/devfreq/17000000.gv11b/available_frequencies").unlink()
    act = SysfsFrequencyActuator(nx)
    assert act.domains["cpu2"].cluster.limits_khz == (115200, 1907200)
    assert act.apply([("cpu2", 9_000_000_000)])[-1].value == "1907200"
    assert act.apply([("cpu2", 1)])[-1].value == "115200"
    assert act.apply([("cpu2", 800_000_000)])[-1].value == "800000"      # inside the limits: as asked
    for name in ("cpu4", "gpu"):
        (r,) = act.apply([(name, 500_000_000)])
        assert not r.ok and not r.tried and "refused" in r.error
    assert _read(pol4 / "scaling_setspeed") == "<unsupported>"


def test_restore_is_per_file_and_reports_unusable_originals(nx):
    gpu = nx / "sys/devices/17000000.gv11b/devfreq/17000000.gv11b"
    (gpu / "min_freq").write_text("n/a\n")
    act = SysfsFrequencyActuator(nx)
    act.apply([("gpu", 306_000_000), ("cpu0", 1_000_000_000)])
    res = act.restore()
    bad = [r for r in res if not r.ok]
    assert len(bad) == 1 and bad[0].path.endswith("min_freq") and "'n/a' is not an integer" in bad[0].error
    assert _read(gpu / "max_freq") == "1109250000"
    assert _read(nx / "sys/devices/system/cpu/cpufreq/policy0/scaling_governor") == "schedutil"


def test_failed_write_names_the_errno(tmp_path):
    target = tmp_path / "attr"
    target.mkdir()
    r = SysfsWriter([target]).write(target, 1)
    assert not r.ok and r.error.startswith("EISDIR") and str(target) in str(r)
