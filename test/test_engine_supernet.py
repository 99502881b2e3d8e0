"""Supernet interface: spec ids, validation errors, parity with the PyPI ofa package, ViT extraction."""
import random

import pytest
import torch

from dynofa_ros.supernet import SpecError
from dynofa_ros.supernet.elastic_vit import ElasticViTSupernet, fmnist_vit_config
from dynofa_ros.supernet.ofa_mbv3 import MBv3Spec, OFAMobileNetV3Supernet, fmnist_mbv3_config

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def mbv3():
    torch.manual_seed(0)
    return OFAMobileNetV3Supernet(**fmnist_mbv3_config()).eval()


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return ElasticViTSupernet(**fmnist_vit_config()).eval()


@pytest.mark.parametrize("name", ["mbv3", "vit"])
def test_ids_round_trip(name, request):
    net = request.getfixturevalue(name)
    rng = random.Random(3)
    for spec in [net.largest(), net.smallest()] + [net.random_spec(rng) for _ in range(50)]:
        spec_id = net.encode(spec)
        assert net.decode(spec_id) == spec
        assert spec_id == net.decode(spec_id).encode()  # canonical


def test_mbv3_id_is_readable(mbv3):
    assert mbv3.smallest().encode() == "mbv3-r16-k3e3.k3e3-k3e3.k3e3-k3e3.k3e3-k3e3.k3e3-k3e3.k3e3"


@pytest.mark.parametrize("bad, field", [
    ("mbv3-r17-k3e3.k3e3-k3e3.k3e3-k3e3.k3e3-k3e3.k3e3-k3e3.k3e3", "resolution"),
    ("mbv3-r16-k9e3.k3e3-k3e3.k3e3-k3e3.k3e3-k3e3.k3e3-k3e3.k3e3", "stage 0 block 0 kernel"),
    ("mbv3-r16-k3e3.k3e5-k3e3.k3e3-k3e3.k3e3-k3e3.k3e3-k3e3.k3e3", "stage 0 block 1 expand"),
    ("mbv3-r16-k3e3-k3e3.k3e3-k3e3.k3e3-k3e3.k3e3-k3e3.k3e3", "stage 0 depth"),
    ("mbv3-r16-k3e3.k3e3-k3e3.k3e3", "stages"),
    ("mbv3-r16-k3e3.k3x3-k3e3.k3e3-k3e3.k3e3-k3e3.k3e3-k3e3.k3e3", "stage 0 block 1"),
    ("mbv3-rX-k3e3.k3e3-k3e3.k3e3-k3e3.k3e3-k3e3.k3e3-k3e3.k3e3", "resolution"),
    ("vit-r16-w48-h2m2.h2m2", "family"),
    ("", "id"),
])
def test_mbv3_bad_ids_name_the_field(mbv3, bad, field):
    with pytest.raises(SpecError, match=field):
        mbv3.decode(bad)


@pytest.mark.parametrize("bad, field", [
    ("vit-r16-w50-h2m2.h2m2", "embed"),
    ("vit-r16-w48-h2m2", "depth"),
    ("vit-r16-w48-h2m2.h5m2", "layer 1 heads"),
    ("vit-r16-w48-h2m2.h2m9", "layer 1 mlp_ratio"),
    ("vit-r16-w48-h2m2.hxm2", "layer 1 heads"),
    ("vit-r16-h2m2.h2m2", "id"),
])
def test_vit_bad_ids_name_the_field(vit, bad, field):
    with pytest.raises(SpecError, match=field):
        vit.decode(bad)


def test_spec_objects_are_validated(mbv3, vit):
    with pytest.raises(SpecError, match="stage 2 block 0 kernel"):
        stages = [((3, 3), (3, 3))] * 5
        stages[2] = ((4, 3), (3, 3))
        mbv3.set_active(MBv3Spec(16, tuple(stages)))
    with pytest.raises(SpecError, match="family"):
        mbv3.set_active(vit.smallest())


def test_parity_with_ofa_package():
    """Our MBv3 supernet (default = ImageNet w1.0 space) gives ofa's outputs for the same sub-network."""
    from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3

    torch.manual_seed(1)
    ref = OFAMobileNetV3(n_classes=1000, dropout_rate=0.1, width_mult=1.0, ks_list=[3, 5, 7],
                         expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4]).eval()
    ours = OFAMobileNetV3Supernet().eval()
    ours.net.load_state_dict(ref.state_dict())
    rng = random.Random(0)
    for spec in [ours.largest(), ours.random_spec(rng)]:
        spec = MBv3Spec(128, spec.stages)
        arch = ours.to_ofa_arch(spec)
        ref.set_active_subnet(**arch)
        ours.set_active(spec)
        x = torch.randn(2, 3, 128, 128)
        with torch.no_grad():
            expected = ref(x)
            assert torch.equal(ours(x), expected)
            ref_sub = ref.get_active_subnet(preserve_weight=True).eval()
            torch.testing.assert_close(ours.extract(spec)(x), ref_sub(x), rtol=0, atol=0)
            torch.testing.assert_close(ref_sub(x), expected, rtol=1e-4, atol=1e-4)
        assert ours.from_ofa_arch(arch, 128) == spec


def test_vit_extract_matches_supernet(vit):
    rng = random.Random(5)
    for spec in [vit.largest(), vit.smallest(), vit.random_spec(rng), vit.random_spec(rng)]:
        vit.set_active(spec)
        x = torch.randn(3, 1, spec.resolution, spec.resolution)
        with torch.no_grad():
            torch.testing.assert_close(vit.extract(spec)(x), vit(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["mbv3", "vit"])
def test_costs_are_ordered(name, request):
    net = request.getfixturevalue(name)
    small, large = net.cost(net.smallest()), net.cost(net.largest())
    assert 0 < small[0] < large[0] and 0 < small[1] < large[1]
