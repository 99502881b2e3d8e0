"""SubnetPool: atomic switching under concurrent inference, BN restore, memory budget, table loading."""
import random
import threading
import time

import pytest
import torch
import torch.nn.functional as F

from dynofa_ros.engine.bn_stats import bn_state, load_bn_state, load_bn_stats, recalibrate_bn, save_bn_stats
from dynofa_ros.engine.pool import SubnetPool
from dynofa_ros.supernet.elastic_vit import ElasticViTSupernet, fmnist_vit_config
from dynofa_ros.supernet.ofa_mbv3 import OFAMobileNetV3Supernet, fmnist_mbv3_config

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def mbv3():
    torch.manual_seed(0)
    net = OFAMobileNetV3Supernet(**fmnist_mbv3_config()).eval()
    with torch.no_grad():  # distinct, non-trivial BN statistics per layer
        for name, buf in net.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_(0, 0.2)
    return net


def _ids(net, n=3, seed=0):
    rng = random.Random(seed)
    return [net.smallest().encode(), net.largest().encode()] + [net.random_spec(rng).encode() for _ in range(n - 2)]


@pytest.mark.parametrize("family", ["mbv3", "vit"])
def test_switching_during_inference_never_mixes(family, mbv3):
    net = mbv3 if family == "mbv3" else ElasticViTSupernet(**fmnist_vit_config()).eval()
    ids = _ids(net, 3, 1)
    pool = SubnetPool(net, [(i, "eager", None) for i in ids], device="cpu")
    x = torch.randn(2, 1, 32, 32)
    expected = {}
    for i in ids:
        r = pool.input_resolution(i)
        xi = F.interpolate(x, size=(r, r), mode="bilinear", align_corners=False, antialias=32 > r)
        with torch.no_grad():
            expected[i] = pool.module(i)(xi)
    results, stop = [], threading.Event()

    def worker():
        while not stop.is_set():
            results.append(pool.infer(x))

    t = threading.Thread(target=worker)
    t.start()
    rng = random.Random(0)
    try:
        while len(results) < 60 and t.is_alive():
            pool.switch(rng.choice(ids))
            time.sleep(0.001)
    finally:
        stop.set()
        t.join()
    for _ in range(3):
        results.append(pool.infer(x))
    assert len({k for _, k in results}) >= 2
    for out, key in results:  # every output is exactly the output of the one sub-network it names
        assert torch.equal(out, expected[key]), key


def test_unknown_id_and_switch_semantics(mbv3):
    ids = _ids(mbv3, 2)
    pool = SubnetPool(mbv3, [(i, "eager", None) for i in ids], device="cpu", initial=ids[1])
    assert pool.active_subnet_id() == ids[1]
    assert pool.input_resolution() == 32 and pool.input_resolution(ids[0]) == 16
    with pytest.raises(KeyError, match="unknown sub-network"):
        pool.switch("mbv3-r16-nonsense")
    pool.switch(ids[0])
    out, key = pool.infer(torch.randn(1, 1, 16, 16))
    assert key == ids[0] and out.shape == (1, 10)


def test_memory_budget_materialises_on_demand(mbv3):
    ids = _ids(mbv3, 4, 2)
    sizes = {i: sum(p.numel() * 4 for p in mbv3.extract(i).state_dict().values()) for i in ids}
    budget_mb = (sizes[ids[0]] + sizes[ids[2]]) / 2**20 * 1.05
    pool = SubnetPool(mbv3, [(i, "eager", None) for i in ids], device="cpu", memory_budget_mb=budget_mb)
    assert ids[0] in pool.materialised_ids() and ids[1] not in pool.materialised_ids()
    pool.switch(ids[1])  # largest: materialised on demand, others evicted to respect the budget
    assert pool.active_subnet_id() == ids[1] and ids[1] in pool.materialised_ids()
    report = pool.memory_report()
    assert report[ids[1]]["weight_bytes"] > report[ids[0]]["weight_bytes"] > 0
    used = sum(r["weight_bytes"] for r in report.values() if r["materialised"])
    assert used <= budget_mb * 2**20 or pool.materialised_ids() == [ids[1]]


def test_restored_bn_stats_equal_fresh_recalibration(tmp_path, mbv3):
    spec = mbv3.decode(_ids(mbv3, 3, 4)[2])
    calib = [torch.randn(50, 1, spec.resolution, spec.resolution) * 2 + 0.5 for _ in range(4)]
    fresh = mbv3.extract(spec)
    recalibrate_bn(fresh, calib)
    save_bn_stats(tmp_path / "bn.pt", spec.encode(), bn_state(fresh))
    restored = mbv3.extract(spec)
    x = torch.randn(3, 1, spec.resolution, spec.resolution)
    with torch.no_grad():
        assert not torch.allclose(restored(x), fresh(x))
        load_bn_state(restored, load_bn_stats(tmp_path / "bn.pt", spec.encode()))
        assert torch.equal(restored(x), fresh(x))
    pool = SubnetPool(mbv3, [(spec.encode(), "eager", load_bn_stats(tmp_path / "bn.pt"))], device="cpu")
    out, _ = pool.infer(x)
    assert torch.equal(out, fresh(x))
    with pytest.raises(ValueError, match="not 'other'"):
        load_bn_stats(tmp_path / "bn.pt", "other")


def test_fused_variant_matches_eager(mbv3):
    spec_id = _ids(mbv3, 3, 5)[2]
    pool = SubnetPool(mbv3, [(spec_id, "eager", None), (spec_id + "@fused", "fused", None)], device="cpu")
    r = pool.input_resolution(spec_id)
    x = torch.randn(2, 1, r, r)
    pool.switch(spec_id)
    a, _ = pool.infer(x)
    pool.switch(spec_id + "@fused")
    b, key = pool.infer(x)
    assert key == spec_id + "@fused"
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
