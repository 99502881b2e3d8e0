"""Weight-shared sub-network modules: same outputs as extract, no private weight copies, memory bound."""
import random
import threading
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dynofa_ros.datasets import load_fmnist, preprocess
from dynofa_ros.engine.bn_stats import bn_layers, load_bn_state, load_bn_stats
from dynofa_ros.engine.pool import module_bytes
from dynofa_ros.engine.shared import SharedWeights, StridedConv1x1, private_bytes, shared_storage_ptrs
from dynofa_ros.operating_points import load_table, resolve_bn_stats, resolve_checkpoint
from dynofa_ros.supernet.checkpoint import load_supernet

REPO = Path(__file__).resolve().parents[1]
MBV3_TABLE = REPO / "test/fixtures/legacy/fmnist_ofa_mbv3.yaml"
VIT_CKPT = REPO / "test/fixtures/legacy/models/fmnist_elastic_vit.pt"
PRESET28 = REPO / "models/fmnist28_ofa_mbv3.pt"
TOL = 1e-5
# 1,000 images on every MBv3 table point and wherever the shared module computes differently from
# extract; fewer on the costly largest ViT / 28-px points, which are plain prefix views (the benchmark,
# bench/bench_shared.py, records every point on 1,000 images)
FULL, FEW = 1000, 150

torch.set_num_threads(1)  # the CI machine has 2 cores shared with other jobs


def _ptr(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


def _max_diff(a, b, x: torch.Tensor, batch: int = 500) -> float:
    with torch.inference_mode():
        return max((a(x[i:i + batch]) - b(x[i:i + batch])).abs().max().item() for i in range(0, len(x), batch))


@pytest.fixture(scope="module")
def images():
    return load_fmnist("test")[0][:1000]


@pytest.fixture(scope="module")
def mbv3_table():
    """(supernet, SharedWeights, [(id, bn_state, shared module)]) for the 7 shipped table points."""
    table = load_table(MBV3_TABLE)
    sn, _ = load_supernet(resolve_checkpoint(MBV3_TABLE, table), family=table.supernet.family)
    sn.eval()
    shared = SharedWeights(sn)
    points = []
    for p in (q for q in table.points if q.graph_variant == "eager"):
        bn = load_bn_stats(resolve_bn_stats(MBV3_TABLE, p), p.id)
        points.append((p.id, bn, shared.module(p.id, bn)))
    return sn, shared, points


@pytest.fixture(scope="module")
def vit():
    sn, _ = load_supernet(VIT_CKPT)
    return sn.eval(), SharedWeights(sn.eval())


def test_mbv3_table_points_equal_extract(mbv3_table, images):
    sn, _, points = mbv3_table
    assert len(points) == 7
    for sid, bn, module in points:
        private = sn.extract(sid)
        load_bn_state(private, bn)
        x = preprocess(images[:FULL], sn.decode(sid).resolution)
        assert _max_diff(module, private, x) <= TOL, sid
        assert _max_diff(module, private, x[:8], batch=1) <= TOL, sid  # the batch-1 (mm/mv) path


def test_vit_points_equal_extract(vit, images):
    sn, shared = vit
    ids = ["vit-r16-w48-h2m2.h2m2", "vit-r28-w64-h3m3.h3m3.h3m3.h3m3",
           "vit-r32-w96-h4m4.h4m4.h4m4.h4m4.h4m4.h4m4", "vit-r20-w64-h2m4.h4m2.h3m3"]
    for sid in ids:
        module, private = shared.module(sid), sn.extract(sid)
        x = preprocess(images[:FULL if "h4m4" not in sid else FEW], sn.decode(sid).resolution)
        assert _max_diff(module, private, x) <= TOL, sid
        assert _max_diff(module, private, x[:4], batch=1) <= TOL, sid


def test_conv_stem_vit_shares_its_stem_and_equals_extract(images):
    """The 28-px ViT preset tokenises with a conv stem: its shared forms alias the stem too."""
    from dynofa_ros.supernet.checkpoint import build_supernet
    from dynofa_ros.supernet.configs import preset_config

    torch.manual_seed(0)
    sn = build_supernet("elastic_vit", preset_config("elastic_vit", "fmnist28")).eval()
    shared = SharedWeights(sn)
    rng = random.Random(4)
    for spec in (sn.smallest(), sn.random_spec(rng), sn.largest()):
        module = shared.module(spec)
        x = preprocess(images[:FEW], spec.resolution)
        assert _max_diff(module, sn.extract(spec), x) <= TOL, spec.encode()
        assert module.stem[0].weight.data_ptr() == sn.stem[0].weight.data_ptr()


@pytest.mark.skipif(not PRESET28.exists(), reason="28-px preset checkpoint not built on this machine")
def test_preset28_largest_smallest_equal_extract(images):
    sn, _ = load_supernet(PRESET28)
    shared = SharedWeights(sn.eval())
    for spec in (sn.largest(), sn.smallest()):
        x = preprocess(images[:FEW if spec == sn.largest() else FULL], spec.resolution)
        assert _max_diff(shared.module(spec), sn.extract(spec), x) <= TOL, spec.encode()


def test_mbv3_random_specs_with_supernet_bn_stats(mbv3_table, images):
    """bn_state=None copies the supernet's current statistics, like extract."""
    sn, shared, _ = mbv3_table
    rng = random.Random(3)
    for spec in (sn.random_spec(rng) for _ in range(3)):
        x = preprocess(images[:200], spec.resolution)
        assert _max_diff(shared.module(spec), sn.extract(spec), x) <= TOL, spec.encode()


def test_no_private_weight_copies(mbv3_table, vit):
    """Every parameter lives in the supernet's or the cache's storage; BN statistics are private."""
    for sn, shared, modules in (mbv3_table[0], mbv3_table[1], [m for _, _, m in mbv3_table[2]]), \
            (vit[0], vit[1], [vit[1].module("vit-r24-w64-h3m3.h3m3.h3m3")]):
        weights = {_ptr(p) for p in sn.parameters()} | {_ptr(t) for t in shared.derived_tensors()}
        assert weights <= shared_storage_ptrs(shared)
        stats_seen: set[int] = set()
        for module in modules:
            params = list(module.parameters())
            assert params and all(_ptr(p) in weights for p in params)
            stats = {_ptr(b) for b in module.buffers()}
            assert not stats & shared_storage_ptrs(shared) and not stats & stats_seen
            stats_seen |= stats
            assert private_bytes(module, shared) == sum(b.untyped_storage().nbytes() for b in module.buffers())


def test_derived_kernels_shared_between_points(mbv3_table):
    """Two points using one block at one kernel size read the same transformed kernel."""
    _, shared, points = mbv3_table
    by_id = {sid: m for sid, _, m in points}
    a = by_id["mbv3-r24-k5e6.k5e6.k5e6-k5e6.k5e6.k5e6-k5e6.k5e6.k5e6-k5e6.k5e6.k5e6-k5e6.k5e6.k5e6"]
    b = by_id["mbv3-r28-k5e6.k5e6.k5e6-k5e6.k5e6.k5e6-k5e6.k5e6.k5e6-k5e6.k5e6.k5e6-k5e6.k5e6.k5e6"]
    wa, wb = a.blocks[1].conv.depth_conv.conv.weight, b.blocks[1].conv.depth_conv.conv.weight
    assert wa.data_ptr() == wb.data_ptr()
    assert _ptr(wa) in {_ptr(t) for t in shared.derived_tensors()}


def test_seven_points_within_1_3x_supernet(mbv3_table):
    sn, shared, points = mbv3_table
    sn_bytes = module_bytes(sn)
    total = sn_bytes + shared.derived_bytes() + sum(private_bytes(m, shared) for _, _, m in points)
    assert total <= 1.3 * sn_bytes, (total / sn_bytes, shared.derived_bytes())
    # against what private copies cost (the pool's former layout): at least 3x less
    assert total * 3 < sn_bytes + sum(module_bytes(sn.extract(sid)) for sid, _, _ in points)


def test_concurrent_builds_and_inference(mbv3_table):
    sn, shared, _ = mbv3_table
    rng = random.Random(11)
    specs = [sn.random_spec(rng) for _ in range(4)]
    inputs = {s.encode(): torch.randn(2, 1, s.resolution, s.resolution) for s in specs}
    with torch.inference_mode():
        expected = {s.encode(): sn.extract(s)(inputs[s.encode()]) for s in specs}
    errors: list[str] = []
    active = sn.active

    def worker(spec) -> None:
        sid = spec.encode()
        for _ in range(2):
            module = shared.module(spec)
            with torch.inference_mode():
                if (module(inputs[sid]) - expected[sid]).abs().max().item() > TOL:
                    errors.append(sid)

    threads = [threading.Thread(target=worker, args=(s,)) for s in specs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sn.active == active  # each build re-activated the supernet and restored it


@pytest.mark.parametrize("shape", [(1, 24, 1, 1), (3, 24, 1, 1), (1, 24, 5, 5), (3, 24, 5, 5)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_strided_conv1x1_matches_conv2d(shape, with_bias):
    big = torch.randn(20, 40)
    weight, bias = big[:16, :24], (torch.randn(30)[:16] if with_bias else None)
    assert not weight.is_contiguous()
    x = torch.randn(*shape)
    ref = F.conv2d(x, weight.contiguous()[:, :, None, None], bias)
    with torch.inference_mode():
        out = StridedConv1x1(weight, bias)(x)
    assert out.shape == ref.shape and (out - ref).abs().max().item() <= 1e-5


def test_bn_layers_keep_private_running_stats(mbv3_table):
    """Loading a point's statistics never writes into the supernet's buffers."""
    sn, shared, points = mbv3_table
    before = {k: v.clone() for k, v in sn.state_dict().items() if "running" in k}
    sid, bn, _ = points[0]
    module = shared.module(sid, bn)
    assert bn_layers(module)
    after = sn.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_rejects_unknown_supernet():
    with pytest.raises(TypeError):
        SharedWeights(torch.nn.Linear(2, 2))
