#!/usr/bin/env python3
"""Engine benchmark: switch cost, latency per kept sub-network and graph variant, memory per
materialised sub-network, and the reference-style switch (rebuild from the checkpoint) for comparison.

    python3 bench/bench_engine.py [--threads 1] [--device cpu]

Writes bench/results/engine.json and bench/results/engine.md.
"""
from __future__ import annotations

import argparse
import json
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from dynofa_ros.engine.bn_stats import load_bn_state, load_bn_stats  # noqa: E402
from dynofa_ros.engine.pool import SubnetPool  # noqa: E402
from dynofa_ros.engine.timing import resolve_device, summarize, time_call  # noqa: E402
from dynofa_ros.operating_points import load_table, resolve_bn_stats, resolve_checkpoint  # noqa: E402
from dynofa_ros.supernet.checkpoint import load_supernet  # noqa: E402

TABLES = ["config/operating_points/fmnist28_ofa_mbv3.yaml", "test/fixtures/legacy/fmnist_elastic_vit.yaml"]

REBUILD_SNIPPET = """
import sys, time, torch
t0 = time.perf_counter()
sys.path.insert(0, {root!r})
from dynofa_ros.supernet.checkpoint import load_supernet
from dynofa_ros.engine.bn_stats import load_bn_state, load_bn_stats
net, _ = load_supernet({ckpt!r})
m = net.extract({sid!r})
{bn_line}
with torch.no_grad():
    m(torch.zeros(1, net.in_channels, {res}, {res}))
print(time.perf_counter() - t0)
"""


def bench_table(table_rel: str, device: torch.device, switches: int, iters: int) -> dict:
    """Every row the table ships (eager, @frozen, @int8, ...) in the pool the perception node builds."""
    table_path = ROOT / table_rel
    table = load_table(table_path)
    ckpt = resolve_checkpoint(table_path, table)
    base = [p for p in table.points if p.graph_variant == "eager"]
    t0 = time.perf_counter()
    pool = SubnetPool.from_table(table_path, device=device)
    pool.set_materialised(pool.subnet_ids())   # every private form resident: the "every variant" budget
    pool.wait_ready()
    build_s = time.perf_counter() - t0
    supernet = pool.supernet
    ids = pool.subnet_ids()

    # switch cost between materialised sub-networks (the call the perception node makes between frames)
    rng = random.Random(0)
    costs = []
    for _ in range(switches):
        target = rng.choice(ids)
        t = time.perf_counter_ns()
        pool.switch(target)
        costs.append((time.perf_counter_ns() - t) / 1e6)
    switch = summarize(costs)

    # latency per point and variant, batch 1, through pool.infer (what a frame costs)
    latency, memory = {}, pool.memory_report()
    for key in ids:
        pool.switch(key)
        r = pool.input_resolution()
        x = torch.zeros(1, supernet.in_channels, r, r)
        latency[key] = summarize(time_call(lambda: pool.infer(x), device, iters=iters, warmup=10))

    # reference-style switch: reload the checkpoint from disk, extract, restore BN (in process) ...
    reload_ms = []
    for p in [base[0], base[-1]] * 3:
        t = time.perf_counter()
        net, _ = load_supernet(ckpt)
        m = net.extract(p.id)
        bn_path = resolve_bn_stats(table_path, p)
        if bn_path:
            load_bn_state(m, load_bn_stats(bn_path, p.id))
        m.to(device)
        with torch.no_grad():
            m(torch.zeros(1, net.in_channels, p.resolution, p.resolution, device=device))
        reload_ms.append((time.perf_counter() - t) * 1e3)
    # ... and in a new process, as the reference implementation does (interpreter + imports + load)
    process_ms = []
    for p in [base[0], base[-1]]:
        bn_path = resolve_bn_stats(table_path, p)
        bn_line = f"load_bn_state(m, load_bn_stats({str(bn_path)!r}))" if bn_path else ""
        code = REBUILD_SNIPPET.format(root=str(ROOT), ckpt=str(ckpt), sid=p.id, res=p.resolution, bn_line=bn_line)
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        process_ms.append((time.perf_counter() - t) * 1e3)

    return {"table": table_rel, "family": table.supernet.family, "checkpoint": str(ckpt.relative_to(ROOT)),
            "checkpoint_mb": round(ckpt.stat().st_size / 1e6, 3), "pool_build_s": round(build_s, 2),
            "switch_ms": switch,
            "latency_ms": latency,
            "memory": {k: {"private_mb": round(v["weight_bytes"] / 2**20, 3), "shared": v["shared"],
                           "materialise_ms": None if v["materialise_ms"] is None else round(v["materialise_ms"], 1)}
                       for k, v in memory.items()},
            "reference_reload_in_process_ms": summarize(reload_ms),
            "reference_rebuild_new_process_ms": summarize(process_ms),
            "accuracy": {p.id: p.accuracy for p in table.points}}   # each row's own (int8 measures its own)


def write_md(result: dict, path: Path) -> None:
    lines = [f"# Engine benchmark ({result['device']}, {result['threads']} thread(s), {result['when']})", "",
             f"Command: `{result['command']}`. Machine: {result['machine']}. Latency is batch 1 through "
             "`SubnetPool.infer` (median / p95 ms); private MB is what the form holds beyond the supernet's "
             "shared weights (the shared eager form: its BN statistics only).", ""]
    for t in result["tables"]:
        s = t["switch_ms"]
        lines += [f"## {t['family']} ({t['checkpoint']}, {t['checkpoint_mb']} MB)", "",
                  f"- switch between materialised sub-networks: p50 {s['median'] * 1e3:.1f} us, "
                  f"p99 {s['p99'] * 1e3:.1f} us (n={s['n']})",
                  f"- reference-style switch, reload checkpoint from disk + extract + BN, in process: "
                  f"median {t['reference_reload_in_process_ms']['median']:.1f} ms",
                  f"- reference-style switch, rebuild in a new process: median "
                  f"{t['reference_rebuild_new_process_ms']['median']:.0f} ms", "",
                  "| point | accuracy | latency median | p95 | private MB |", "|---|---|---|---|---|"]
        for key, lat in t["latency_ms"].items():
            acc = t["accuracy"][key]
            mem = t["memory"][key]
            lines.append(f"| `{key}` | {acc:.4f} | {lat['median']:.2f} | {lat['p95']:.2f} | "
                         f"{mem['private_mb']:.3f} |")
        lines.append("")
    path.write_text("\n".join(lines))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--switches", type=int, default=2000)
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "engine"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    result = {"command": "python3 bench/bench_engine.py " + " ".join(sys.argv[1:]),
              "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "device": str(device),
              "threads": args.threads, "machine": f"{platform.machine()} {platform.processor() or ''} "
                                                  f"torch {torch.__version__}",
              "tables": [bench_table(t, device, args.switches, args.iters)
                         for t in TABLES if (ROOT / t).exists()]}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    write_md(result, out.with_suffix(".md"))
    print(out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
