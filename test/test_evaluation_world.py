"""The independent evaluation world: independence from the policy, physics sanity, determinism, and a
short closed-loop evaluation through bench/bench_world.py --quick."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from dynofa_ros.evaluation import alternatives as alt
from dynofa_ros.evaluation.harness import run
from dynofa_ros.evaluation.scenarios import WORKLOADS, scenarios
from dynofa_ros.evaluation.world import GPU, XAVIER_NX, CoRunner, Job, World

REPO = Path(__file__).resolve().parents[1]
EXACT = replace(XAVIER_NX, table_mismatch=0.0)


def _world(jobs: list[Job], **kw) -> World:
    return World(jobs, seed=0, noise=False, config=EXACT, **kw)


def test_policy_and_platform_never_import_the_world(tmp_path: Path) -> None:
    """Import every module under dynofa_ros/manager and dynofa_ros/platform in a fresh interpreter:
    none may pull in dynofa_ros.evaluation, and no source file there may name it."""
    code = ("import importlib, pkgutil, sys\n"
            "import dynofa_ros.manager, dynofa_ros.platform\n"
            "names = []\n"
            "for pkg in (dynofa_ros.manager, dynofa_ros.platform):\n"
            "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
            "        importlib.import_module(m.name); names.append(m.name)\n"
            "bad = sorted(k for k in sys.modules if k.startswith('dynofa_ros.evaluation'))\n"
            "print(len(names), bad)\n"
            "assert names and not bad, bad\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert int(out.stdout.split()[0]) >= 3
    for folder in ("manager", "platform"):
        for src in (REPO / "dynofa_ros" / folder).rglob("*.py"):
            assert "evaluation" not in src.read_text(encoding="utf-8"), f"{src} refers to the evaluation world"


def test_leakage_rises_with_temperature_and_voltage() -> None:
    cold = GPU.power_w(GPU.max_hz, 0.5, 40.0)[1]
    hot = GPU.power_w(GPU.max_hz, 0.5, 90.0)[1]
    assert hot > 3.0 * cold                          # doubling every 25 C: 2 ** 2 = 4x over 50 C
    low_v = GPU.power_w(510e6, 0.5, 60.0)[1]
    assert low_v < GPU.power_w(GPU.max_hz, 0.5, 60.0)[1]


def test_memory_bound_share_does_not_scale_with_clock() -> None:
    w = _world([Job("cam", "gpu", 10.0, {"a": 40.0})])
    fast = w.latency_ms("cam")
    w.set_frequency("gpu", GPU.max_hz / 2)
    slow = w.latency_ms("cam")
    half = w.effective_hz("gpu")
    compute_only = 40.0 * GPU.max_hz / half
    assert fast == pytest.approx(40.0)
    assert fast * 1.2 < slow < 0.9 * compute_only     # memory share (30 %) stays put
    assert slow == pytest.approx(40.0 * (0.7 * GPU.max_hz / half + 0.3))


def test_idle_power_and_race_to_idle() -> None:
    """A powered, idle GPU still leaks; a CPU cluster finishing fixed work fast and power-gating (C6)
    uses less than crawling at the lowest clock, where the voltage floor leaves nothing to save."""
    dyn, leak = GPU.power_w(GPU.max_hz, 0.0, 60.0)
    assert dyn > 0 and leak > 0
    assert GPU.power_w(GPU.max_hz, 0.0, 60.0, powered=False) == (0.0, 0.0)
    cpu = XAVIER_NX.processors[0]
    work = 0.05 * cpu.max_hz                         # cycles per second
    def energy(hz: float) -> float:
        busy = work / hz
        return sum(cpu.power_w(hz, busy, 50.0))
    assert energy(cpu.level(806.4e6)) < energy(cpu.levels_hz[1])
    assert energy(cpu.level(806.4e6)) < energy(cpu.max_hz)


def test_corunners_slow_the_dnn_and_reproduce_the_dynamic_ofa_figure() -> None:
    w = _world([Job("cam", "gpu", 10.0, {"a": 43.0})])
    assert w.latency_ms("cam") == pytest.approx(43.0)
    w.set_frequency("gpu", 803.25e6)
    alone_803 = w.latency_ms("cam")
    w.set_corunner(CoRunner(gpu_share=0.28, mem_traffic=0.3))
    assert w.latency_ms("cam") == pytest.approx(69.0, rel=0.05)      # Dynamic-OFA: 43 ms -> 69 ms
    assert w.latency_ms("cam") > alone_803 * 1.15
    cpu = _world([Job("net", "cpu0", 0.5, {"b": 500.0})])
    before = cpu.latency_ms("net")
    cpu.set_corunner(CoRunner(cpu_cores=5.0))        # more than the 4 free cores: spills onto cpu0
    cpu.step(0.1, {})
    assert cpu.latency_ms("net") > before * 1.2


def test_temperature_follows_power_and_throttles() -> None:
    cool = _world([Job("cam", "gpu", 30.0, {"a": 40.0})], ambient_c=25.0)
    t0 = cool.temp_c
    for _ in range(6000):                            # 10 minutes: several RC time constants
        cool.step(0.1, {})
    steady = 25.0 + cool.rails_w["VDD_IN"] * XAVIER_NX.r_c_per_w
    assert cool.temp_c > t0 + 5
    assert cool.temp_c == pytest.approx(steady, abs=1.0)
    hot = _world([Job("cam", "gpu", 30.0, {"a": 40.0})], ambient_c=80.0)
    for _ in range(3000):
        hot.step(0.1, {})
    assert hot.max_temp_c >= XAVIER_NX.throttle_c and hot.throttled_s > 0


def test_sensors_are_delayed_and_noisy() -> None:
    w = World([Job("cam", "gpu", 10.0, {"a": 40.0})], seed=3, noise=True)
    w.step(0.1, {})
    assert w.sensors() is None                       # nothing delivered yet
    readings = []
    for _ in range(100):
        w.step(0.1, {})
        s = w.sensors()
        if s is not None:
            assert w.time_s - s.time_s >= XAVIER_NX.sensor_delay_s - 1e-9
            readings.append(s.temperatures_c["GPU-therm"])
    assert readings and all(r * 2 == round(r * 2) for r in readings)    # 0.5 C steps
    st = w.status("cam")
    assert st is not None and st.latency_p95_ms >= st.latency_p50_ms > 0


def test_governor_rules() -> None:
    lv = tuple(range(100, 1001, 100))
    assert alt.governor_hz("schedutil", lv, 1000, 0.8) == 1000    # tipping point: 1.25 * 0.8 = 1
    assert alt.governor_hz("schedutil", lv, 1000, 0.4) == 500
    assert alt.governor_hz("schedutil", lv, 500, 0.8) == 500      # frequency-invariant: 0.4 of max
    assert alt.governor_hz("ondemand", lv, 300, 0.81) == 1000
    assert alt.governor_hz("ondemand", lv, 1000, 0.5) == 500      # 100 + 0.5 * 900 = 550 -> closest
    assert alt.governor_hz("powersave", lv, 1000, 1.0) == 100


def test_deterministic_per_seed() -> None:
    sc0 = scenarios(0, phase_s=5.0)[2]
    a = run(alt.Governor("schedutil"), sc0, 0)
    b = run(alt.Governor("schedutil"), sc0, 0)
    assert a == b
    c = run(alt.Governor("schedutil"), scenarios(1, phase_s=5.0)[2], 1)
    assert c["energy_j"] != a["energy_j"]
    p1 = run(alt.PolicyController(), sc0, 0)
    p2 = run(alt.PolicyController(), sc0, 0)
    assert p1["energy_j"] == p2["energy_j"] and p1["met_share"] == p2["met_share"]


def test_quick_closed_loop_evaluation(tmp_path: Path) -> None:
    out = tmp_path / "world_eval"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "bench_world.py"), "--quick", "--out", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(out.with_suffix(".json").read_text())
    assert r["modelled_world"] and r["independent_of_policy_model"]
    for sc, s in r["summary"].items():
        assert {"performance", "schedutil", "ondemand", "powersave", "dynamic-ofa reference loop",
                "best static point", "oracle (best fixed per phase)", "policy", "policy (model +20%)",
                "policy (model -20%)"} <= set(s)
        assert all(v["energy_j"] > 0 and 0 <= v["met_share"] <= 1 for v in s.values())
        assert s["powersave"]["energy_j"] < s["performance"]["energy_j"]
        assert s["oracle (best fixed per phase)"]["energy_j"] <= s["performance"]["energy_j"]
        assert s["policy"]["met_share"] > s["schedutil"]["met_share"]       # schedutil knows no deadline
        assert math.isfinite(s["policy"]["switches_per_min"])
    assert "independent of the policy's model" in out.with_suffix(".md").read_text()
