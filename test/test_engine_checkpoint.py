"""Checkpoints: official OFA format (current and older key names), project round trip, clear errors."""
import pytest
import torch

from dynofa_ros.supernet import CheckpointError, load_official_ofa_mbv3, load_supernet, save_supernet
from dynofa_ros.supernet.elastic_vit import ElasticViTSupernet, fmnist_vit_config
from dynofa_ros.supernet.ofa_mbv3 import OFAMobileNetV3Supernet, fmnist_mbv3_config

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def ofa_reference():
    from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3

    torch.manual_seed(2)
    net = OFAMobileNetV3(n_classes=1000, dropout_rate=0.1, width_mult=1.0, ks_list=[3, 5, 7],
                         expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4]).eval()
    with torch.no_grad():  # non-trivial BN statistics so a missed buffer would show
        for name, buf in net.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_(0, 0.1)
    return net


def _old_names(state):
    """Older official key names: blocks' ``.conv.`` was ``.mobile_inverted_conv.``."""
    return {k.replace(".conv.", ".mobile_inverted_conv.", 1) if k.startswith("blocks.") else k: v
            for k, v in state.items()}


@pytest.mark.parametrize("rename", [False, True])
def test_official_checkpoint_loads(tmp_path, ofa_reference, rename):
    state = ofa_reference.state_dict()
    if rename:
        state = _old_names(state)
        assert any(".mobile_inverted_conv." in k for k in state)
    path = tmp_path / "ofa_mbv3_d234_e346_k357_w1.0"
    torch.save({"state_dict": state, "epoch": 180}, path)
    net = load_official_ofa_mbv3(path)
    assert net.config()["width_mult"] == 1.0
    spec = net.decode("mbv3-r128-k3e3.k5e4-k7e6.k3e3.k5e4-k3e3.k3e3.k3e3.k3e3-k7e6.k7e6-k5e4.k5e4.k5e4")
    net.set_active(spec)
    ofa_reference.set_active_subnet(**net.to_ofa_arch(spec))
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        assert torch.equal(net(x), ofa_reference(x))


def test_official_loader_rejects_wrong_files(tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"state_dict": {"first_conv.conv.weight": torch.zeros(16, 3, 3, 3)}}, bad)
    with pytest.raises(CheckpointError, match="missing keys"):
        load_official_ofa_mbv3(bad)
    torch.save({"foo": 1}, bad)
    with pytest.raises(CheckpointError, match="official OFA format"):
        load_official_ofa_mbv3(bad)
    with pytest.raises(CheckpointError, match="not found"):
        load_official_ofa_mbv3(tmp_path / "absent.pth")


@pytest.mark.parametrize("make", [lambda: OFAMobileNetV3Supernet(**fmnist_mbv3_config()),
                                  lambda: ElasticViTSupernet(**fmnist_vit_config())])
def test_project_round_trip(tmp_path, make):
    torch.manual_seed(3)
    net = make().eval()
    path = tmp_path / "net.pt"
    save_supernet(net, path, {"note": "round trip"})
    loaded, meta = load_supernet(path)
    assert meta == {"note": "round trip"} and loaded.family == net.family
    assert loaded.config() == net.config()
    spec = net.smallest()
    net.set_active(spec)
    loaded.set_active(spec)
    x = torch.randn(2, 1, spec.resolution, spec.resolution)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))


def test_corrupt_and_mismatched_checkpoints_are_rejected(tmp_path):
    net = OFAMobileNetV3Supernet(**fmnist_mbv3_config())
    good = tmp_path / "good.pt"
    save_supernet(net, good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        load_supernet(truncated)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        load_supernet(garbage)
    with pytest.raises(CheckpointError, match="holds a 'ofa_mbv3' supernet, expected 'elastic_vit'"):
        load_supernet(good, family="elastic_vit")
    payload = torch.load(good, weights_only=True)
    payload["state_dict"]["net.classifier.linear.weight"] = torch.zeros(7, 3)
    del payload["state_dict"]["net.first_conv.conv.weight"]
    torch.save(payload, tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match="missing keys.*shape mismatches"):
        load_supernet(tmp_path / "mismatch.pt")
    torch.save({"state_dict": payload["state_dict"]}, tmp_path / "official_like.pt")
    with pytest.raises(CheckpointError, match="load_official_ofa_mbv3"):
        load_supernet(tmp_path / "official_like.pt")
    payload = torch.load(good, weights_only=True)
    payload["family"] = "resnet"
    torch.save(payload, tmp_path / "family.pt")
    with pytest.raises(CheckpointError, match="unknown supernet family"):
        load_supernet(tmp_path / "family.pt")
