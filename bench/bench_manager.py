#!/usr/bin/env python3
"""Resource-manager decision-time benchmark -> bench/results/manager.json and manager.md.

`ResourcePolicy.decide` for 4 workloads x 20 operating points x every DVFS level of a profile (AGX Orin:
29 levels per CPU cluster, 11 GPU levels; Xavier NX: 25 and 15), with a retarget every 10th call so
real searches are timed, not only held decisions. Each profile runs with 1 temperature zone and with a
flood of 10,000 distinct zones, the four configurations interleaved call by call so machine load hits
them alike. Reported per configuration: wall time (what the node waits) and thread CPU time (the work
itself, without preemption by other processes) p50 / p99 / max of `decide`, and the time of the
`update_platform` call that reduces the zones. Energy is not evaluated here (bench_evaluation.py judges
it on an independent world).
"""
from __future__ import annotations

import argparse
import json
import os
import platform as pyplatform
import random
import subprocess
import sys
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))

from dynofa_ros.manager import policy as current_policy  # noqa: E402
from dynofa_ros.operating_points import OperatingPointTable, table_from_dict  # noqa: E402
from dynofa_ros.engine.timing import percentile  # noqa: E402
from dynofa_ros.platform.profiles import load_profile  # noqa: E402

PROFILES = ("jetson_agx_orin", "jetson_xavier_nx")
ZONES = (1, 10_000)
BUDGET_P99_MS, BUDGET_MAX_MS = 1.0, 2.0
BASELINE_COMMIT = "a8a6ffd"   # the single-file policy.py before the split (issue 12's figures)


def baseline_policy(commit: str) -> types.ModuleType | None:
    """The policy module as it was at `commit`, read from git and loaded beside the current one (its only
    project import, operating_points, is unchanged), so both are timed in the same run; None without git."""
    try:
        src = subprocess.run(["git", "-C", str(REPO), "show", f"{commit}:dynofa_ros/manager/policy.py"],
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    mod = types.ModuleType(f"policy_{commit}")
    sys.modules[mod.__name__] = mod   # dataclasses look their module up
    exec(compile(src, f"{commit}:dynofa_ros/manager/policy.py", "exec"), mod.__dict__)
    return mod


def make_table(n: int, device: str, prefix: str) -> OperatingPointTable:
    pts = [dict(id=f"{prefix}{i}", architecture=f"{prefix} level {i}", graph_variant="eager", bn_stats=None,
                resolution=160 + 8 * i, accuracy=(70.0 + 0.45 * i) / 100.0, mflops=150.0 + 40 * i,
                params_m=4.0 + 0.5 * i, memory_mb=18.0 + 3 * i,
                latency_ms={device: {"median": 5.0 * 1.12 ** i, "p95": 5.5 * 1.12 ** i}}) for i in range(n)]
    return table_from_dict(dict(version=1, supernet=dict(family="ofa_mbv3", checkpoint="none.pt", num_classes=1000,
                                                         normalization=dict(mean=[0.5], std=[0.25]), in_channels=1),
                                devices=[device], points=pts))


class Config:
    """One profile x zone-count configuration: its policy, its inputs and its timings."""

    def __init__(self, profile: str, zones: int, seed: int, policy: types.ModuleType, version: str) -> None:
        self.profile, self.zones, self.version, self.m = profile, zones, version, policy
        prof = load_profile(profile)
        self.rng = random.Random(seed)
        self.pol = policy.ResourcePolicy(prof.domains, policy.PolicyConfig(throttle_c=prof.thermal.throttle_c))
        Target = policy.Target
        tables = {"cpu": make_table(20, "cpu", "c"), "cuda": make_table(20, "cuda", "g")}
        has_gpu = any(d.kind == "gpu" for d in prof.domains)
        for k in range(4):
            dev = "cuda" if has_gpu and k % 2 else "cpu"
            self.pol.add_workload(f"w{k}", tables[dev], dev, Target(max_latency_ms=20.0 + 10 * k, priority=k),
                                  rate_hz=10)
        self.flood = {f"flood_zone_{i}": 40.0 for i in range(zones - 1)}
        self.levels = {d.name: len(d.levels_hz) for d in prof.domains}
        self.wall, self.cpu, self.update = [], [], []
        self.now = 0.0

    def step(self, i: int) -> None:
        r = self.rng
        self.now += 0.1
        temps = {"CPU-therm": r.uniform(40, 90), **self.flood}
        state = self.m.PlatformState(cpu_percent=tuple(r.uniform(10, 90) for _ in range(4)),
                                     gpu_percent=r.uniform(0, 80), battery_percent=80.0, temperatures_c=temps)
        t0 = time.perf_counter()
        self.pol.update_platform(state)
        self.update.append((time.perf_counter() - t0) * 1000.0)
        if i % 10 == 0:   # a retarget now and then forces real searches, not just held decisions
            self.pol.set_target("w0", self.m.Target(max_latency_ms=r.uniform(8, 40), priority=0))
        c0, t0 = time.thread_time(), time.perf_counter()
        self.pol.decide(self.now)
        self.wall.append((time.perf_counter() - t0) * 1000.0)
        self.cpu.append((time.thread_time() - c0) * 1000.0)

    def summary(self) -> dict:
        def stats(xs: list[float]) -> dict:
            return {"p50_ms": percentile(xs, 50), "p99_ms": percentile(xs, 99), "max_ms": max(xs)}
        return {"policy": self.version, "profile": self.profile, "zones": self.zones, "workloads": 4,
                "points_per_workload": 20,
                "levels": self.levels, "calls": len(self.wall), "decide_wall": stats(self.wall),
                "decide_cpu": stats(self.cpu), "update_platform_wall": stats(self.update)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=5000, help="decisions per configuration")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "manager"))
    ap.add_argument("--no-baseline", action="store_true", help=f"do not time the policy of {BASELINE_COMMIT}")
    args = ap.parse_args()
    versions = [("current", current_policy)]
    old = None if args.no_baseline else baseline_policy(BASELINE_COMMIT)
    if old is not None:
        versions.append((BASELINE_COMMIT, old))
    combos = [(v, m, p, z) for v, m in versions for p in PROFILES for z in ZONES]
    configs = [Config(p, z, seed % (len(PROFILES) * len(ZONES)), m, v) for seed, (v, m, p, z) in enumerate(combos)]
    for i in range(args.calls):
        for c in configs:   # interleaved: load on the machine falls on every configuration alike
            c.step(i)
    rows = [c.summary() for c in configs]
    by = {(r["policy"], r["profile"], r["zones"]): r for r in rows}
    for r in rows:   # against the same profile with one zone, and against the baseline, same run
        r["cpu_p99_vs_one_zone"] = r["decide_cpu"]["p99_ms"] / by[("current", r["profile"], 1)]["decide_cpu"]["p99_ms"]
        b = by.get((BASELINE_COMMIT, r["profile"], r["zones"]))
        if b is not None:
            r["cpu_p99_vs_baseline"] = r["decide_cpu"]["p99_ms"] / b["decide_cpu"]["p99_ms"]
            r["wall_p99_vs_baseline"] = r["decide_wall"]["p99_ms"] / b["decide_wall"]["p99_ms"]
    result = {"machine": pyplatform.machine(), "python": pyplatform.python_version(), "cpus": os.cpu_count(),
              "load_avg_1min": os.getloadavg()[0], "budget": {"p99_ms": BUDGET_P99_MS, "max_ms": BUDGET_MAX_MS},
              "decision_time": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    out.with_suffix(".md").write_text(render_md(result, " ".join(sys.argv)))
    print(out.with_suffix(".md").read_text())


def render_md(r: dict, cmd: str) -> str:
    lines = ["# Resource manager: decision time", "",
             f"Command: `python {cmd}` on {r['machine']} ({r['cpus']} CPUs, 1-min load average "
             f"{r['load_avg_1min']:.1f} at the end: shared with other jobs), Python {r['python']}.", "",
             f"4 workloads x 20 points x every DVFS level, a retarget every 10th call; budget p99 <= "
             f"{r['budget']['p99_ms']:g} ms, max <= {r['budget']['max_ms']:g} ms. Wall = what the caller waits; "
             "CPU = thread CPU time (the work itself, without preemption by other processes). "
             f"`{BASELINE_COMMIT}` = the single-file policy before the split, timed in the same run, interleaved.", "",
             "| policy | profile | zones | calls | wall p50 / p99 / max ms | CPU p50 / p99 / max ms | "
             "CPU p99 vs 1 zone | CPU p99 vs baseline | update_platform p50 / max ms |",
             "|---|---|---|---|---|---|---|---|---|"]
    for t in r["decision_time"]:
        w, c, u = t["decide_wall"], t["decide_cpu"], t["update_platform_wall"]
        vs = f"x{t['cpu_p99_vs_baseline']:.2f}" if "cpu_p99_vs_baseline" in t else "-"
        lines.append(f"| {t['policy']} | {t['profile']} | {t['zones']} | {t['calls']} | {w['p50_ms']:.3f} / "
                     f"{w['p99_ms']:.3f} / {w['max_ms']:.3f} | {c['p50_ms']:.3f} / {c['p99_ms']:.3f} / {c['max_ms']:.3f} | "
                     f"x{t['cpu_p99_vs_one_zone']:.2f} | {vs} | {u['p50_ms']:.3f} / {u['max_ms']:.3f} |")
    levels = {t["profile"]: t["levels"] for t in r["decision_time"]}
    lines += [""] + [f"- {p}: " + ", ".join(f"{k} {v} levels" for k, v in lv.items()) for p, lv in levels.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
