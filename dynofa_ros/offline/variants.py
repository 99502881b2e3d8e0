"""Offline step: a table's eager points -> measured graph-variant points (``<id>@frozen``, ``<id>@int8``).

Each variant is a separate operating point because it changes latency, memory and (int8) accuracy, so each
is measured like any other point: top-1 on the whole evaluation set, latency at batch 1 on one thread in
rounds interleaved with the eager form (the eager rows get that same-session figure too, so the table's
rows compare like with like on a shared machine), weight memory. int8 is kept only when it loses at most
``int8_tolerance`` top-1 against eager on the same images; frozen agrees with eager to 1e-5 and is kept
always. Then every row that another row of its form beats on the new figures is dropped, so the table
stays a front in each form it ships. CPU only (int8 kernels are CPU kernels). Reuses the profiler's
clock and thread rules.

    python3 -m dynofa_ros.offline.variants config/operating_points/fmnist28_ofa_mbv3.yaml --out T.yaml
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from dynofa_ros.engine.bn_stats import load_bn_state, load_bn_stats
from dynofa_ros.engine.graph_variants import FrozenGraph, make_variant, weight_bytes
from dynofa_ros.engine.timing import percentile, time_call
from dynofa_ros.offline.pipeline import EvalData
from dynofa_ros.offline.profiler import module_memory_mb, num_threads
from dynofa_ros.operating_points import (LatencyStats, OperatingPoint, OperatingPointTable, dominated_rows, load_table,
                                         resolve_bn_stats, resolve_checkpoint, save_table, split_point_key)

BUILT_VARIANTS = ("frozen", "int8")
DEFAULT_TOLERANCE = 0.005      # top-1 share (0.5 percentage points)
DEFAULT_CALIB_IMAGES = 1024
# frozen is exact to ~6e-6 here (the tests hold it to 1e-5); this only catches a broken trace (O(1) off)
# without dropping a 2.5x speed-up over float summation order on another CPU's kernels
FROZEN_ATOL = 1e-4


@dataclass(frozen=True)
class VariantResult:
    """One variant of one eager point, measured; ``kept`` False says why in ``reason``."""
    base_id: str
    variant: str
    accuracy: float
    eager_accuracy: float
    latency: LatencyStats
    eager_latency: LatencyStats
    memory_mb: float
    kept: bool
    reason: str = ""
    max_abs_diff: float = 0.0      # largest |logit - eager logit| over the evaluation images


def fmnist_data(calib_images: int = DEFAULT_CALIB_IMAGES, seed: int = 0, batch_size: int = 256) -> EvalData:
    """Fixed seeded subset of the Fashion-MNIST TRAIN images for calibration, the 10k TEST set to score."""
    from dynofa_ros.datasets import load_fmnist, preprocess

    train, _ = load_fmnist("train")
    test, labels = load_fmnist("test")
    idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:calib_images]
    return EvalData(calib_images=train[idx], eval_images=test, eval_labels=labels, preprocess=preprocess,
                    batch_size=batch_size)


@torch.inference_mode()
def eval_logits(module: nn.Module, data: EvalData, resolution: int) -> torch.Tensor:
    """Logits of every evaluation image at ``resolution``."""
    return torch.cat([module(x) for x in data.batches("eval", resolution)])


def top1(module: nn.Module, data: EvalData, resolution: int) -> float:
    """Top-1 share on the evaluation images at ``resolution``."""
    return accuracy(eval_logits(module, data, resolution), data.eval_labels)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return int((logits.argmax(1) == labels).sum()) / len(labels)


def interleaved_times(modules: Mapping[str, Callable[[torch.Tensor], object]], example: torch.Tensor, *,
                      rounds: int = 10, runs: int = 20, warmup: int = 10, threads: int = 1,
                      clock: str = "cpu") -> dict[str, list[float]]:
    """Per-call ms of each module, in ``rounds`` alternating blocks of ``runs`` calls, so load that comes
    and goes on a shared machine falls on every form alike (clock "cpu": thread CPU time, one thread)."""
    if clock == "cpu" and threads != 1:
        raise ValueError("clock='cpu' measures one CPU thread: use it with threads=1")
    times: dict[str, list[float]] = {k: [] for k in modules}
    with num_threads(threads), torch.inference_mode():
        for fn in modules.values():
            time_call(lambda: fn(example), example.device, iters=1, warmup=warmup, clock=clock)
        for _ in range(rounds):
            for name, fn in modules.items():
                times[name] += time_call(lambda: fn(example), example.device, iters=runs, warmup=1, clock=clock)
    return times


def latency_stats(times: Sequence[float]) -> LatencyStats:
    return LatencyStats(round(statistics.median(times), 4), round(percentile(list(times), 95), 4))


def variant_memory_mb(module: nn.Module) -> float:
    """Weight memory: a frozen graph's own constant bytes, else the profiler's parameters+buffers."""
    return weight_bytes(module) / 2**20 if isinstance(module, FrozenGraph) else module_memory_mb(module)


def materialise(supernet, table_path: str | os.PathLike, point: OperatingPoint) -> nn.Module:
    """The eager module of a point's sub-network (id without its ``@variant``): extracted, its stored BN
    statistics restored (as the pool does)."""
    subnet_id = split_point_key(point.id)[0]
    module = supernet.extract(subnet_id)
    bn_path = resolve_bn_stats(table_path, point)
    if bn_path is not None:
        load_bn_state(module, load_bn_stats(bn_path, subnet_id))
    return module.eval()


def build_variants(eager: nn.Module, variants: Sequence[str], data: EvalData, resolution: int,
                   in_channels: int) -> dict[str, nn.Module]:
    """Each requested variant of ``eager``; int8 calibrated on the calibration images at ``resolution``."""
    example = torch.zeros(1, in_channels, resolution, resolution)
    calib = data.batches("calib", resolution)
    return {v: make_variant(eager, v, example=example, calibration=calib if v == "int8" else None)
            for v in variants}


def verdict(variant: str, loss: float, diff: float, tolerance: float, frozen_atol: float) -> str:
    """Why a variant is dropped ("" = kept): int8 over the top-1 tolerance, frozen not matching eager."""
    if variant == "int8" and loss > tolerance:
        return f"top-1 loss {100 * loss:.2f} pp > tolerance {100 * tolerance:.2f} pp"
    if variant == "frozen" and not diff <= frozen_atol:
        return f"max |logit - eager| {diff:.2e} > {frozen_atol:.0e} (a broken trace)"
    return ""


def measure_point(eager: nn.Module, point: OperatingPoint, variants: Sequence[str], data: EvalData, *,
                  in_channels: int, tolerance: float, threads: int, clock: str, rounds: int, runs: int,
                  frozen_atol: float = FROZEN_ATOL) -> tuple[LatencyStats, list[VariantResult]]:
    """Accuracy, interleaved latency and memory of the point's variants; the eager latency alongside."""
    built = build_variants(eager, variants, data, point.resolution, in_channels)
    example = data.batches("eval", point.resolution)[0][:1].contiguous()
    times = interleaved_times({"eager": eager, **built}, example, rounds=rounds, runs=runs, threads=threads,
                              clock=clock)
    ref = eval_logits(eager, data, point.resolution)
    eager_acc, eager_lat = accuracy(ref, data.eval_labels), latency_stats(times["eager"])
    out = []
    for v, module in built.items():
        logits = eval_logits(module, data, point.resolution)
        acc, diff = accuracy(logits, data.eval_labels), (logits - ref).abs().max().item()
        reason = verdict(v, eager_acc - acc, diff, tolerance, frozen_atol)
        out.append(VariantResult(point.id, v, acc, eager_acc, latency_stats(times[v]), eager_lat,
                                 variant_memory_mb(module), not reason, reason, diff))
    return eager_lat, out


def variant_point(base: OperatingPoint, r: VariantResult, dev_key: str) -> OperatingPoint:
    """Table row of a kept variant: the base row's architecture/BN/FLOPs, its own measured figures."""
    return replace(base, id=f"{base.id}@{r.variant}", graph_variant=r.variant, accuracy=round(r.accuracy, 5),
                   memory_mb=round(r.memory_mb, 3), latency_ms={dev_key: r.latency})


def _absolute(path: str | None, src_dir: Path) -> str | None:
    """A path relative to the input table's folder, made absolute (the output table is elsewhere)."""
    return path if path is None or Path(path).is_absolute() else str((src_dir / path).resolve())


def _rebased_table(table: OperatingPointTable, table_path: Path, out_path: Path) -> OperatingPointTable:
    """Keep BN and checkpoint paths valid when the output table lives in another folder."""
    src = table_path.resolve().parent
    if src == out_path.resolve().parent:
        return table
    points = tuple(replace(p, bn_stats=_absolute(p.bn_stats, src)) for p in table.points)
    ckpt = str(resolve_checkpoint(table_path, table).resolve())
    return replace(table, points=points, supernet=replace(table.supernet, checkpoint=ckpt))


def _threads_for(dev_key: str, threads: int | None) -> int:
    """Thread count: explicit, else the key's ``@<n>t`` qualifier, else 1."""
    if threads is not None:
        return threads
    m = re.search(r"@(\d+)t(@|$)", dev_key)
    return int(m.group(1)) if m else 1


def _check_devices(table: OperatingPointTable, dev_key: str) -> None:
    if not dev_key.startswith("cpu"):
        raise ValueError(f"device key {dev_key!r}: variants are measured on the CPU only")
    if tuple(table.devices) != (dev_key,):
        raise ValueError(f"table lists devices {list(table.devices)}; variant rows can be measured here for "
                         f"{dev_key!r} only: give a table measured on that key alone")


def add_variant_points(table_path: str | os.PathLike, out_path: str | os.PathLike,
                       variants: Sequence[str] = BUILT_VARIANTS, int8_tolerance: float = DEFAULT_TOLERANCE, *,
                       data: EvalData | None = None, calib_images: int = DEFAULT_CALIB_IMAGES, seed: int = 0,
                       dev_key: str | None = None, threads: int | None = None, clock: str | None = None,
                       rounds: int = 10, runs: int = 20, remeasure_eager: bool = True,
                       frozen_atol: float = FROZEN_ATOL,
                       checkpoint: str | os.PathLike | None = None, drop_dominated: bool = True,
                       on_result: Callable[[VariantResult], None] | None = None
                       ) -> tuple[OperatingPointTable, list[VariantResult]]:
    """Measure ``variants`` of every eager point of the table at ``table_path`` and write the table with
    the kept ones (each after its eager row) to ``out_path``. Existing rows of those ids are replaced.
    ``remeasure_eager`` also gives the eager rows the latency measured interleaved with their variants;
    ``drop_dominated`` then drops every row another row of its form beats (`dominated_rows`).
    Returns (written table, every result incl. rejected int8)."""
    from dynofa_ros.supernet.checkpoint import load_table_supernet

    table_path, out_path = Path(table_path), Path(out_path)
    table = load_table(table_path)
    dev_key = dev_key or table.device_for("cpu")
    _check_devices(table, dev_key)
    n_threads = _threads_for(dev_key, threads)
    clock = clock or ("cpu" if n_threads == 1 else "wall")
    supernet, _ = load_table_supernet(checkpoint or resolve_checkpoint(table_path, table), table.supernet.family)
    data = fmnist_data(calib_images, seed) if data is None else data
    new_ids = {f"{p.id}@{v}" for p in table.points for v in variants}
    rows, results = [], []
    for p in table.points:
        if p.id in new_ids:
            continue
        if p.graph_variant != "eager":
            rows.append(p)
            continue
        eager_lat, res = measure_point(materialise(supernet, table_path, p), p, variants, data,
                                       in_channels=table.supernet.in_channels, tolerance=int8_tolerance,
                                       threads=n_threads, clock=clock, rounds=rounds, runs=runs,
                                       frozen_atol=frozen_atol)
        rows.append(replace(p, latency_ms={dev_key: eager_lat}) if remeasure_eager else p)
        rows += [variant_point(p, r, dev_key) for r in res if r.kept]
        for r in res:
            if on_result is not None:
                on_result(r)
        results += res
    measured = replace(table, points=tuple(rows))
    # re-measured latencies move rows: a point the search kept can now be beaten in one of its forms
    dropped = set(dominated_rows(measured, dev_key)) if drop_dominated else set()
    for point_id in sorted(dropped):
        print(f"dropped {point_id}: dominated in its form after re-measurement")
    measured = replace(measured, points=tuple(p for p in rows if p.id not in dropped))
    out = _rebased_table(measured, table_path, out_path)
    save_table(out, out_path)
    load_table(out_path, validate_id=supernet.decode)  # what we wrote must load, ids in the supernet's space
    return out, results


def format_result(r: VariantResult) -> str:
    ratio = r.latency.median / r.eager_latency.median if r.eager_latency.median else float("nan")
    state = "kept" if r.kept else f"dropped ({r.reason})"
    return (f"{r.base_id}@{r.variant}: top-1 {r.accuracy:.4f} (eager {r.eager_accuracy:.4f}), median "
            f"{r.latency.median:.3f} ms = {ratio:.2f}x eager, {r.memory_mb:.3f} MB, max |diff| "
            f"{r.max_abs_diff:.1e}, {state}")


def build_parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Arguments of the `variants` step (also usable as a `dynofa variants` sub-parser)."""
    p = p or argparse.ArgumentParser(prog="dynofa variants", description=__doc__.split("\n\n")[0])
    p.add_argument("table", help="operating-point table whose eager points get variant points")
    p.add_argument("--out", required=True, help="table to write (may be the input table itself)")
    p.add_argument("--variants", default=",".join(BUILT_VARIANTS), help="comma list, e.g. frozen,int8")
    p.add_argument("--int8-tolerance", type=float, default=DEFAULT_TOLERANCE,
                   help="largest top-1 loss vs eager (share, 0.005 = 0.5 pp) for an int8 point to be kept")
    p.add_argument("--frozen-atol", type=float, default=FROZEN_ATOL,
                   help="largest |logit - eager logit| for a frozen point to be kept (catches a broken trace)")
    p.add_argument("--calib-images", type=int, default=DEFAULT_CALIB_IMAGES, help="train images for int8")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration subset")
    p.add_argument("--device-key", default=None, help="table device key to record (default: the CPU key)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: from the key, else 1)")
    p.add_argument("--clock", choices=("cpu", "wall"), default=None, help="default: cpu on one thread")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--runs", type=int, default=20, help="calls per variant per round")
    p.add_argument("--keep-eager-latency", action="store_true", help="do not re-measure the eager rows")
    p.add_argument("--checkpoint", default=None, help="supernet checkpoint replacing the table's")
    return p


def run(args: argparse.Namespace) -> int:
    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    unknown = sorted(set(variants) - set(BUILT_VARIANTS))
    if unknown:
        raise SystemExit(f"--variants: {unknown} not built by this step; choose from {list(BUILT_VARIANTS)}")
    _, results = add_variant_points(
        args.table, args.out, variants, args.int8_tolerance, calib_images=args.calib_images, seed=args.seed,
        dev_key=args.device_key, threads=args.threads, clock=args.clock, rounds=args.rounds, runs=args.runs,
        remeasure_eager=not args.keep_eager_latency, checkpoint=args.checkpoint, frozen_atol=args.frozen_atol,
        on_result=lambda r: print(format_result(r), flush=True))
    print(f"wrote {args.out}: {sum(r.kept for r in results)} variant point(s) of {len(results)} measured")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
