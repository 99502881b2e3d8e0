"""Supernet training loop on a tiny subset: steps run, checkpoints load with weights_only=True, a run
interrupted and resumed from its state file ends where an uninterrupted one does."""
import pytest
import torch

from dynofa_ros.supernet import load_supernet
from dynofa_ros.supernet.training import build_parser, state_path, train

torch.set_num_threads(1)


def _args(out, *extra):
    return build_parser().parse_args(
        ["--family", "ofa_mbv3", "--preset", "fmnist28", "--out", str(out), "--train-images", "192",
         "--batch-size", "32", "--epochs", "1", "--teacher-epochs", "0.2", "--eval-images", "100",
         "--log-every", "1", "--save-every", "2", *extra])


def test_train_resume_matches_uninterrupted(tmp_path):
    straight = tmp_path / "straight.pt"
    meta = train(_args(straight))
    assert meta["steps"] == 6 and meta["random_per_step"] == 2
    assert len(meta["history"]) == 1 and 0.0 <= meta["history"][0]["largest"] <= 1.0
    assert meta["history"][0]["cpu_seconds"] > 0

    resumed = tmp_path / "resumed.pt"
    partial = train(_args(resumed, "--max-steps", "3"))
    assert partial == {"steps_done": 3, "steps": 6}
    net, pmeta = load_supernet(resumed, "ofa_mbv3")  # weights_only=True inside
    assert pmeta["partial"] is True and pmeta["steps_done"] == 3
    state = torch.load(state_path(resumed), map_location="cpu", weights_only=True)
    assert state["step"] == 3 and state["optimizer"]["state"]

    train(_args(resumed))
    a, _ = load_supernet(straight, "ofa_mbv3")
    b, bmeta = load_supernet(resumed, "ofa_mbv3")
    assert "partial" not in bmeta and bmeta["largest"]["id"] == a.largest().encode()
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(va.float(), vb.float(), atol=1e-5), k
    assert straight.stat().st_size < 20e6


def test_resume_with_other_arguments_is_refused(tmp_path):
    out = tmp_path / "m.pt"
    train(_args(out, "--max-steps", "2"))
    with pytest.raises(SystemExit, match="other arguments"):
        train(_args(out, "--seed", "1"))


def test_external_teacher_changes_the_training_and_is_recorded(tmp_path):
    """--distill-from: a finished checkpoint's largest sub-network teaches the largest one; with weight 1 (KD
    only) the weights end elsewhere than a label-only run's, the checkpoint records the teacher, and a
    weight outside (0, 1] is refused."""
    teacher = tmp_path / "teacher.pt"
    train(_args(teacher, "--epochs", "0.4"))
    plain = train(_args(tmp_path / "plain.pt", "--random", "0"))
    taught = train(_args(tmp_path / "taught.pt", "--random", "0", "--distill-from", str(teacher),
                         "--distill-weight", "1.0"))
    assert str(teacher) in taught["method"] and str(teacher) not in plain["method"]
    a, _ = load_supernet(tmp_path / "plain.pt", "ofa_mbv3")
    b, _ = load_supernet(tmp_path / "taught.pt", "ofa_mbv3")
    assert any(not torch.equal(va, vb) for va, vb in zip(a.state_dict().values(), b.state_dict().values()))
    with pytest.raises(SystemExit, match="distill-weight"):
        train(_args(tmp_path / "bad.pt", "--distill-from", str(teacher), "--distill-weight", "0"))


def test_a_chain_of_warm_restarts_records_the_cost_of_every_stage(tmp_path):
    """--init from a checkpoint that was itself a warm restart: total_cpu_seconds covers all three stages."""
    first = train(_args(tmp_path / "a.pt", "--epochs", "0.4"))
    second = train(_args(tmp_path / "b.pt", "--epochs", "0.4", "--init", str(tmp_path / "a.pt")))
    third = train(_args(tmp_path / "c.pt", "--epochs", "0.4", "--init", str(tmp_path / "b.pt")))
    assert second["total_cpu_seconds"] == pytest.approx(second["cpu_seconds"] + first["cpu_seconds"], abs=0.2)
    assert third["total_cpu_seconds"] == pytest.approx(third["cpu_seconds"] + second["total_cpu_seconds"], abs=0.2)
