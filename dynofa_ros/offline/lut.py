"""Per-layer latency lookup tables (LUT) for OFA MobileNetV3 sub-networks, in OFA's own key format.

Search evaluates tens of thousands of candidates, far too many to run; like OFA it sums per-layer
latencies from a table instead. The same key format serves OFA's published tables (e.g. the Note10 CPU
tables, `<R>_lookup_table.yaml`) and the tables we profile on the current device, so both load and
predict through one code path. Keys look like
`expanded_conv-input:112x112x24-output:56x56x32-expand:144-kernel:5-stride:2-idskip:0-se:0-hs:0`.
"""
from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

from dynofa_ros.operating_points import atomic_write_text

_LUT_FILE_RE = re.compile(r"^(\d+)_lookup_table\.(yaml|yml|json)$")  # OFA: .yaml; Dynamic-OFA (Jetson): .json


@dataclass(frozen=True)
class LayerDesc:
    """One layer of an MBv3 network as OFA's latency tables describe it (shapes are H, W, C)."""
    kind: str                       # Conv | expanded_conv | Conv_1 | AvgPool2D | Conv_2 | Logits
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    mid: int | None = None
    ks: int | None = None
    stride: int | None = None
    idskip: int | None = None
    se: int | None = None
    hs: int | None = None
    index: int | None = None        # position in the network's block list, to fetch the module to time

    def key(self) -> str:
        parts = [self.kind, "input:" + "x".join(map(str, self.in_shape)),
                 "output:" + "x".join(map(str, self.out_shape))]
        if self.kind == "expanded_conv":
            parts += [f"expand:{self.mid}", f"kernel:{self.ks}", f"stride:{self.stride}",
                      f"idskip:{self.idskip}", f"se:{self.se}", f"hs:{self.hs}"]
        return "-".join(parts)


def mbv3_layers(net_config: dict[str, Any], image_size: int, in_channels: int = 3) -> list[LayerDesc]:
    """Layer list of a static MBv3 net config (`get_active_net_config()` of an OFA supernet or
    `.config` of an extracted sub-network), exactly as OFA's MBv3LatencyTable walks it."""
    fc = net_config["first_conv"]
    stride = fc.get("stride", 2)
    fsize = (image_size - 1) // stride + 1
    layers = [LayerDesc("Conv", (image_size, image_size, in_channels), (fsize, fsize, fc["out_channels"]))]
    for i, block in enumerate(net_config["blocks"]):
        mb = block.get("conv") or block.get("mobile_inverted_conv")
        if mb is None:
            continue
        out_fz = (fsize - 1) // mb["stride"] + 1
        mid = mb["mid_channels"] if mb.get("mid_channels") is not None else round(mb["in_channels"] * mb["expand_ratio"])
        layers.append(LayerDesc(
            "expanded_conv", (fsize, fsize, mb["in_channels"]), (out_fz, out_fz, mb["out_channels"]), mid=mid,
            ks=mb["kernel_size"], stride=mb["stride"], idskip=0 if block["shortcut"] is None else 1,
            se=1 if mb["use_se"] else 0, hs=1 if mb["act_func"] == "h_swish" else 0, index=i))
        fsize = out_fz
    fe, fm, cl = net_config["final_expand_layer"], net_config["feature_mix_layer"], net_config["classifier"]
    layers += [LayerDesc("Conv_1", (fsize, fsize, fe["in_channels"]), (fsize, fsize, fe["out_channels"])),
               LayerDesc("AvgPool2D", (fsize, fsize, fe["out_channels"]), (1, 1, fe["out_channels"])),
               LayerDesc("Conv_2", (1, 1, fm["in_channels"]), (1, 1, fm["out_channels"])),
               LayerDesc("Logits", (1, 1, cl["in_features"]), (cl["out_features"],))]
    return layers


class LatencyLUT:
    """key -> {count, mean, std} in ms, for one input resolution on one device."""

    def __init__(self, entries: dict[str, dict[str, float]] | None = None, *, source: str = "") -> None:
        self.entries: dict[str, dict[str, float]] = dict(entries or {})
        self.source = source

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def query(self, key: str) -> float:
        try:
            return float(self.entries[key]["mean"])
        except KeyError:
            raise KeyError(f"latency table {self.source or '(in memory)'} has no entry {key!r}; "
                           f"profile it on this device (dynofa profile --lut)") from None

    def predict(self, layers: Iterable[LayerDesc]) -> float:
        return sum(self.query(layer.key()) for layer in layers)

    def add(self, key: str, mean: float, std: float, count: int) -> None:
        self.entries[key] = {"count": int(count), "mean": float(mean), "std": float(std)}

    @classmethod
    def load(cls, path: str | Path) -> "LatencyLUT":
        """A `.yaml` (OFA) or `.json` (Dynamic-OFA's Jetson tables) file of key -> {count, mean, std}."""
        with open(path, encoding="utf-8") as f:
            try:  # OFA's own loader uses yaml.load without Loader, refused by PyYAML 6
                data = json.load(f) if str(path).endswith(".json") else yaml.safe_load(f)
            except (json.JSONDecodeError, yaml.YAMLError) as exc:
                raise ValueError(f"{path}: not a latency lookup table (unparsable: {exc})") from None
        if not isinstance(data, dict) or not all(isinstance(v, dict) and "mean" in v for v in data.values()):
            raise ValueError(f"{path}: not a latency lookup table (expected key -> {{count, mean, std}})")
        return cls(data, source=str(path))

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, yaml.safe_dump(dict(sorted(self.entries.items())), sort_keys=False))


class ResolutionLUT:
    """One LatencyLUT per input resolution (OFA ships one file per resolution)."""

    def __init__(self, tables: dict[int, LatencyLUT], in_channels: int = 3) -> None:
        self.tables = dict(sorted(tables.items()))
        self.in_channels = in_channels

    @classmethod
    def load_dir(cls, folder: str | Path, in_channels: int = 3) -> "ResolutionLUT":
        """All `<R>_lookup_table.yaml` / `.json` files in a folder (OFA's and Dynamic-OFA's layouts)."""
        tables: dict[int, LatencyLUT] = {}
        for p in sorted(Path(folder).iterdir()):
            if (m := _LUT_FILE_RE.match(p.name)):
                if int(m.group(1)) in tables:
                    raise ValueError(f"{folder}: two lookup tables for resolution {m.group(1)}")
                tables[int(m.group(1))] = LatencyLUT.load(p)
        if not tables:
            raise FileNotFoundError(f"{folder}: no <R>_lookup_table.yaml or .json files")
        return cls(tables, in_channels)

    def save_dir(self, folder: str | Path) -> None:
        for r, t in self.tables.items():
            t.save(Path(folder) / f"{r}_lookup_table.yaml")

    def resolutions(self) -> list[int]:
        return list(self.tables)

    def predict_config(self, net_config: dict[str, Any], image_size: int) -> float:
        if image_size not in self.tables:
            raise KeyError(f"no latency table for resolution {image_size}; have {self.resolutions()}")
        return self.tables[image_size].predict(mbv3_layers(net_config, image_size, self.in_channels))


# ------------------------------------------------------------------------ OFA's published w1.2 space

OFA_W12_STAGE_WIDTHS = (32, 48, 96, 136, 192)
_OFA_STRIDES = (2, 2, 2, 1, 2)
_OFA_SE = (False, True, False, True, True)
_OFA_HSWISH = (False, False, True, True, True)


def ofa_w12_net_config(ks: list[int], e: list[int], d: list[int]) -> dict[str, Any]:
    """Static net config of an `ofa_mbv3_d234_e346_k357_w1.2` sub-network in OFA's 20-slot encoding,
    computed without building the supernet (for the published tables and predictor)."""
    if len(ks) != 20 or len(e) != 20 or len(d) != 5:
        raise ValueError(f"OFA MBv3 config needs 20 ks, 20 e and 5 d values, got {len(ks)}, {len(e)}, {len(d)}")
    blocks: list[dict[str, Any]] = [{"conv": {"in_channels": 24, "out_channels": 24, "kernel_size": 3, "stride": 1,
                                              "expand_ratio": 1, "mid_channels": 24, "act_func": "relu",
                                              "use_se": False}, "shortcut": {}}]
    cin = 24
    for stage in range(5):
        for j in range(d[stage]):
            i = stage * 4 + j
            cout = OFA_W12_STAGE_WIDTHS[stage]
            blocks.append({"conv": {"in_channels": cin, "out_channels": cout, "kernel_size": ks[i],
                                    "stride": _OFA_STRIDES[stage] if j == 0 else 1, "expand_ratio": e[i],
                                    "mid_channels": round(cin * e[i]),
                                    "act_func": "h_swish" if _OFA_HSWISH[stage] else "relu",
                                    "use_se": _OFA_SE[stage]},
                           "shortcut": None if j == 0 else {}})
            cin = cout
    return {"first_conv": {"out_channels": 24, "stride": 2}, "blocks": blocks,
            "final_expand_layer": {"in_channels": 192, "out_channels": 1152},
            "feature_mix_layer": {"in_channels": 1152, "out_channels": 1536},
            "classifier": {"in_features": 1536, "out_features": 1000}}


# ------------------------------------------------------------------- profiling our own table

def _layer_module(net: Any, layer: LayerDesc) -> Callable[[Any], Any]:
    """The module of an extracted OFA MobileNetV3 that computes `layer` (a copy, timed on its own)."""
    import torch

    if layer.kind == "Conv":
        return copy.deepcopy(net.first_conv)
    if layer.kind == "expanded_conv":
        return copy.deepcopy(net.blocks[layer.index])
    if layer.kind == "Conv_1":
        return copy.deepcopy(net.final_expand_layer)
    if layer.kind == "AvgPool2D":
        return copy.deepcopy(net.global_avg_pool)
    if layer.kind == "Conv_2":
        return copy.deepcopy(net.feature_mix_layer)
    if layer.kind == "Logits":
        cls = copy.deepcopy(net.classifier)
        return torch.nn.Sequential(torch.nn.Flatten(), cls)
    raise ValueError(f"unknown layer kind {layer.kind!r}")


def layer_input(layer: LayerDesc, batch: int = 1):
    import torch

    h, w, c = layer.in_shape
    return torch.randn(batch, c, h, w)


def profile_layers(net: Any, net_config: dict[str, Any], image_size: int, lut: LatencyLUT, *,
                   in_channels: int, measure: Callable[[Any, Any], Any], stat: str = "median") -> int:
    """Time every layer of the extracted sub-network `net` missing from `lut`; returns how many were
    added. `measure(module, example)` returns a profiler Timing; `stat` ("median" or "min") is stored
    as the entry's mean (min is steadier on a shared, loaded machine)."""
    added = 0
    for layer in mbv3_layers(net_config, image_size, in_channels):
        key = layer.key()
        if key in lut:
            continue
        stats = measure(_layer_module(net, layer).eval(), layer_input(layer))
        lut.add(key, getattr(stats, f"{stat}_ms"), stats.std_ms, stats.runs)
        added += 1
    return added
