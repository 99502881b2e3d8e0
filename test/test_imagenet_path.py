"""The ImageNet OFA path end to end: a table naming an official-format OFA MobileNetV3 file, per-sub-network
BN statistics calibrated from a folder of images (`dynofa calibrate`), and a real perception-node process
serving 224x224 camera frames with ImageNet normalisation, centre crop and the 1000 class names.

The official file is written here from ofa's own OFAMobileNetV3 class (random weights, the real keys and
`{'state_dict': ...}` layout); nothing is downloaded.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO

LABELS = REPO / 'config' / 'labels' / 'imagenet1k.txt'
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _official_file(folder: Path) -> Path:
    from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3
    torch.manual_seed(0)
    net = OFAMobileNetV3(n_classes=1000, width_mult=1.0, ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6],
                         depth_list=[2, 3, 4])
    path = folder / 'ofa_mbv3_d234_e346_k357_w1.0'
    torch.save({'state_dict': net.state_dict()}, path)
    return path


def _table(folder: Path, checkpoint: Path) -> tuple[Path, list[str]]:
    from dynofa_ros.operating_points import (LatencyStats, Normalization, OperatingPoint, OperatingPointTable,
                                             SupernetInfo, save_table)
    from dynofa_ros.supernet.ofa_mbv3 import OFAMobileNetV3Supernet
    space = OFAMobileNetV3Supernet(width_mult=1.0)
    ids = [space.encode(space.smallest()).replace('-r128-', '-r160-'), space.encode(space.largest())]
    points = tuple(OperatingPoint(id=i, architecture=i, graph_variant='eager', bn_stats=None,
                                  resolution=space.as_spec(i).resolution, accuracy=acc, mflops=1.0, params_m=1.0,
                                  memory_mb=1.0, latency_ms={'cpu': LatencyStats(ms, ms)})
                   for i, acc, ms in zip(ids, (0.70, 0.79), (10.0, 40.0)))
    info = SupernetInfo(family='ofa_mbv3', checkpoint=str(checkpoint), num_classes=1000,
                        normalization=Normalization(IMAGENET_MEAN, IMAGENET_STD), in_channels=3,
                        labels_file=str(LABELS), crop=0.875)
    path = folder / 'imagenet_ofa.yaml'
    save_table(OperatingPointTable(supernet=info, devices=('cpu',), points=points), path)
    return path, ids


def _photos(folder: Path, n: int = 12) -> Path:
    """Camera-like frames (smooth colour fields with edges), written as JPEG and PNG."""
    import cv2
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        frame = cv2.resize(small, (320, 240), interpolation=cv2.INTER_CUBIC)
        cv2.rectangle(frame, (40 + 5 * i, 30), (200, 150 + i), (255, 255, 255), 3)
        cv2.imwrite(str(folder / f'frame{i:02d}.{"jpg" if i % 2 else "png"}'), frame)
    (folder / 'notes.txt').write_text('not an image')
    (folder / 'broken.jpg').write_bytes(b'\xff\xd8\xff\xe0 truncated')
    return folder


def _calibrate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-m', 'dynofa_ros.cli', 'calibrate', *args], capture_output=True,
                          text=True, timeout=600, cwd='/')


@pytest.fixture(scope='module')
def calibrated(tmp_path_factory):
    folder = tmp_path_factory.mktemp('imagenet')
    checkpoint = _official_file(folder)
    table, ids = _table(folder, checkpoint)
    out = folder / 'imagenet_ofa_calibrated.yaml'
    done = _calibrate(str(table), '--images', str(_photos(folder / 'photos')), '--out', str(out))
    assert done.returncode == 0, done.stderr
    return checkpoint, table, out, ids


def test_table_loads_the_official_file_and_the_labels_file(calibrated):
    from dynofa_ros.engine.pool import SubnetPool
    from dynofa_ros.operating_points import load_table
    checkpoint, table, _, ids = calibrated
    loaded = load_table(table)
    assert len(loaded.supernet.labels) == 1000 and loaded.supernet.labels[0] == 'tench'
    assert loaded.supernet.crop == 0.875
    pool = SubnetPool.from_table(table, device='cpu', warmup=False)
    pool.switch(ids[1])
    logits, key = pool.infer(torch.zeros(1, 3, 224, 224))
    assert logits.shape == (1, 1000) and key == ids[1]


def test_calibration_writes_per_subnetwork_statistics(calibrated):
    from dynofa_ros.engine.bn_stats import load_bn_stats
    from dynofa_ros.operating_points import load_table, resolve_bn_stats
    from dynofa_ros.supernet.checkpoint import load_official_ofa_mbv3
    checkpoint, _, out, ids = calibrated
    table = load_table(out)
    supernet = load_official_ofa_mbv3(checkpoint)
    for point in table.points:
        path = resolve_bn_stats(out, point)
        assert path is not None and path.is_file()
        state = load_bn_stats(path, point.id)
        module = supernet.extract(supernet.as_spec(point.id))
        fresh = dict(module.named_buffers())
        first = next(k for k in state if k.endswith('running_mean'))
        assert not torch.allclose(state[first], fresh[first]), 'statistics were not re-estimated'
        assert torch.isfinite(state[first]).all()


def test_calibrate_refuses_bad_sources_in_one_line(calibrated, tmp_path):
    _, table, _, _ = calibrated
    (tmp_path / 'empty').mkdir()
    for args, expected in (([str(tmp_path / 'empty')], 'no .jpg/.jpeg/.png images'), ([], 'either --images')):
        done = _calibrate(str(table), *(['--images', *args] if args else []))
        assert done.returncode == 1 and expected in done.stderr and 'Traceback' not in done.stderr, done.stderr


@pytest.mark.ros
def test_perception_node_serves_the_official_file_on_224px_frames(calibrated, ros_graph, probe):
    from dynofa_ros.msg import InferenceResult
    from dynofa_ros.nodes.image_conversion import array_to_image
    from sensor_msgs.msg import Image
    _, _, out, ids = calibrated
    names = LABELS.read_text().split('\n')
    probe.subscribe(InferenceResult, 'inference_result')
    images = probe.publisher(Image, 'image')
    ros_graph.start('perception_node', name='perception',
                    parameters={'operating_points': str(out), 'workload': 'front_camera', 'top_k': 5,
                                'qos_reliability': 'reliable'})
    probe.wait_for(lambda: probe.node.count_subscribers('image') > 0, 120, 'perception subscribed')
    frame = np.random.default_rng(1).integers(0, 256, (224, 224, 3), dtype=np.uint8)

    def served():
        msg = array_to_image(frame, 'rgb8')
        msg.header.frame_id = 'camera'
        images.publish(msg)
        return probe.received('inference_result')
    results = probe.wait_for(served, 120, 'an inference result')
    result = results[-1]
    assert result.header.frame_id == 'camera' and result.subnet_id in ids
    assert len(result.class_ids) == 5 and all(0 <= c < 1000 for c in result.class_ids)
    assert list(result.labels) == [names[c] for c in result.class_ids]


def test_search_writes_a_table_for_the_official_file_that_calibrates(calibrated, tmp_path):
    """profile (one resolution) -> search --table-out -> calibrate: the chain docs/jetson_procedure.md gives."""
    from dynofa_ros.operating_points import load_table
    predictor = REPO.parent / 'shared' / 'data' / 'ofa' / 'acc_predictor.pth'
    if not predictor.exists():
        pytest.skip(f"OFA's acc_predictor.pth not found at {predictor}")
    checkpoint = calibrated[0]
    cli = [sys.executable, '-m', 'dynofa_ros.cli']
    run = lambda *a: subprocess.run([*cli, *a], capture_output=True, text=True, timeout=600, cwd='/')  # noqa: E731
    done = run('profile', '--official', '--checkpoint', str(checkpoint), '--resolutions', '160', '--lut',
               str(tmp_path / 'lut'), '--random', '0', '--runs', '3', '--warmup', '1')
    assert done.returncode == 0, done.stderr
    table = tmp_path / 'front.yaml'
    done = run('search', '--ofa-predictor', str(predictor), '--ofa-lut', str(tmp_path / 'lut'), '--checkpoint',
               str(checkpoint), '--n-limits', '2', '--generations', '5', '--population', '20', '--table-out', str(table))
    assert done.returncode == 0, done.stderr
    written = load_table(table)
    assert written.supernet.crop == 0.875 and len(written.supernet.labels) == 1000
    assert all(p.bn_stats is None and p.latency_ms for p in written.points)
    done = _calibrate(str(table), '--images', str(_photos(tmp_path / 'photos', n=4)))
    assert done.returncode == 0, done.stderr
    assert all(p.bn_stats for p in load_table(table).points)


@pytest.mark.parametrize('topic', ['/camera/image', '/camera/image/compressed'])
def test_calibrate_from_a_bag_image_topic(calibrated, tmp_path, topic):
    """Raw and JPEG frames of a rosbag (the player tests' MCAP fixture) calibrate like a folder."""
    from bag_fixtures import IMAGE, JPEG, TEMPERATURE, recording, write_versioned_bag
    from dynofa_ros.operating_points import load_table
    assert topic in (IMAGE, JPEG)
    _, table, _, _ = calibrated
    bag = tmp_path / 'drive'
    write_versioned_bag(bag, 9, 'mcap', recording(frames=6, topics=(IMAGE, JPEG, TEMPERATURE)))
    out = tmp_path / 'from_bag.yaml'
    done = _calibrate(str(table), '--bag', str(bag), '--topic', topic, '--out', str(out))
    assert done.returncode == 0, done.stderr
    assert 'on 6 images' in done.stdout and all(p.bn_stats for p in load_table(out).points)
    done = _calibrate(str(table), '--bag', str(bag), '--topic', TEMPERATURE, '--out', str(out))
    assert done.returncode == 1 and 'not images' in done.stderr and 'Traceback' not in done.stderr
