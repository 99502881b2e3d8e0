"""The offline stage end to end for an OFA MobileNetV3 supernet (dynofa_ros.supernet.ofa_mbv3).

profile a per-layer LUT on this device -> fit the project's accuracy predictor on measured sub-networks
(the space's corners and random ones) -> evolutionary search swept over latency (LUT) or FLOPs limits,
refitting the predictor on the winners it had not seen -> re-measure the candidates for real (BN
recalibrated, accuracy on the evaluation set, latency on the device, memory) -> keep the judged form's
front over (latency, accuracy) (int8 with --form int8), less the points another of it beats in eager ->
BN statistics + operating-point table.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import torch

from dynofa_ros.engine.bn_stats import bn_state, bn_stats_filename, recalibrate_bn, save_bn_stats
from dynofa_ros.engine.graph_variants import make_variant
from dynofa_ros.offline.acc_predictor import MLPAccuracyPredictor
from dynofa_ros.offline.lut import LatencyLUT, LayerDesc, ResolutionLUT, mbv3_layers, profile_layers
from dynofa_ros.offline.profiler import device_key, measure_latency, module_memory_mb, num_threads, peak_memory_mb
from dynofa_ros.offline.search import (CostModel, EvolutionParams, SearchResult, SearchSpace, SlotArch, pareto_front,
                                       slot_cost_model, slot_encode, slot_space, sweep, unique_candidates,
                                       with_true_cheapest)

__all__ = ["MBv3Adapter", "EvalData", "Measured", "SearchAdapter", "build_lut", "fit_predictor", "keep_front",
           "lut_error", "mbv3_macs", "measure_accuracy", "measure_samples", "refine_predictor", "remeasure",
           "run_search", "served_form", "top1", "train_predictor", "unique_candidates", "write_table"]
from dynofa_ros.operating_points import (LatencyStats, Normalization, OperatingPoint, OperatingPointTable,
                                         SupernetInfo, save_table)
from dynofa_ros.supernet.ofa_mbv3 import MBv3Spec, OFAMobileNetV3Supernet

from ofa.utils import make_divisible


class SearchAdapter(Protocol):
    """What the search pipeline needs of a family (MBv3Adapter here, vit_adapter.ViTAdapter)."""
    supernet: Any

    def space(self) -> SearchSpace: ...
    def to_spec(self, a: Any) -> Any: ...
    def from_spec(self, spec: Any) -> Any: ...
    def encode(self, a: Any) -> list[float]: ...
    def mflops(self, a: Any) -> float: ...
    def corners(self) -> list[Any]: ...
    def widest_twin(self, a: Any) -> Any: ...
    def cost_model(self, metric: str, lut: ResolutionLUT | None) -> CostModel: ...
    def predicted_ms(self, lut: ResolutionLUT, a: Any) -> float: ...
    def build_lut(self, folder: str | Path, **kwargs: Any) -> ResolutionLUT: ...


def mbv3_macs(layers: Sequence[LayerDesc], first_kernel: int = 3) -> int:
    """MACs of an MBv3 network from its layer list, without building it (same count as
    `Supernet.flops`: convs and linears, SE included, OFA's "FLOPs" convention)."""
    total = 0
    for ly in layers:
        if ly.kind == "Conv":
            total += ly.in_shape[2] * ly.out_shape[2] * first_kernel ** 2 * ly.out_shape[0] * ly.out_shape[1]
        elif ly.kind == "expanded_conv":
            (h, w, cin), (ho, wo, cout), mid = ly.in_shape, ly.out_shape, ly.mid
            if mid != cin:
                total += cin * mid * h * w
            total += mid * ly.ks ** 2 * ho * wo + mid * cout * ho * wo
            if ly.se:
                total += 2 * mid * make_divisible(mid // 4, 8)
        elif ly.kind in ("Conv_1", "Conv_2"):
            total += ly.in_shape[2] * ly.out_shape[2] * ly.out_shape[0] * ly.out_shape[1]
        elif ly.kind == "Logits":
            total += ly.in_shape[2] * ly.out_shape[0]
    return total


class MBv3Adapter:
    """Bridges the engine's MBv3 supernet and the slot-based search space."""

    def __init__(self, supernet: OFAMobileNetV3Supernet) -> None:
        sp = supernet.space()
        self.supernet = supernet
        self.ks, self.es, self.ds, self.rs = sp["kernel"], sp["expand"], sp["depth"], sp["resolution"]
        self.first_kernel = supernet.net.first_conv.kernel_size
        self._layers: dict[SlotArch, list[LayerDesc]] = {}
        # fixed parts and per-slot constants, so a candidate's layer list needs no supernet call
        # (search asks for tens of thousands); test_offline_pipeline checks it equals ofa's own walk
        net = supernet.net
        self._fixed = net.get_active_net_config()
        self._slots = [[(max(net.blocks[b].conv.out_channel_list), net.blocks[b].conv.stride,
                         net.blocks[b].conv.act_func, net.blocks[b].conv.use_se, net.blocks[b].shortcut is not None)
                        for b in idx] for idx in net.block_group_info]

    def space(self) -> SearchSpace[SlotArch]:
        return slot_space(self.ks, self.es, self.ds, self.rs)

    def to_spec(self, a: SlotArch) -> MBv3Spec:
        return self.supernet.from_ofa_arch({"ks": list(a.ks), "e": list(a.e), "d": list(a.d)}, a.r)

    def from_spec(self, spec: MBv3Spec | str) -> SlotArch:
        spec = self.supernet.as_spec(spec)
        arch = self.supernet.to_ofa_arch(spec)
        return SlotArch(tuple(arch["ks"]), tuple(arch["e"]), tuple(arch["d"]), spec.resolution)

    def net_config(self, a: SlotArch) -> dict[str, Any]:
        """ofa's `get_active_net_config()` of the sub-network `a`, computed from the slot constants."""
        first = self._fixed["blocks"][0]
        blocks = [first]
        cin = first["conv"]["out_channels"]
        spd = len(a.ks) // len(a.d)
        for stage, slots in enumerate(self._slots):
            for j in range(a.d[stage]):
                cout, stride, act, se, shortcut = slots[j]
                k, e = a.ks[stage * spd + j], a.e[stage * spd + j]
                blocks.append({"conv": {"in_channels": cin, "out_channels": cout, "kernel_size": k, "stride": stride,
                                        "expand_ratio": e, "mid_channels": make_divisible(round(cin * e), 8),
                                        "act_func": act, "use_se": se}, "shortcut": {} if shortcut else None})
                cin = cout
        return {**self._fixed, "blocks": blocks}

    def layers(self, a: SlotArch) -> list[LayerDesc]:
        if a not in self._layers:
            self._layers[a] = mbv3_layers(self.net_config(a), a.r, self.supernet.in_channels)
        return self._layers[a]

    def encode(self, a: SlotArch) -> list[float]:
        return slot_encode(a, self.ks, self.es, self.rs)

    def mflops(self, a: SlotArch) -> float:
        return mbv3_macs(self.layers(a), self.first_kernel) / 1e6

    def corners(self) -> list[SlotArch]:
        """The space's corners: each resolution x shallowest/deepest x smallest/largest uniform kernel and
        expand.  Random samples almost never set one choice in every slot, so without them the predictor
        cannot see a choice's main effect (fitted on random samples only, it ranked all-k3 above all-k5 at
        depth 1 on the 28-px supernet, where measured all-k5 is 1.5 pp more accurate)."""
        largest = self.from_spec(self.supernet.largest())
        n_slots, n_stages = len(largest.ks), len(largest.d)
        return [SlotArch((k,) * n_slots, (e,) * n_slots, (d,) * n_stages, r)
                for r in self.rs for d in (min(self.ds), max(self.ds))
                for k in (min(self.ks), max(self.ks)) for e in (min(self.es), max(self.es))]

    def widest_twin(self, a: SlotArch) -> SlotArch:
        """``a`` with the largest kernel and expand in every slot, at its depths and resolution.  In int8 a
        layer's kernel and expansion cost almost nothing (depth and resolution do), so this twin is about as
        fast and usually more accurate; an int8 search re-measures it beside each winner, because the
        predictor resolves per-slot choices worse than the measurement does."""
        return SlotArch((max(self.ks),) * len(a.ks), (max(self.es),) * len(a.e), a.d, a.r)

    def cost_model(self, metric: str, lut: ResolutionLUT | None) -> CostModel:
        """The constraint metric ('latency' via the LUT, in ms, or 'mflops') with its true range."""
        if metric == "latency":
            if lut is None:
                raise ValueError("latency-constrained search needs a latency LUT (dynofa profile --lut)")
            exact = lambda a: self.predicted_ms(lut, a)  # noqa: E731
        elif metric == "mflops":
            exact = self.mflops
        else:
            raise ValueError(f"unknown constraint metric {metric!r}; use 'latency' or 'mflops'")
        return slot_cost_model(exact, self.ks, self.es, self.ds, self.rs)

    def predicted_ms(self, lut: ResolutionLUT, a: SlotArch) -> float:
        return lut.tables[a.r].predict(self.layers(a))

    def build_lut(self, folder: str | Path, **kwargs: Any) -> ResolutionLUT:
        return build_lut(self.supernet, folder, **kwargs)


# ---------------------------------------------------------------------------------- LUT profiling

SEARCH_FORMS = ("eager", "int8")


def served_form(module: torch.nn.Module, form: str, example: torch.Tensor,
                calibration: Sequence[torch.Tensor]) -> torch.nn.Module:
    """``module`` in the graph form the search prices and the front is judged in (eager or int8)."""
    if form not in SEARCH_FORMS:
        raise ValueError(f"unknown search form {form!r}; use one of {SEARCH_FORMS}")
    if form == "eager":
        return module
    return make_variant(module, form, example=example, calibration=calibration)


def build_lut(supernet: OFAMobileNetV3Supernet, folder: str | Path, *, device: str = "cpu",
              threads: int | None = 1, warmup: int = 5, runs: int = 30, show_progress: bool = True,
              resolutions: Sequence[int] | None = None, stat: str = "median", clock: str = "wall",
              form: str = "eager") -> ResolutionLUT:
    """Profile every layer shape of the space on this device (uniform kernel/expand at full depth covers
    every block shape). Resumable: existing `<R>_lookup_table.yaml` entries are kept, each resolution is
    saved atomically when done. ``form`` is the graph form each layer is timed in (see `served_form`): an
    int8 LUT prices what int8 serves, where kernel size and expansion cost almost nothing and depth is
    what counts; keep each form's LUT in its own folder."""
    from tqdm import tqdm

    folder = Path(folder)
    sp = supernet.space()
    tables: dict[int, LatencyLUT] = {}
    res = list(resolutions or sp["resolution"])
    unknown = sorted(set(res) - set(sp["resolution"]))
    if unknown:
        raise ValueError(f"resolutions {unknown} are not in the supernet's space {sp['resolution']}")
    jobs = [(r, k, e) for r in res for k in sp["kernel"] for e in sp["expand"]]
    for r in res:
        path = folder / f"{r}_lookup_table.yaml"
        tables[r] = LatencyLUT.load(path) if path.exists() else LatencyLUT(source=str(path))

    def measure(module: torch.nn.Module, x: torch.Tensor):
        module, x = module.to(device), x.to(device)
        # a layer's timing does not depend on its values: random calibration is enough to price int8
        module = served_form(module, form, x[:1], [torch.randn(8, *x.shape[1:], device=x.device)])
        return measure_latency(module, x, warmup=warmup, runs=runs, threads=threads, clock=clock)

    for r, k, e in tqdm(jobs, desc=f"LUT {device_key(device, threads)}", unit="net", disable=not show_progress):
        spec = MBv3Spec(r, tuple(tuple((k, e) for _ in range(max(sp["depth"]))) for _ in range(sp["stages"])))
        supernet.set_active(spec)
        config = supernet.net.get_active_net_config()
        if all(ly.key() in tables[r] for ly in mbv3_layers(config, r, supernet.in_channels)):
            continue
        if profile_layers(supernet.extract(spec), config, r, tables[r], in_channels=supernet.in_channels,
                          measure=measure, stat=stat):
            tables[r].save(folder / f"{r}_lookup_table.yaml")
    return ResolutionLUT(tables, supernet.in_channels)


# ----------------------------------------------------------------------------- accuracy measurement

@dataclass
class EvalData:
    """Calibration images for BN and labelled evaluation images, uint8 [N, C, H, W] before preprocessing."""
    calib_images: torch.Tensor
    eval_images: torch.Tensor
    eval_labels: torch.Tensor
    preprocess: Callable[[torch.Tensor, int], torch.Tensor]
    batch_size: int = 500
    _cache: dict[tuple[str, int], torch.Tensor] = field(default_factory=dict)

    def batches(self, which: str, resolution: int) -> list[torch.Tensor]:
        key = (which, resolution)
        if key not in self._cache:
            imgs = self.calib_images if which == "calib" else self.eval_images
            self._cache[key] = self.preprocess(imgs, resolution)
        x = self._cache[key]
        return list(x.split(self.batch_size))


def measure_accuracy(supernet: OFAMobileNetV3Supernet, spec: MBv3Spec, data: EvalData) -> tuple[float, dict, torch.nn.Module]:
    """Extract, recalibrate BN on the calibration images, top-1 on the evaluation images.
    Returns (accuracy, BN state, recalibrated module)."""
    module = supernet.extract(spec)
    recalibrate_bn(module, data.batches("calib", spec.resolution))
    module.eval()
    return top1(module, data, spec.resolution), bn_state(module), module


def top1(module: torch.nn.Module, data: EvalData, resolution: int) -> float:
    """Top-1 share of ``module`` on the evaluation images."""
    correct = 0
    with torch.no_grad():
        for x, y in zip(data.batches("eval", resolution), data.eval_labels.split(data.batch_size)):
            correct += int((module(x).argmax(1) == y).sum())
    return correct / len(data.eval_labels)


def measure_samples(adapter: SearchAdapter, archs: Sequence[SlotArch], data: EvalData, *,
                    show_progress: bool = True) -> list[tuple[SlotArch, float]]:
    """(architecture, measured accuracy) for each of ``archs``: the predictor's training data."""
    from tqdm import tqdm

    return [(a, measure_accuracy(adapter.supernet, adapter.to_spec(a), data)[0])
            for a in tqdm(archs, desc="predictor data", unit="net", disable=not show_progress)]


def fit_predictor(adapter: SearchAdapter, samples: Sequence[tuple[SlotArch, float]], *,
                  seed: int = 0) -> MLPAccuracyPredictor:
    pred = MLPAccuracyPredictor(len(adapter.encode(samples[0][0])), seed=seed)
    pred.fit([adapter.encode(a) for a, _ in samples], [acc for _, acc in samples])
    return pred


def train_predictor(adapter: SearchAdapter, data: EvalData, n: int, *, seed: int = 0,
                    show_progress: bool = True) -> tuple[MLPAccuracyPredictor, list[tuple[SlotArch, float]]]:
    """Measure the largest, the smallest, the space's corners and `n` random sub-networks; fit the
    project's predictor on them."""
    rng = random.Random(seed)
    space = adapter.space()
    archs = [adapter.from_spec(adapter.supernet.largest()), adapter.from_spec(adapter.supernet.smallest())]
    archs += [a for a in adapter.corners() if a not in archs]
    seen = set(archs)
    target = len(archs) + n
    while len(archs) < target:
        a = space.sample(rng)
        if a not in seen:
            seen.add(a)
            archs.append(a)
    samples = measure_samples(adapter, archs, data, show_progress=show_progress)
    return fit_predictor(adapter, samples, seed=seed), samples


def refine_predictor(adapter: SearchAdapter, predictor: MLPAccuracyPredictor, samples: list[tuple[SlotArch, float]],
                     data: EvalData, search: Callable[[MLPAccuracyPredictor], list[SearchResult[SlotArch]]], *,
                     rounds: int, seed: int = 0, show_progress: bool = True
                     ) -> tuple[MLPAccuracyPredictor, list[tuple[SlotArch, float]], list[SearchResult[SlotArch]]]:
    """Search with ``predictor`` (fitted on ``samples``), measure the winners it has not seen on its own
    data, refit, search again (``rounds`` times at most).  The predictor is corrected exactly where the
    search trusts it: near the front, which random samples cover thinly.  Returns the last predictor, its
    samples and sweep."""
    results = search(predictor)
    for _ in range(rounds):
        seen = {a for a, _ in samples}
        new = [a for a in unique_candidates(results, key=lambda a: a) if a not in seen]
        if not new:
            break
        samples = samples + measure_samples(adapter, new, data, show_progress=show_progress)
        predictor = fit_predictor(adapter, samples, seed=seed)
        results = search(predictor)
    return predictor, samples, results


# ------------------------------------------------------------------------------------ search

@dataclass
class Measured:
    arch: SlotArch
    spec_id: str
    accuracy: float
    latency: dict[str, LatencyStats]
    memory_mb: float
    peak_memory_mb: float
    mflops: float
    params_m: float
    predicted_ms: float | None
    bn: dict[str, torch.Tensor]
    form: str = "eager"                     # the form the front is judged in; its figures below
    form_accuracy: float | None = None
    form_latency: dict[str, LatencyStats] | None = None

    def judged(self, dev_key: str) -> tuple[float, float]:
        """(median latency, accuracy) of the judged form: the eager figures unless another form was timed."""
        if self.form_latency is None:
            return self.latency[dev_key].median, self.accuracy
        return self.form_latency[dev_key].median, self.form_accuracy


def run_search(adapter: SearchAdapter, predictor: MLPAccuracyPredictor, model: CostModel, *, limits: Sequence[float],
               params: EvolutionParams, on_skip: Callable[[float, str], None] | None = None
               ) -> list[SearchResult[SlotArch]]:
    """Sweep the evolution over `limits` of the model's metric, seeded from the true cheapest network."""
    acc = lambda archs: predictor.predict([adapter.encode(a) for a in archs])  # noqa: E731
    space = with_true_cheapest(adapter.space(), model.cheapest)
    return sweep(space, acc, model.cost, limits, params, on_skip=on_skip)


def remeasure(adapter: SearchAdapter, archs: Sequence[SlotArch], data: EvalData, *, device: str, threads: int | None,
              lut: ResolutionLUT | None, warmup: int = 10, runs: int = 50, show_progress: bool = True,
              clock: str = "wall", form: str = "eager") -> list[Measured]:
    """Real figures for each candidate: accuracy after BN recalibration, latency on the device, memory;
    for a ``form`` other than eager also that form's accuracy and latency (the front is judged on them)."""
    from tqdm import tqdm

    key = device_key(device, threads)
    out = []
    for a in tqdm(archs, desc="re-measure", unit="net", disable=not show_progress):
        spec = adapter.to_spec(a)
        acc, bn, module = measure_accuracy(adapter.supernet, spec, data)
        x = adapter.supernet.sample_input(spec).normal_()
        module, x = module.to(device).eval(), x.to(device)
        t = measure_latency(module, x, warmup=warmup, runs=runs, threads=threads, clock=clock)
        with num_threads(threads):
            peak = peak_memory_mb(module, x)
        m = Measured(arch=a, spec_id=spec.encode(), accuracy=acc,
                     latency={key: LatencyStats(t.median_ms, t.p95_ms)}, memory_mb=module_memory_mb(module),
                     peak_memory_mb=peak, mflops=adapter.mflops(a),
                     params_m=sum(p.numel() for p in module.parameters()) / 1e6,
                     predicted_ms=adapter.predicted_ms(lut, a) if lut else None, bn=bn, form=form)
        if form != "eager":
            served = served_form(module, form, x, data.batches("calib", spec.resolution)[:2])
            ft = measure_latency(served, x, warmup=warmup, runs=runs, threads=threads, clock=clock)
            m.form_accuracy = top1(served, data, spec.resolution)
            m.form_latency = {key: LatencyStats(ft.median_ms, ft.p95_ms)}
        out.append(m)
    return out


def keep_front(measured: Sequence[Measured], dev_key: str) -> list[Measured]:
    """The judged form's front over (median latency, accuracy), less the points another point of that
    front beats in eager (when the judged form is not eager), sorted fastest first in the judged form.
    The table ships each form as a row, so such a point would be a dominated eager row; filtering within
    the front (not intersecting two fronts) never leaves the table empty.  Memory is not an objective:
    every point runs from the shared supernet weights, so a point's own resident cost is its BN
    statistics, and a slower, less accurate point is never worth keeping for it."""
    front = pareto_front(list(measured), lambda m: m.judged(dev_key), senses=("min", "max"))
    if any(m.form_latency is not None for m in front):
        front = pareto_front(front, lambda m: (m.latency[dev_key].median, m.accuracy), senses=("min", "max"))
    return sorted(front, key=lambda m: m.judged(dev_key)[0])


def write_table(kept: Sequence[Measured], adapter: SearchAdapter, table_path: str | Path, *, checkpoint: str,
                normalization: Normalization, labels: Sequence[str] | None, dev_key: str,
                calibration: dict[str, Any]) -> OperatingPointTable:
    """BN statistics under `<table dir>/bn/<table name>/` (that folder is the table's: statistics of
    points a previous run kept are removed) and the operating-point table itself."""
    table_path = Path(table_path)
    bn_dir = Path("bn") / table_path.stem
    points = []
    for m in kept:
        rel = bn_dir / bn_stats_filename(m.spec_id)
        if m.bn:  # a family without BatchNorm (the ViT) has no statistics to ship
            save_bn_stats(table_path.parent / rel, m.spec_id, m.bn, calibration)
        spec = adapter.supernet.decode(m.spec_id)
        points.append(OperatingPoint(id=m.spec_id, architecture=spec.describe(), graph_variant="eager",
                                     bn_stats=rel.as_posix() if m.bn else None, resolution=spec.resolution,
                                     accuracy=round(m.accuracy, 5), mflops=round(m.mflops, 3),
                                     params_m=round(m.params_m, 4), memory_mb=round(m.memory_mb, 3),
                                     latency_ms={dev_key: LatencyStats(round(m.latency[dev_key].median, 4),
                                                                       round(m.latency[dev_key].p95, 4))}))
    sup = adapter.supernet
    table = OperatingPointTable(
        supernet=SupernetInfo(family=sup.family, checkpoint=checkpoint, num_classes=sup.config()["n_classes"],
                              normalization=normalization, in_channels=sup.in_channels,
                              labels=tuple(labels) if labels else None),
        devices=(dev_key,), points=tuple(points))
    save_table(table, table_path)
    # the bn/<table name>/ folder belongs to this table: drop statistics of points no longer kept
    keep = {bn_stats_filename(m.spec_id) for m in kept if m.bn}
    for stale in (table_path.parent / bn_dir).glob("*.pt"):
        if stale.name not in keep:
            stale.unlink()
    return table


def lut_error(adapter: MBv3Adapter, lut: ResolutionLUT, n: int, *, device: str = "cpu", threads: int | None = 1,
              warmup: int = 10, runs: int = 50, seed: int = 0, stat: str = "median",
              clock: str = "wall") -> dict[str, Any]:
    """LUT-predicted vs measured latency of `n` random extracted sub-networks (relative error =
    |predicted - measured| / measured); `stat` is the measured statistic, matching the LUT's."""
    rng = random.Random(seed)
    space = adapter.space()
    samples = []
    for _ in range(n):
        a = space.sample(rng)
        spec = adapter.to_spec(a)
        module = adapter.supernet.extract(spec).to(device)
        x = adapter.supernet.sample_input(spec).normal_().to(device)
        measured = getattr(measure_latency(module, x, warmup=warmup, runs=runs, threads=threads, clock=clock),
                           f"{stat}_ms")
        predicted = lut.tables[a.r].predict(adapter.layers(a))
        samples.append({"id": spec.encode(), "measured_ms": measured, "predicted_ms": predicted,
                        "rel_error": abs(predicted - measured) / measured,
                        "signed_rel_error": (predicted - measured) / measured})
    errs = sorted(s["rel_error"] for s in samples)
    signed = sorted(s["signed_rel_error"] for s in samples)
    return {"n": n, "device_key": device_key(device, threads), "stat": stat, "clock": clock, "median_rel_error": errs[len(errs) // 2] if n % 2 else
            (errs[n // 2 - 1] + errs[n // 2]) / 2, "worst_rel_error": errs[-1],
            "median_signed_rel_error": signed[len(signed) // 2], "samples": samples}
