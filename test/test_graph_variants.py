"""Graph variants frozen and int8: exactness, int8 accuracy, own weight copy, errors, the offline step."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dynofa_ros.datasets import FMNIST_DIR, load_fmnist, preprocess
from dynofa_ros.engine.bn_stats import load_bn_state, load_bn_stats
from dynofa_ros.engine.graph_variants import (VARIANTS, FrozenGraph, default_example, make_variant,
                                              quantized_engine, weight_bytes)
from dynofa_ros.operating_points import load_table, resolve_bn_stats, resolve_checkpoint
from dynofa_ros.supernet.checkpoint import load_supernet

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
MBV3 = ROOT / "test" / "fixtures" / "legacy" / "fmnist_ofa_mbv3.yaml"
VIT = ROOT / "test" / "fixtures" / "legacy" / "fmnist_elastic_vit.yaml"

pytestmark = pytest.mark.skipif(
    not MBV3.exists() or not VIT.exists() or not any((FMNIST_DIR / f"t10k-labels-idx1-ubyte{s}").exists()
                                                     for s in ("", ".gz")),
    reason="tables or Fashion-MNIST absent")


def _point_module(table_path: Path, index: int):
    """(supernet, eager module with the point's BN statistics, point) of a table's eager point."""
    table = load_table(table_path)
    supernet, _ = load_supernet(resolve_checkpoint(table_path, table), family=table.supernet.family)
    p = [q for q in table.points if q.graph_variant == "eager"][index]   # the table may hold variant rows
    module = supernet.extract(p.id)
    bn = resolve_bn_stats(table_path, p)
    if bn is not None:
        load_bn_state(module, load_bn_stats(bn, p.id))
    return supernet, module.eval(), p


@pytest.fixture(scope="module")
def test_images():
    x, y = load_fmnist("test")
    return x[:1000], y[:1000]


@pytest.fixture(scope="module")
def calib_images():
    x, _ = load_fmnist("train")
    return x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:256]]


@pytest.fixture(scope="module")
def mbv3():
    return _point_module(MBV3, 0)


@torch.inference_mode()
def _logits(module, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([module(b) for b in x.split(250)])


@pytest.mark.parametrize("table_path,index", [(MBV3, 0), (MBV3, -1), (VIT, 0)])
def test_frozen_equals_eager(table_path, index, test_images):
    _, module, p = _point_module(table_path, index)
    x = preprocess(test_images[0][:300], p.resolution)
    frozen = make_variant(module, "frozen", example=x[:1])
    assert isinstance(frozen, FrozenGraph)
    diff = (_logits(frozen, x) - _logits(module, x)).abs().max().item()
    assert diff <= 1e-5, f"{p.id}: frozen differs from eager by {diff:.2e}"
    assert not any(type(m).__name__ in ("Hswish", "Hsigmoid") for m in frozen.modules())


@pytest.mark.parametrize("variant", ["frozen", "int8"])
def test_mbv3_pools_are_native(variant, mbv3, calib_images):
    """ofa's SE and global pool average with two ``mean`` calls; the variants use one native adaptive pool
    (a quantised ``mean`` round-trips through float: a third of a shallow int8 frame)."""
    _, module, p = mbv3
    built = make_variant(module, variant, example=preprocess(calib_images[:1], p.resolution),
                         calibration=[preprocess(calib_images, p.resolution)])
    kinds = {n.kind() for n in built.graph_module.graph.nodes()}
    assert "aten::mean" not in kinds
    assert "aten::adaptive_avg_pool2d" in kinds


@pytest.mark.parametrize("table_path", [VIT, MBV3])
def test_frozen_without_example_derives_one(table_path, test_images):
    _, module, p = _point_module(table_path, 0)
    ex = default_example(module)
    if table_path == VIT:
        assert ex.shape == (1, 1, p.resolution, p.resolution)   # from the position table
    else:
        assert ex.shape[:2] == (1, 1)   # a conv net's trace holds no size: traced at 32 px, run at 16
    x = preprocess(test_images[0][:50], p.resolution)
    torch.testing.assert_close(_logits(make_variant(module, "frozen"), x), _logits(module, x), atol=1e-5, rtol=0)


def test_int8_accuracy_close_to_eager(mbv3, test_images, calib_images):
    _, module, p = mbv3
    x, y = preprocess(test_images[0], p.resolution), test_images[1]
    q = make_variant(module, "int8", calibration=preprocess(calib_images, p.resolution).split(128))
    acc_eager = (_logits(module, x).argmax(1) == y).float().mean().item()
    acc_int8 = (_logits(q, x).argmax(1) == y).float().mean().item()
    assert abs(acc_eager - acc_int8) <= 0.03, f"eager {acc_eager:.3f} vs int8 {acc_int8:.3f}"
    assert 0 < weight_bytes(q) < weight_bytes(module) / 2   # int8 weights: about a quarter of float


@pytest.mark.parametrize("calibration", [None, []])
def test_int8_without_calibration_raises(mbv3, calibration):
    _, module, _ = mbv3
    with pytest.raises(ValueError, match="calibration"):
        make_variant(module, "int8", calibration=calibration)


def test_int8_bytes_count_linear_weights():
    """A quantised Linear keeps its weights as a (weight, bias) tuple: they count, as a conv's do (a ViT's
    int8 rows once reported 0.1 MB for 1.8 MB of float weights)."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 10)).eval()
    q = make_variant(model, "int8", calibration=[torch.randn(8, 1, 8, 8)])
    int8_weights = 64 * 256 + 256 * 10
    assert int8_weights <= weight_bytes(q) < weight_bytes(model) / 2


@pytest.mark.parametrize("variant", ["frozen", "int8"])
def test_variant_owns_its_weights(variant, calib_images):
    supernet, module, p = _point_module(MBV3, 0)
    calib = [preprocess(calib_images[:128], p.resolution)]
    v = make_variant(module, variant, example=calib[0][:1], calibration=calib if variant == "int8" else None)
    x = calib[0][:16]
    before = _logits(v, x)
    source = {t.untyped_storage().data_ptr() for t in (*supernet.parameters(), *supernet.buffers(),
                                                       *module.parameters(), *module.buffers())}
    assert not source & {t.untyped_storage().data_ptr() for t in (*v.parameters(), *v.buffers())}
    with torch.no_grad():   # wreck the supernet and the extracted module: the variant must not notice
        for t in (*supernet.parameters(), *module.parameters()):
            t.zero_()
    torch.testing.assert_close(_logits(v, x), before, atol=0, rtol=0)


@pytest.mark.parametrize("table_path,index", [(MBV3, 1), (VIT, 0)])
def test_variants_from_the_shared_form(table_path, index, test_images, calib_images):
    """The pool builds variants from weight-shared forms (views of the supernet): same outputs, and the
    copy holds the slices only, not whole supernet storages."""
    shared_mod = pytest.importorskip("dynofa_ros.engine.shared")
    supernet, module, p = _point_module(table_path, index)
    bn = resolve_bn_stats(table_path, p)
    shared = shared_mod.SharedWeights(supernet).module(p.id, load_bn_stats(bn, p.id) if bn else None)
    x = preprocess(test_images[0][:200], p.resolution)
    frozen = make_variant(shared, "frozen", example=x[:1])
    torch.testing.assert_close(_logits(frozen, x), _logits(module, x), atol=1e-5, rtol=0)
    assert weight_bytes(frozen) <= weight_bytes(module)
    q = make_variant(shared, "int8", calibration=[preprocess(calib_images, p.resolution)])
    agree = (_logits(q, x).argmax(1) == _logits(module, x).argmax(1)).float().mean().item()
    assert agree >= 0.9 and weight_bytes(q) < weight_bytes(module) / 2
    ptrs = {t.untyped_storage().data_ptr() for t in (*supernet.parameters(), *shared.parameters())}
    assert not ptrs & {t.untyped_storage().data_ptr() for t in frozen.buffers()}


def test_frozen_counts_its_constants(mbv3):
    from dynofa_ros.engine.pool import module_bytes

    _, module, p = mbv3
    frozen = make_variant(module, "frozen", example=torch.zeros(1, 1, p.resolution, p.resolution))
    assert module_bytes(frozen) == weight_bytes(frozen)   # the pool's accounting sees them as buffers
    assert 0.9 * weight_bytes(module) < weight_bytes(frozen) <= weight_bytes(module)   # minus BN only


def test_unknown_variant_names_the_known_ones(mbv3):
    with pytest.raises(ValueError, match="known") as err:
        make_variant(mbv3[1], "bogus")
    assert all(v in str(err.value) for v in VARIANTS)
    assert {"frozen", "int8"} <= set(VARIANTS)


def test_quantized_engine_by_machine():
    assert quantized_engine("x86_64", ["qnnpack", "x86", "fbgemm"]) == "fbgemm"
    assert quantized_engine("AMD64", ["qnnpack", "x86"]) == "x86"
    assert quantized_engine("aarch64", ["qnnpack", "x86"]) == "qnnpack"
    with pytest.raises(RuntimeError):
        quantized_engine("aarch64", [])


def test_offline_step_writes_loadable_variant_rows(tmp_path, test_images, calib_images):
    from dynofa_ros.offline.pipeline import EvalData
    from dynofa_ros.offline.variants import add_variant_points

    one = tmp_path / "in" / "one.yaml"
    one.parent.mkdir()
    text = MBV3.read_text().split("\n- id: ")
    one.write_text(text[0] + "\n- id: " + text[1] + "\n")        # the first point only
    data = EvalData(calib_images=calib_images, eval_images=test_images[0][:200],
                    eval_labels=test_images[1][:200], preprocess=preprocess, batch_size=100)
    # the input table's relative checkpoint/BN paths do not resolve from tmp: point them at the fixture
    one.write_text(one.read_text().replace("checkpoint: models/", f"checkpoint: {MBV3.parent}/models/")
                   .replace("bn_stats: models/", f"bn_stats: {MBV3.parent}/models/")
                   .replace("calibration_images: models/", f"calibration_images: {ROOT}/models/"))
    out = tmp_path / "out" / "variants.yaml"
    table, results = add_variant_points(one, out, int8_tolerance=1.0, data=data, rounds=1, runs=2)
    base = table.points[0].id
    assert table.ids() == [base, f"{base}@frozen", f"{base}@int8"]
    again = load_table(out)
    assert [p.graph_variant for p in again.points] == ["eager", "frozen", "int8"]
    assert again.point(f"{base}@int8").memory_mb < again.point(base).memory_mb
    assert all(r.kept for r in results) and {r.variant for r in results} == {"frozen", "int8"}
    strict, rejected = add_variant_points(one, out, ("int8",), int8_tolerance=-1.0, data=data, rounds=1, runs=2)
    assert strict.ids() == [base] and not rejected[0].kept and "tolerance" in rejected[0].reason
