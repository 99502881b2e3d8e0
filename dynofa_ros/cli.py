"""The `dynofa` command: offline stage (profile, search, plot) and supernet training, without ROS.

    dynofa profile --checkpoint models/fmnist28_ofa_mbv3.pt --lut build/lut/cpu@1t --threads 1
    dynofa search  --checkpoint models/fmnist28_ofa_mbv3.pt --lut build/lut/cpu@1t --threads 1 \
                   --out build/fmnist28_cpu.yaml
    dynofa plot    build/fmnist28_cpu.yaml --out build/front_fmnist28_cpu.png
    dynofa search  --ofa-predictor acc_predictor.pth --ofa-lut note10/ --limits 15:60:10   (OFA ImageNet space)
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Sequence

from dynofa_ros.operating_points import Normalization, atomic_write_text, load_table


def _limits(text: str) -> list[float]:
    """'a:b:n' (n evenly spaced values from a to b) or 'x,y,z'."""
    if ":" in text:
        a, b, n = text.split(":")
        n_i = int(n)
        return [float(a) + (float(b) - float(a)) * i / max(1, n_i - 1) for i in range(n_i)]
    return [float(v) for v in text.split(",")]


def _evolution_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("evolution (OFA defaults: population 100, 500 generations)")
    g.add_argument("--population", type=int, default=100)
    g.add_argument("--generations", type=int, default=500)
    g.add_argument("--parent-ratio", type=float, default=0.25)
    g.add_argument("--mutation-ratio", type=float, default=0.5)
    g.add_argument("--mutation-prob", type=float, default=0.1)
    g.add_argument("--seed", type=int, default=0)


def _params(args: argparse.Namespace):
    from dynofa_ros.offline.search import EvolutionParams

    return EvolutionParams(population=args.population, generations=args.generations, parent_ratio=args.parent_ratio,
                           mutation_ratio=args.mutation_ratio, mutation_prob=args.mutation_prob, seed=args.seed)


def _load_mbv3(path: str, official: bool = False):
    """Project checkpoint, or (official=True) an official OFA ImageNet file loaded from the user's path."""
    from dynofa_ros.offline.pipeline import MBv3Adapter
    from dynofa_ros.supernet.checkpoint import load_official_ofa_mbv3, load_supernet

    if official:
        return MBv3Adapter(load_official_ofa_mbv3(path)), {}
    supernet, meta = load_supernet(path)
    if supernet.family != "ofa_mbv3":
        sys.exit(f"dynofa: {path} holds a {supernet.family!r} supernet; profile supports ofa_mbv3")
    return MBv3Adapter(supernet), meta


def _load_searchable(path: str):
    """The search adapter for a project checkpoint of either family."""
    from dynofa_ros.offline.pipeline import MBv3Adapter
    from dynofa_ros.offline.vit_adapter import ViTAdapter
    from dynofa_ros.supernet.checkpoint import load_supernet

    supernet, meta = load_supernet(path)
    adapters = {"ofa_mbv3": MBv3Adapter, "elastic_vit": ViTAdapter}
    if supernet.family not in adapters:
        sys.exit(f"dynofa search: {path} holds a {supernet.family!r} supernet; search supports {sorted(adapters)}")
    return adapters[supernet.family](supernet), meta


def _eval_data(args: argparse.Namespace, eval_split: str, eval_n: int | None):
    """Fashion-MNIST: BN calibration on the engine's fixed 2,000 training images; evaluation on the test
    set (or, for the predictor, on a different fixed slice of the training set)."""
    import torch

    from dynofa_ros.datasets import load_fmnist, preprocess
    from dynofa_ros.engine.evaluate import calibration_subset
    from dynofa_ros.offline.pipeline import EvalData

    train_x, train_y = load_fmnist("train", args.data)
    calib = calibration_subset(train_x, args.calib, 0)
    if eval_split == "test":
        x, y = load_fmnist("test", args.data)
    else:
        idx = torch.randperm(train_x.shape[0], generator=torch.Generator().manual_seed(12345))
        x, y = train_x[idx], train_y[idx]
    if eval_n:
        x, y = x[:eval_n], y[:eval_n]
    return EvalData(calib, x, y, preprocess)


# ------------------------------------------------------------------------------------------ profile

def cmd_profile(args: argparse.Namespace) -> int:
    import torch

    from dynofa_ros.offline.pipeline import build_lut, lut_error
    from dynofa_ros.offline.profiler import ResultStore, device_key, profile_many
    from dynofa_ros.offline.lut import ResolutionLUT

    adapter, _ = _load_mbv3(args.checkpoint, args.official)
    sn = adapter.supernet
    threads = args.threads or [1]
    if args.lut:
        if len(threads) != 1 or len(args.device) != 1:
            sys.exit("dynofa profile --lut: one --device and one --threads value per table")
        build_lut(sn, args.lut, device=args.device[0], threads=threads[0], runs=args.runs, warmup=args.warmup,
                  resolutions=args.resolutions, stat=args.lut_stat, clock=args.clock)
        print(f"LUT written to {args.lut}")
        if args.lut_check:
            err = lut_error(adapter, ResolutionLUT.load_dir(args.lut, sn.in_channels), args.lut_check,
                            device=args.device[0], threads=threads[0], runs=args.runs, seed=args.seed,
                            stat=args.lut_stat, clock=args.clock)
            print(json.dumps({k: v for k, v in err.items() if k != "samples"}, indent=1))
    if not args.out:
        return 0
    if args.table:
        ids = load_table(args.table, family=sn.family, validate_id=sn.decode).ids()
    elif args.ids:
        ids = [sn.encode(sn.decode(i)) for i in args.ids]
    else:
        rng = random.Random(args.seed)
        ids = [sn.largest().encode(), sn.smallest().encode()] + [sn.random_spec(rng).encode() for _ in range(args.random)]
    for v in args.variants:
        if v != "eager":
            sys.exit(f"dynofa profile: graph variant {v!r} is built by the engine's SubnetPool; only 'eager' here")

    def builder(sid: str):
        def build():
            spec = sn.decode(sid)
            return sn.extract(spec), sn.sample_input(spec).normal_()
        return build

    store = ResultStore(args.out)
    items = [(sid, v, builder(sid)) for sid in ids for v in args.variants]
    torch.manual_seed(args.seed)
    profile_many(items, store, devices=args.device, threads=threads, warmup=args.warmup, runs=args.runs,
                 qualifier=args.qualifier)
    keys = sorted({device_key(d, t, args.qualifier) for d in args.device for t in (threads if d == "cpu" else [None])})
    print(f"{len(store.records)} records in {args.out} (device keys {keys})")
    return 0


# ------------------------------------------------------------------------------------------- search

def cmd_search(args: argparse.Namespace) -> int:
    if args.ofa_predictor:
        return _search_ofa_imagenet(args)
    if not args.checkpoint or not args.out:
        sys.exit("dynofa search: --checkpoint and --out are required (or --ofa-predictor for the OFA ImageNet space)")
    import torch

    from dynofa_ros.datasets import FMNIST_LABELS, FMNIST_MEAN, FMNIST_STD
    from dynofa_ros.offline.pipeline import keep_front, refine_predictor, remeasure, run_search, unique_candidates, write_table
    from dynofa_ros.offline.profiler import device_key

    torch.set_num_threads(args.eval_threads or args.threads)  # accuracy passes; latency runs use --threads
    t_start = time.perf_counter()
    adapter, meta = _load_searchable(args.checkpoint)
    sn = adapter.supernet
    if sn.family == "elastic_vit" and args.form != "eager":
        sys.exit(f"dynofa search --form {args.form}: the elastic ViT is searched in eager form only")
    dev_key = device_key(args.device, args.threads, args.qualifier)
    lut = None
    if args.lut:
        # loads the table; profiles only what is missing
        lut = adapter.build_lut(args.lut, device=args.device, threads=args.threads, stat=args.lut_stat,
                                clock=args.clock, form=args.form)
    elif args.form != "eager" and args.metric == "latency":
        sys.exit(f"dynofa search --form {args.form}: give --lut (a folder for that form's per-layer LUT)")
    predictor, samples, predictor_data = _own_predictor(args, adapter)
    t0 = time.perf_counter()
    model = adapter.cost_model(args.metric, lut)
    print(f"cost range {model.low:.3f} .. {model.high:.3f} {'ms' if args.metric == 'latency' else 'MFLOPs'} "
          "(found over the whole space)")
    limits = _limits(args.limits) if args.limits else model.default_limits(args.n_limits)

    def search(pred):
        return _sweep_or_exit(lambda lims, on_skip: run_search(adapter, pred, model, limits=lims,
                                                               params=_params(args), on_skip=on_skip), limits)

    if samples and args.refine_rounds:
        n0 = len(samples)
        predictor, samples, results = refine_predictor(adapter, predictor, samples, predictor_data, search,
                                                       rounds=args.refine_rounds, seed=args.seed)
        print(f"predictor refined on {len(samples) - n0} measured winners ({len(samples)} samples)")
        if args.predictor:
            predictor.save(args.predictor)
    else:
        if args.refine_rounds:
            print("predictor loaded: no refinement (its samples are not stored; delete the file to refit)")
        results = search(predictor)
    search_s = time.perf_counter() - t0
    cands = unique_candidates(results, key=lambda a: a)
    if args.form != "eager":
        cands += [t for t in dict.fromkeys(adapter.widest_twin(a) for a in cands) if t not in cands]
    # the space's extremes are always re-measured too, so the kept front spans the whole trade-off even
    # where the predictor (fitted on few samples) misranks near the ends
    for anchor in (adapter.from_spec(sn.smallest()), adapter.from_spec(sn.largest())):
        if anchor not in cands:
            cands.append(anchor)
    twins = ", each winner's widest twin" if args.form != "eager" else ""
    print(f"search: {len(limits)} limits, {len(cands)} distinct candidates (with the smallest and largest{twins}) "
          f"in {search_s:.1f}s")
    test_data = _eval_data(args, "test", args.eval_n)
    measured = remeasure(adapter, cands, test_data, device=args.device,
                         threads=args.threads, lut=lut, clock=args.clock, form=args.form)
    kept = keep_front(measured, dev_key)
    ck = args.checkpoint_ref or args.checkpoint
    table = write_table(kept, adapter, args.out, checkpoint=ck, normalization=Normalization((FMNIST_MEAN,), (FMNIST_STD,)),
                        labels=FMNIST_LABELS, dev_key=dev_key,
                        calibration={"dataset": "fashion-mnist train", "images": args.calib, "seed": 0})
    print(f"kept {len(table.points)} of {len(measured)} re-measured candidates -> {args.out}")
    for m in kept:
        lat, acc = m.judged(dev_key)
        print(f"  {lat:7.3f} ms  acc {acc:.4f} ({m.form})  eager {m.latency[dev_key].median:7.3f} ms  "
              f"{m.mflops:7.2f} MFLOPs  {m.spec_id}")
    if args.report:
        report = {"checkpoint": str(args.checkpoint), "device_key": dev_key, "clock": args.clock,
                  "form": args.form,
                  "load_average_end": list(os.getloadavg()), "metric": args.metric, "limits": limits,
                  "evolution": _params(args).__dict__, "search_wall_s": search_s,
                  "total_wall_s": time.perf_counter() - t_start, "eval_images": len(test_data.eval_labels),
                  "predictor_samples": [{"id": adapter.to_spec(a).encode(), "accuracy": acc} for a, acc in samples],
                  **_own_report(adapter, results, measured, kept, dev_key)}
        atomic_write_text(args.report, json.dumps(report, indent=1))
    return 0


def _own_predictor(args: argparse.Namespace, adapter):
    """The project's accuracy predictor, its samples and their data: loaded from --predictor if present
    (no samples then), else fitted and saved."""
    from dynofa_ros.offline.acc_predictor import MLPAccuracyPredictor
    from dynofa_ros.offline.pipeline import train_predictor

    if args.predictor and Path(args.predictor).exists():
        print(f"predictor loaded from {args.predictor}")
        return MLPAccuracyPredictor.load(args.predictor), [], None
    data = _eval_data(args, "train", args.predictor_eval)
    predictor, samples = train_predictor(adapter, data, args.predictor_samples, seed=args.seed)
    if args.predictor:
        predictor.save(args.predictor)
    return predictor, samples, data


def _own_report(adapter, results, measured, kept, dev_key: str) -> dict:
    """Each limit's winner and every re-measured candidate (kept or dominated), for the report."""
    kept_ids = {m.spec_id for m in kept}
    return {"sweep": [{"limit": r.constraint, "id": adapter.to_spec(r.best.arch).encode(),
                       "predicted_accuracy": r.best.accuracy, "predicted_cost": r.best.cost} for r in results],
            "candidates": [{"id": m.spec_id, "accuracy": m.accuracy, "latency_ms": m.latency[dev_key].median,
                            "p95_ms": m.latency[dev_key].p95, "lut_predicted_ms": m.predicted_ms,
                            "memory_mb": m.memory_mb, "peak_memory_mb": m.peak_memory_mb, "mflops": m.mflops,
                            **({f"{m.form}_accuracy": m.form_accuracy,
                                f"{m.form}_latency_ms": m.form_latency[dev_key].median} if m.form_latency else {}),
                            "kept": m.spec_id in kept_ids} for m in measured]}


def _sweep_or_exit(run, limits: list[float]):
    """`run(limits, on_skip)`, with each infeasible limit reported in one line; none feasible: one line, exit 1."""
    from dynofa_ros.offline.search import ConstraintError

    try:
        return run(limits, lambda lim, msg: print(f"skip limit {lim:g}: {msg}"))
    except ConstraintError:
        sys.exit(f"dynofa search: no limit in {min(limits):g} .. {max(limits):g} is feasible "
                 "(all are below the cheapest sub-network; see the cost range above)")


def _search_ofa_imagenet(args: argparse.Namespace) -> int:
    """OFA w1.2 ImageNet space with OFA's published predictor and a per-layer LUT (OFA's note10 `.yaml`
    or Dynamic-OFA's Jetson `.json` tables): the predicted front, as JSON candidates for re-measurement."""
    from dynofa_ros.offline.acc_predictor import OFA_E, OFA_KS, OFAAccuracyPredictor
    from dynofa_ros.offline.lut import ResolutionLUT, ofa_w12_net_config
    from dynofa_ros.offline.search import (pareto_front, slot_cost_model, slot_space, sweep, unique_candidates,
                                           with_true_cheapest)

    if not args.ofa_lut:
        sys.exit("dynofa search --ofa-predictor needs --ofa-lut (a folder of <R>_lookup_table.yaml or .json)")
    if args.metric != "latency":
        sys.exit(f"dynofa search: --metric {args.metric} is not available with --ofa-predictor "
                 "(OFA's lookup tables give latency in ms)")
    pred = OFAAccuracyPredictor(args.ofa_predictor)
    lut = ResolutionLUT.load_dir(args.ofa_lut)
    res = [r for r in lut.resolutions() if 160 <= r <= 224]  # the predictor is trained on 160-224 only
    if not res:
        sys.exit(f"dynofa search: {args.ofa_lut} has no resolution in the predictor's range 160-224 "
                 f"(it has {lut.resolutions()})")
    adapter = _load_mbv3(args.checkpoint, official=True)[0] if args.checkpoint else None
    if adapter is not None:  # the real network's layer shapes (w1.0 or w1.2), e.g. with a LUT profiled here
        exact = lambda a: lut.tables[a.r].predict(adapter.layers(a))  # noqa: E731
    else:  # published w1.2 shapes, e.g. with OFA's note10 LUT
        exact = lambda a: lut.predict_config(ofa_w12_net_config(list(a.ks), list(a.e), list(a.d)), a.r)  # noqa: E731
    t0 = time.perf_counter()
    model = slot_cost_model(exact, OFA_KS, OFA_E, (2, 3, 4), res)
    cost, lo, hi = model.cost, model.low, model.high
    print(f"cost range {lo:.3f} .. {hi:.3f} ms (found over the whole space)")
    space = with_true_cheapest(slot_space(OFA_KS, OFA_E, (2, 3, 4), res), model.cheapest)
    acc = lambda archs: pred.predict([a.as_ofa() for a in archs])  # noqa: E731
    limits = _limits(args.limits) if args.limits else model.default_limits(args.n_limits)
    results = _sweep_or_exit(lambda lims, on_skip: sweep(space, acc, cost, lims, _params(args), on_skip=on_skip),
                             limits)
    wall = time.perf_counter() - t0
    cands = unique_candidates(results, key=lambda a: a)
    scores = dict(zip(cands, acc(cands)))
    front = sorted(pareto_front(cands, lambda a: (cost(a), scores[a]), senses=("min", "max")), key=cost)
    rows = [{"config": a.as_ofa(), "predicted_accuracy": scores[a], "lut_latency_ms": cost(a)} for a in front]
    if args.table_out and adapter is None:
        sys.exit("dynofa search: --table-out needs --checkpoint (the official file whose front is measured here)")
    if adapter is not None:
        _remeasure_ofa_front(args, adapter, front, rows)
    if args.table_out:
        _write_imagenet_table(args, adapter, front, rows)
    for r in rows:
        meas = f"  measured {r['measured_median_ms']:7.2f} ms" if "measured_median_ms" in r else ""
        print(f"  {r['lut_latency_ms']:7.2f} ms (LUT){meas}  top-1 {r['predicted_accuracy']:.4f} (predicted)  r{r['config']['r'][0]}")
    print(f"{len(results)} of {len(limits)} limits feasible, searched in {wall:.1f}s; {len(rows)} predicted-front points")
    summary = {"space": "ofa_mbv3_w1.2", "lut": str(args.ofa_lut), "predictor": str(args.ofa_predictor),
               "metric": "latency", "cost_range_ms": [lo, hi], "limits": limits, "evolution": _params(args).__dict__,
               "search_wall_s": wall, "candidates": rows,
               "sweep": [{"limit": r.constraint, "config": r.best.arch.as_ofa(), "predicted_accuracy": r.best.accuracy,
                          "lut_latency_ms": r.best.cost, "wall_s": r.wall_s} for r in results]}
    for path in (args.out, args.report):
        if path:
            atomic_write_text(path, json.dumps(summary, indent=1))
    return 0


def _remeasure_ofa_front(args: argparse.Namespace, adapter, front, rows) -> None:
    """Latency and memory of the predicted front measured on this device (accuracy stays predicted)."""
    import torch

    from dynofa_ros.offline.profiler import device_key, measure_latency, module_memory_mb

    torch.set_num_threads(args.threads)
    for r, a in zip(rows, front):
        spec = adapter.to_spec(a)
        module = adapter.supernet.extract(spec).to(args.device)
        x = adapter.supernet.sample_input(spec).normal_().to(args.device)
        t = measure_latency(module, x, threads=args.threads)
        r.update(id=spec.encode(), device_key=device_key(args.device, args.threads, args.qualifier),
                 measured_median_ms=t.median_ms, measured_p95_ms=t.p95_ms, memory_mb=module_memory_mb(module),
                 mflops=adapter.mflops(a), params_m=sum(p.numel() for p in module.parameters()) / 1e6)


IMAGENET_NORMALIZATION = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def _imagenet_labels() -> str:
    """The shipped 1000 ImageNet class names (config/labels/imagenet1k.txt of the install or source tree)."""
    from dynofa_ros.operating_points import default_table_path, resolve_package_path
    return str(resolve_package_path(default_table_path(), "config/labels/imagenet1k.txt"))


def _write_imagenet_table(args: argparse.Namespace, adapter, front, rows) -> None:
    """An operating-point table of the re-measured front: measured latency and memory on this device,
    the predictor's top-1 (no ImageNet here to measure it), no BN statistics yet (`dynofa calibrate`)."""
    from dynofa_ros.operating_points import (LatencyStats, Normalization, OperatingPoint, OperatingPointTable,
                                             SupernetInfo, save_table)

    sup = adapter.supernet
    points = tuple(OperatingPoint(
        id=r["id"], architecture=sup.as_spec(r["id"]).describe(), graph_variant="eager", bn_stats=None,
        resolution=a.r, accuracy=round(r["predicted_accuracy"], 5), mflops=round(r["mflops"], 3),
        params_m=round(r["params_m"], 4), memory_mb=round(r["memory_mb"], 3),
        latency_ms={r["device_key"]: LatencyStats(round(r["measured_median_ms"], 4),
                                                  round(max(r["measured_p95_ms"], r["measured_median_ms"]), 4))})
        for a, r in zip(front, rows))
    info = SupernetInfo(family="ofa_mbv3", checkpoint=str(Path(args.checkpoint).resolve()),
                        num_classes=sup.config()["n_classes"], normalization=Normalization(*IMAGENET_NORMALIZATION),
                        in_channels=3, labels_file=_imagenet_labels() if sup.config()["n_classes"] == 1000 else None,
                        crop=0.875)
    save_table(OperatingPointTable(supernet=info, devices=(rows[0]["device_key"],), points=points), args.table_out)
    print(f"operating-point table -> {args.table_out} (accuracy predicted; next: dynofa calibrate {args.table_out} "
          "--images DIR)")


# ---------------------------------------------------------------------------------------- calibrate

def cmd_calibrate(args: argparse.Namespace) -> int:
    """Per-sub-network BN statistics from a folder of images or a bag's image topic."""
    import torch

    from dynofa_ros.offline.calibrate import CalibrationError, calibrate_table, load_images
    from dynofa_ros.operating_points import TableError
    from dynofa_ros.supernet.checkpoint import CheckpointError

    torch.set_num_threads(args.threads)
    try:
        images, source = load_images(args.images, args.bag, args.topic, args.max_images)
        table = calibrate_table(args.table, images, checkpoint=args.checkpoint, out_table=args.out, source=source)
    except (CalibrationError, TableError, CheckpointError, OSError) as exc:
        sys.exit(f"dynofa calibrate: {exc}")
    print(f"calibrated {len(table.points)} sub-networks on {len(images)} images ({source}) -> {args.out or args.table}")
    return 0


# --------------------------------------------------------------------------------------------- plot

def cmd_plot(args: argparse.Namespace) -> int:
    from dynofa_ros.offline.plot import PlotPoint, plot_front

    table = load_table(args.table)
    device = args.device or table.devices[0]
    if device not in table.devices:
        sys.exit(f"dynofa plot: table has no device {device!r}; it has {list(table.devices)}")
    candidates = []
    if args.report:
        rep = json.loads(Path(args.report).read_text())
        candidates = [PlotPoint(c["id"], c["latency_ms"], c["accuracy"]) for c in rep["candidates"] if not c["kept"]]
    baselines: list[PlotPoint] = []
    note = ""
    imagenet_space = table.supernet.in_channels == 3 and table.supernet.num_classes == 1000
    if args.baselines == "imagenet" or (args.baselines == "auto" and imagenet_space):
        baselines = _measure_imagenet_baselines(device, args.runs)
        note = " (latency here, published top-1)"
    out = plot_front(table, device, args.out, title=args.title, candidates=candidates, baselines=baselines,
                     baseline_note=note)
    print(f"wrote {out}")
    return 0


def _measure_imagenet_baselines(device: str, runs: int):
    import torch

    from dynofa_ros.offline.baselines import IMAGENET_BASELINES, PUBLISHED_TOP1
    from dynofa_ros.offline.plot import PlotPoint
    from dynofa_ros.offline.profiler import measure_latency

    parts = device.split("@")
    dev = "cuda" if parts[0] == "cuda" else "cpu"
    threads = next((int(q[:-1]) for q in parts[1:] if q.endswith("t") and q[:-1].isdigit()), None)
    out = []
    for b in IMAGENET_BASELINES:
        m = b.build().eval().to(dev)
        x = torch.randn(1, 3, b.resolution, b.resolution, device=dev)
        t = measure_latency(m, x, runs=runs, threads=threads)
        out.append(PlotPoint(b.name, t.median_ms, PUBLISHED_TOP1[b.name]))
    return out


# ---------------------------------------------------------------------------------------------- main

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dynofa", description="Dynamic-OFA offline stage (no ROS needed).")
    sub = p.add_subparsers(dest="command", required=True)

    _add_profile(sub)
    _add_search(sub)
    _add_calibrate(sub)
    _add_plot(sub)
    try:
        from dynofa_ros.supernet import training
    except ImportError:  # training needs the dataset helpers; the offline commands do not
        training = None
    if training is not None:
        tr = sub.add_parser("train", help="train a Fashion-MNIST supernet (once-for-all, sandwich rule)")
        training.build_parser(tr)
        tr.set_defaults(func=lambda a: (training.train(a), 0)[1])
        from dynofa_ros.offline import baselines_train
        ba = sub.add_parser("baselines", help="train static Fashion-MNIST baselines under a CPU budget, measure them")
        baselines_train.build_parser(ba)
        ba.set_defaults(func=lambda a: (baselines_train.run(a), 0)[1])
    return p


def _add_profile(sub) -> None:
    pr = sub.add_parser("profile", help="per-layer latency LUT and/or latency+memory of sub-networks on this device")
    pr.add_argument("--checkpoint", required=True, help="project supernet checkpoint (dynofa train)")
    pr.add_argument("--official", action="store_true",
                    help="--checkpoint is an official OFA MobileNetV3 file (ofa_mbv3_d234_e346_k357_w1.0/_w1.2)")
    pr.add_argument("--resolutions", type=int, nargs="+", help="LUT resolutions (default: all of the space)")
    pr.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="cpu: thread CPU time (1 thread only), steady on a machine shared with other jobs")
    pr.add_argument("--lut-stat", choices=["median", "min"], default="median",
                    help="per-layer statistic stored in the LUT (min is steadier on a loaded machine)")
    pr.add_argument("--lut", help="folder for the per-layer LUT (<R>_lookup_table.yaml), built/resumed")
    pr.add_argument("--lut-check", type=int, default=0, metavar="N",
                    help="after building the LUT, compare its prediction with measurement on N random sub-networks")
    pr.add_argument("--out", help="JSON result store for sub-network measurements (resumable)")
    src = pr.add_mutually_exclusive_group()
    src.add_argument("--table", help="profile the points of an operating-point table")
    src.add_argument("--ids", nargs="+", help="sub-network ids")
    src.add_argument("--random", type=int, default=10, help="largest, smallest and N random sub-networks")
    pr.add_argument("--variants", nargs="+", default=["eager"])
    pr.add_argument("--device", nargs="+", default=["cpu"], choices=["cpu", "cuda"])
    pr.add_argument("--threads", type=int, nargs="+", help="CPU thread counts (default 1)")
    pr.add_argument("--qualifier", help="extra device-key label, e.g. the nvpmodel mode (cuda@15W)")
    pr.add_argument("--warmup", type=int, default=10)
    pr.add_argument("--runs", type=int, default=50)
    pr.add_argument("--seed", type=int, default=0)
    pr.set_defaults(func=cmd_profile)


def _add_search(sub) -> None:
    se = sub.add_parser("search", help="evolutionary search + re-measure -> operating-point table")
    se.add_argument("--checkpoint", help="project supernet checkpoint (ofa_mbv3 or elastic_vit); with --ofa-predictor: the official "
                                         "OFA file, whose predicted front is then re-measured on this device")
    se.add_argument("--checkpoint-ref", help="checkpoint path written into the table (default: --checkpoint)")
    se.add_argument("--out", help="operating-point table to write (YAML); JSON candidates in --ofa-predictor mode")
    se.add_argument("--report", help="JSON with every re-measured candidate, the sweep and timings")
    se.add_argument("--metric", choices=["latency", "mflops"], default="latency")
    se.add_argument("--limits", help="constraint values: 'lo:hi:n' or 'a,b,c' (ms or MFLOPs)")
    se.add_argument("--n-limits", type=int, default=12, help="sweep size when --limits is not given")
    se.add_argument("--lut", help="per-layer LUT folder for this device and --form (built if missing)")
    se.add_argument("--form", choices=["eager", "int8"], default="eager",
                    help="graph form the LUT times and the front is judged in: int8 searches for the points "
                         "that are best once quantised (their eager/frozen rows come from build_variant_tables)")
    se.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="cpu: latency as thread CPU time (1 thread only; for a machine shared with other jobs)")
    se.add_argument("--lut-stat", choices=["median", "min"], default="median",
                    help="statistic for LUT entries profiled during search (match the existing table)")
    se.add_argument("--predictor", help="own accuracy predictor file: loaded if present, else trained and saved")
    se.add_argument("--predictor-samples", type=int, default=60,
                    help="random sub-networks measured to fit the predictor (besides the largest, the smallest "
                         "and the space's corners)")
    se.add_argument("--predictor-eval", type=int, default=2000, help="training-set images per predictor sample")
    se.add_argument("--refine-rounds", type=int, default=2,
                    help="rounds of measuring the sweep's new winners on the predictor's data and refitting "
                         "before the final sweep (0: none; a loaded predictor is not refined)")
    se.add_argument("--calib", type=int, default=2000, help="BN calibration images")
    se.add_argument("--eval-n", type=int, default=None, help="test images for re-measurement (default all)")
    se.add_argument("--data", help="Fashion-MNIST folder (default /usr/share/datasets/fashion-mnist)")
    se.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    se.add_argument("--threads", type=int, default=1, help="CPU threads for latency measurement (device key)")
    se.add_argument("--eval-threads", type=int, help="CPU threads for BN calibration and accuracy (default --threads)")
    se.add_argument("--qualifier", help="extra device-key label, e.g. the nvpmodel mode")
    se.add_argument("--ofa-predictor", help="OFA acc_predictor.pth: search the OFA ImageNet w1.2 space instead")
    se.add_argument("--ofa-lut", help="OFA-format LUT folder for --ofa-predictor mode (e.g. note10/)")
    se.add_argument("--table-out", help="with --ofa-predictor and --checkpoint: an operating-point table of the "
                                        "re-measured front for the perception node (then dynofa calibrate)")
    _evolution_args(se)
    se.set_defaults(func=cmd_search)


def _add_calibrate(sub) -> None:
    ca = sub.add_parser("calibrate", help="per-sub-network BN statistics from your own images (folder or bag topic)")
    ca.add_argument("table", help="operating-point table whose points get BN statistics")
    ca.add_argument("--checkpoint", help="supernet file replacing the table's (e.g. your official OFA download)")
    ca.add_argument("--images", help="folder of .jpg/.jpeg/.png images (searched recursively)")
    ca.add_argument("--bag", help="rosbag2 folder or .db3/.mcap file")
    ca.add_argument("--topic", help="image topic in --bag (sensor_msgs/Image or CompressedImage)")
    ca.add_argument("--max-images", type=int, default=500, help="calibration images (spread over the source)")
    ca.add_argument("--out", help="table to write (default: update TABLE in place); BN files go to bn/<name>/ beside it")
    ca.add_argument("--threads", type=int, default=1)
    ca.set_defaults(func=cmd_calibrate)


def _add_plot(sub) -> None:
    pl = sub.add_parser("plot", help="PNG of a table's accuracy-latency front")
    pl.add_argument("table")
    pl.add_argument("--out", required=True)
    pl.add_argument("--device", help="device key (default: the table's first)")
    pl.add_argument("--report", help="search report JSON: also draw the dominated candidates")
    pl.add_argument("--baselines", choices=["auto", "imagenet", "none"], default="auto",
                    help="auto: torchvision MobileNetV3 S/L and EfficientNet-Lite0 for ImageNet-space tables only")
    pl.add_argument("--runs", type=int, default=30)
    pl.add_argument("--title")
    pl.set_defaults(func=cmd_plot)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
