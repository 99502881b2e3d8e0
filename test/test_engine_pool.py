"""SubnetPool: atomic switching under concurrent inference, BN restore, memory budget, table loading."""
import random
import threading
import time

import pytest
import torch
import torch.nn.functional as F

from dynofa_ros.engine.bn_stats import bn_state, load_bn_state, load_bn_stats, recalibrate_bn, save_bn_stats
from dynofa_ros.engine.pool import SubnetPool
from dynofa_ros.engine.shared import shared_storage_ptrs
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


def _storages(module):
    return {t.untyped_storage().data_ptr() for t in list(module.parameters())}


def test_shared_forms_use_the_supernets_storage_and_budget_applies_to_private_forms(mbv3):
    ids = _ids(mbv3, 3, 2)
    fused = [i + "@fused" for i in ids]
    one = sum(t.numel() * t.element_size() for t in mbv3.extract(ids[1]).state_dict().values())
    pool = SubnetPool(mbv3, [(i, "eager", None) for i in ids] + [(f, "fused", None) for f in fused],
                      device="cpu", memory_budget_mb=one / 2**20 * 1.05)
    assert pool.wait_ready(60)
    supernet = _storages(mbv3) | shared_storage_ptrs(pool.shared)
    for i in ids:  # every shared form is resident and owns no weight of its own
        assert i in pool.materialised_ids() and _storages(pool.module(i)) <= supernet
    report = pool.memory_report()
    private = sum(r["weight_bytes"] for k, r in report.items() if not r["shared"] and r["materialised"])
    assert 0 < private <= one * 1.05  # the budget holds the private copies only
    pool.switch(fused[1])
    assert pool.wait_ready(60) and pool.active_subnet_id() == fused[1]
    assert not _storages(pool.module(fused[1])) & supernet  # a folded variant holds its own copy


def test_switch_never_builds_under_the_lock_and_the_shared_form_serves_meanwhile(mbv3, monkeypatch):
    import dynofa_ros.engine.pool as pool_module

    spec_id = _ids(mbv3, 3, 6)[2]
    pool = SubnetPool(mbv3, [(spec_id, "eager", None), (spec_id + "@fused", "fused", None)], device="cpu",
                      memory_budget_mb=0.0)  # nothing private at start-up
    assert pool.wait_ready(60) and pool.memory_report()[spec_id + "@fused"]["materialised"] is False
    real, seen = pool_module.make_variant, {}
    release = threading.Event()

    def slow_variant(module, variant, **kw):
        seen["lock_held"] = pool._lock.locked()
        seen["thread"] = threading.current_thread().name
        release.wait(10)
        return real(module, variant, **kw)

    monkeypatch.setattr(pool_module, "make_variant", slow_variant)
    r = pool.input_resolution(spec_id)
    x = torch.randn(1, 1, r, r)
    t0 = time.perf_counter()
    pool.switch(spec_id + "@fused")
    assert time.perf_counter() - t0 < 0.05  # the switch returned at once
    _, key = pool.infer(x)
    assert key == spec_id and pool.requested_subnet_id() == spec_id + "@fused"  # shared form serves
    release.set()
    assert pool.wait_ready(60)
    _, key = pool.infer(x)
    assert key == spec_id + "@fused"
    assert seen == {"lock_held": False, "thread": seen["thread"]} and seen["thread"].startswith("subnet-pool")
    pool.close()


def test_budget_prebuilds_what_fits_by_slice_size(mbv3):
    """The start-up estimate is the slices a private copy takes, not the supernet storages behind the
    shared form's views: a budget that fits two private forms gets two built."""
    from dynofa_ros.engine.graph_variants import extent_bytes, module_bytes

    ids = _ids(mbv3, 4, 9)
    sizes = [extent_bytes(mbv3.extract(i)) for i in ids]
    assert all(s < module_bytes(mbv3) / 2 for s in sizes[:1])  # a slice is far below the storage
    budget = (sizes[0] + sizes[1]) * 1.05
    pool = SubnetPool(mbv3, [(i, "eager", None) for i in ids] + [(i + "@fused", "fused", None) for i in ids],
                      device="cpu", memory_budget_mb=budget / 2**20)
    assert pool.wait_ready(60)
    built = [k for k, r in pool.memory_report().items() if not r["shared"] and r["materialised"]]
    assert ids[0] + "@fused" in built and ids[1] + "@fused" in built
    assert sum(pool.memory_report()[k]["weight_bytes"] for k in built) <= budget
    pool.close()


def test_the_requested_form_is_built_before_older_queued_ones(mbv3, monkeypatch):
    ids = _ids(mbv3, 4, 11)
    fused = [i + "@fused" for i in ids]
    pool = SubnetPool(mbv3, [(i, "eager", None) for i in ids] + [(f, "fused", None) for f in fused],
                      device="cpu", memory_budget_mb=0.0)
    assert pool.wait_ready(60)
    real_build, order, release = pool._build, [], threading.Event()

    def recording_build(entry):
        order.append(entry.key)
        if len(order) == 1:
            release.wait(10)  # hold the first build so the others queue behind it
        return real_build(entry)

    monkeypatch.setattr(pool, "_build", recording_build)
    pool.set_materialised(fused[:3])   # queued oldest first
    deadline = time.monotonic() + 10
    while not order and time.monotonic() < deadline:
        time.sleep(0.01)
    assert order == [fused[0]]
    pool.switch(fused[2])              # the requested form jumps the queue
    release.set()
    assert pool.wait_ready(60)
    assert order == [fused[0], fused[2], fused[1]]
    assert pool.active_subnet_id() == fused[2]
    pool.close()


def test_set_materialised_builds_and_drops_private_forms(mbv3):
    ids = _ids(mbv3, 3, 7)
    fused = [i + "@fused" for i in ids]
    pool = SubnetPool(mbv3, [(i, "eager", None) for i in ids] + [(f, "fused", None) for f in fused],
                      device="cpu", memory_budget_mb=0.0)
    assert pool.wait_ready(60)
    resident = lambda: {k for k, r in pool.memory_report().items() if r["materialised"] and not r["shared"]}
    assert resident() == set()
    assert pool.set_materialised([fused[0], fused[2], ids[1], "nonsense"]) == ["nonsense"]
    assert pool.wait_ready(60) and resident() == {fused[0], fused[2]}
    pool.set_materialised([fused[1]])
    assert pool.wait_ready(60) and resident() == {fused[1]}
    assert set(ids) <= set(pool.materialised_ids())  # shared forms are never dropped


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
    out, _ = pool.infer(x)  # the shared form: same weights, 1x1 convs as strided matmuls
    torch.testing.assert_close(out, fresh(x), rtol=0, atol=1e-5)
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
    assert pool.wait_ready(60)  # the private form builds in the background
    b, key = pool.infer(x)
    assert key == spec_id + "@fused"
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
