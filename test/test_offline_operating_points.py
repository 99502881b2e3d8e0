"""Operating-point tables: round trip, and malformed or mismatched tables rejected with a named field."""
from __future__ import annotations

from dataclasses import replace

import pytest
import yaml

from dynofa_ros.operating_points import (LatencyStats, Normalization, OperatingPoint, OperatingPointTable,
                                         SupernetInfo, TableError, dominated_rows, load_table, resolve_bn_stats,
                                         save_table, table_to_dict)


def _table() -> OperatingPointTable:
    def pt(i: int, ms: float, acc: float) -> OperatingPoint:
        return OperatingPoint(id=f"net{i}", architecture=f"arch {i}", graph_variant="eager",
                              bn_stats=f"bn/net{i}.pt", resolution=32, accuracy=acc, mflops=1.5 * i,
                              params_m=0.1 * i, memory_mb=0.4 * i,
                              latency_ms={"cpu@1t": LatencyStats(ms, ms * 1.1), "cuda": LatencyStats(ms / 4, ms / 3)})
    return OperatingPointTable(
        supernet=SupernetInfo(family="ofa_mbv3", checkpoint="models/x.pt", num_classes=3,
                              normalization=Normalization((0.286,), (0.353,)), in_channels=1, labels=("a", "b", "c")),
        devices=("cpu@1t", "cuda"), points=(pt(1, 2.0, 0.80), pt(2, 3.5, 0.85), pt(3, 5.25, 0.9)))


def test_round_trip_equal(tmp_path):
    t = _table()
    path = tmp_path / "sub" / "t.yaml"
    save_table(t, path)
    back = load_table(path)
    assert back == t
    assert table_to_dict(back) == table_to_dict(t)
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]  # atomic write left no temp file


def test_helpers(tmp_path):
    t = _table()
    assert [p.id for p in t.by_latency("cpu@1t")] == ["net1", "net2", "net3"]
    assert t.best_within("cpu@1t", 4.0).id == "net2"
    assert t.best_within("cpu@1t", 1.0) is None
    assert t.point("net3").latency("cuda", "p95") == pytest.approx(5.25 / 3)
    with pytest.raises(KeyError, match="cpu@4t"):
        t.point("net1").latency("cpu@4t")
    with pytest.raises(KeyError, match="nope"):
        t.point("nope")
    assert t.device_for("cpu") == "cpu@1t" and t.device_for("cuda") == "cuda"
    with pytest.raises(KeyError, match="'npu'"):
        t.device_for("npu")
    assert resolve_bn_stats(tmp_path / "t.yaml", t.points[0]) == tmp_path.resolve() / "bn/net1.pt"


def _mutated(edit) -> dict:
    d = table_to_dict(_table())
    edit(d)
    return d


CASES = [
    ("missing field", lambda d: d["points"][0].pop("accuracy"), r"points\[0\].*missing field.*accuracy"),
    ("missing supernet field", lambda d: d["supernet"].pop("checkpoint"), r"supernet: missing field.*checkpoint"),
    ("wrong version", lambda d: d.update(version=2), r"version: unsupported table version 2"),
    ("duplicate id", lambda d: d["points"][1].update(id="net1"), r"duplicate id 'net1'"),
    ("accuracy above 1", lambda d: d["points"][0].update(accuracy=89.1), r"accuracy: must be <= 1"),
    ("negative latency", lambda d: d["points"][2]["latency_ms"]["cuda"].update(median=-1.0), r"cuda.median: must be >= 0"),
    ("p95 below median", lambda d: d["points"][0]["latency_ms"]["cpu@1t"].update(p95=0.1), r"p95 .* below median"),
    ("unknown graph variant", lambda d: d["points"][0].update(graph_variant="tensorrt"), r"unknown graph variant 'tensorrt'"),
    ("unknown family", lambda d: d["supernet"].update(family="resnet"), r"unknown family 'resnet'"),
    ("unknown field", lambda d: d["points"][0].update(acuracy=0.5), r"unknown field.*acuracy"),
    ("latency for unlisted device", lambda d: d["points"][0]["latency_ms"].update(gpu={"median": 1, "p95": 1}),
     r"device\(s\) \['gpu'\] not listed"),
    ("latency missing a device", lambda d: d["points"][1]["latency_ms"].pop("cuda"), r"missing latency for device.*cuda"),
    ("labels count", lambda d: d["supernet"].update(labels=["a"]), r"labels: expected a list of num_classes=3"),
    ("normalization channels", lambda d: d["supernet"]["normalization"].update(mean=[0.1, 0.2]), r"normalization.mean"),
    ("string number", lambda d: d["points"][0].update(mflops="12"), r"mflops: expected a number"),
    ("bool resolution", lambda d: d["points"][0].update(resolution=True), r"resolution: expected a positive integer"),
    ("malformed device key", lambda d: d.update(devices=["CPU 1"]), r"malformed device key"),
    ("empty points", lambda d: d.update(points=[]), r"points: expected a non-empty list"),
]


@pytest.mark.parametrize("name,edit,pattern", CASES, ids=[c[0] for c in CASES])
def test_malformed_rejected(tmp_path, name, edit, pattern):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_mutated(edit)))
    with pytest.raises(TableError, match=pattern) as exc:
        load_table(path)
    assert str(path) in str(exc.value)


def test_not_yaml_or_not_mapping(tmp_path):
    p = tmp_path / "t.yaml"
    p.write_text("version: [1\n")
    with pytest.raises(TableError, match="not valid YAML"):
        load_table(p)
    p.write_text("- 1\n- 2\n")
    with pytest.raises(TableError, match="table: expected a mapping"):
        load_table(p)
    with pytest.raises(TableError, match="cannot read"):
        load_table(tmp_path / "missing.yaml")


def test_mismatch_with_caller(tmp_path):
    path = tmp_path / "t.yaml"
    save_table(_table(), path)
    with pytest.raises(TableError, match="expected 'elastic_vit'"):
        load_table(path, family="elastic_vit")
    with pytest.raises(TableError, match="num_classes: table has 3, model has 10"):
        load_table(path, num_classes=10)
    with pytest.raises(TableError, match="not measured on 'cpu@4t'"):
        load_table(path, device="cpu@4t")

    def only_net1_and_net2(pid: str) -> None:
        if pid == "net3":
            raise ValueError("depth 9 outside the space")

    with pytest.raises(TableError, match=r"points\[2\].id: 'net3' is not a sub-network.*depth 9"):
        load_table(path, validate_id=only_net1_and_net2)


def test_save_refuses_invalid(tmp_path):
    t = _table()
    bad = replace(t, points=t.points + (t.points[0],))
    with pytest.raises(TableError, match="duplicate id"):
        save_table(bad, tmp_path / "t.yaml")
    assert not (tmp_path / "t.yaml").exists()


def test_variant_ids_carry_their_graph_variant(tmp_path):
    """Two variants of one sub-network: distinct ids `<id>@<variant>`, validated against the variant."""
    import copy

    from conftest import LEGACY
    from dynofa_ros.operating_points import TableError, load_table
    table = yaml.safe_load((LEGACY / 'fmnist_ofa_mbv3.yaml').read_text())
    fused = copy.deepcopy(table['points'][0])
    fused['id'] += '@fused'
    fused['graph_variant'] = 'fused'
    table['supernet']['checkpoint'] = str(LEGACY / 'models' / 'fmnist_ofa_mbv3.pt')
    table['points'] = [table['points'][0] | {'bn_stats': None}, fused | {'bn_stats': None}]
    path = tmp_path / 'variants.yaml'
    path.write_text(yaml.safe_dump(table))
    from dynofa_ros.supernet.checkpoint import load_supernet
    supernet, _ = load_supernet(table['supernet']['checkpoint'])
    loaded = load_table(path, validate_id=supernet.decode)
    assert [p.graph_variant for p in loaded.points] == ['eager', 'fused']
    table['points'][1]['graph_variant'] = 'compiled'
    path.write_text(yaml.safe_dump(table))
    with pytest.raises(TableError, match='does not match graph_variant'):
        load_table(path)


def test_dominated_rows_are_judged_within_their_form():
    """net2 is beaten by a faster, more accurate eager row; an int8 row faster than every eager row
    dominates nothing outside its form, and is itself judged only against int8 rows."""
    t = _table()
    slow = replace(t.points[1], latency_ms={"cpu@1t": LatencyStats(6.0, 7.0), "cuda": LatencyStats(1.0, 1.2)})
    int8 = replace(t.points[0], id="net1@int8", graph_variant="int8", accuracy=0.95,
                   latency_ms={"cpu@1t": LatencyStats(0.5, 0.6), "cuda": LatencyStats(9.0, 9.0)})
    t = replace(t, points=(t.points[0], slow, t.points[2], int8))
    assert dominated_rows(t, "cpu@1t") == ["net2"]
    assert dominated_rows(t, "cuda") == []  # on cuda net2 is the fastest eager row


def test_default_table_has_no_dominated_row():
    """The shipped default table is a front in every form it ships (the variant step drops the rest)."""
    from dynofa_ros.operating_points import default_table_path

    table = load_table(default_table_path())
    assert table.supernet.checkpoint.endswith("fmnist28_ofa_mbv3.pt")
    assert dominated_rows(table, table.device_for("cpu")) == []


def test_shipped_vit_table_meets_its_targets():
    """The shipped ViT table: a front in every form, largest point >= 89 % (the models issue's target) and
    an eager front spanning >= 3x in latency between its ends, with a checkpoint of at most 20 MB."""
    from dynofa_ros.operating_points import default_table_path, resolve_checkpoint

    path = default_table_path().with_name("fmnist28_elastic_vit.yaml")
    table = load_table(path)
    device = table.device_for("cpu")
    assert table.supernet.family == "elastic_vit"
    assert dominated_rows(table, device) == []
    eager = [p.latency(device) for p in table.points if p.graph_variant == "eager"]
    assert max(p.accuracy for p in table.points) >= 0.89
    assert max(eager) >= 3 * min(eager)
    assert resolve_checkpoint(path, table).stat().st_size <= 20 * 2**20
