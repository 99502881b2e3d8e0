"""The perception node as a real process: every input type, bad input, switches mid-stream, overload."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest

from conftest import legacy_table

pytestmark = pytest.mark.ros

WORKLOAD = 'front_camera'


def _image_from_dataset(index: int = 0, size: int = 96) -> np.ndarray:
    """A Fashion-MNIST test image, upscaled, as HxWx3 uint8 (grey in all channels)."""
    import torch
    import torch.nn.functional as F

    from dynofa_ros.datasets import load_fmnist
    images, _ = load_fmnist('test')
    big = F.interpolate(images[index:index + 1].float().view(1, 1, 28, 28), size=(size, size),
                        mode='bilinear', align_corners=False)
    grey = big.clamp(0, 255).to(torch.uint8)[0, 0].numpy()
    return np.repeat(grey[..., None], 3, axis=2)


def _start_node(ros_graph, name: str = 'perception', **params):
    parameters = {'workload': WORKLOAD, 'operating_points': str(legacy_table()), 'threads': 1,
                  'status_rate_hz': 10.0, **params}
    return ros_graph.start('perception_node', name=name, parameters=parameters)


def _stamp(i: int):
    from builtin_interfaces.msg import Time
    return Time(sec=1000 + i, nanosec=i)


def _raw(pixels: np.ndarray, encoding: str, i: int):
    from dynofa_ros.nodes.image_conversion import array_to_image
    msg = array_to_image(pixels, encoding)
    msg.header.stamp, msg.header.frame_id = _stamp(i), f'cam/{i}'
    return msg


def _compressed(pixels: np.ndarray, fmt: str, i: int):
    import cv2
    from sensor_msgs.msg import CompressedImage
    ok, blob = cv2.imencode('.jpg' if fmt == 'jpeg' else '.png', np.ascontiguousarray(pixels[..., ::-1]))
    assert ok
    msg = CompressedImage(format=f'bgr8; {fmt} compressed bgr8', data=blob.tobytes())
    msg.header.stamp, msg.header.frame_id = _stamp(i), f'cam/{i}'
    return msg


def _result_for(probe, i: int, timeout: float = 30.0):
    def find():
        return next((r for r in probe.received('inference_result') if r.header.stamp.sec == 1000 + i), None)
    return probe.wait_for(find, timeout, f'the result of frame {i}')


def _latest_status(probe):
    return probe.wait_for(lambda: (s := probe.received('workload_status')) and s[-1], 10, 'a status')


def _wait_ready(probe, publisher, msg):
    """Publish a first frame until its result comes back (discovery + model warm-up)."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        publisher.publish(msg)
        try:
            return _result_for(probe, msg.header.stamp.sec - 1000, timeout=1.0)
        except AssertionError:
            continue
    raise AssertionError('the perception node never served a frame')


@pytest.fixture
def raw_and_compressed_nodes(ros_graph, probe):
    from sensor_msgs.msg import CompressedImage, Image

    from dynofa_ros.msg import InferenceResult, WorkloadStatus
    _start_node(ros_graph, 'perception_raw', qos_reliability='reliable', qos_depth=10)
    _start_node(ros_graph, 'perception_compressed', transport='compressed', qos_reliability='reliable',
                qos_depth=10, workload='compressed_camera')
    probe.subscribe(InferenceResult, 'inference_result')
    probe.subscribe(WorkloadStatus, 'workload_status')
    return probe.publisher(Image, 'image'), probe.publisher(CompressedImage, 'image/compressed')


def test_every_encoding_and_transport_gives_the_same_answer_with_the_input_header(raw_and_compressed_nodes,
                                                                                  probe):
    raw_pub, compressed_pub = raw_and_compressed_nodes
    rgb = _image_from_dataset()
    reference = _wait_ready(probe, raw_pub, _raw(rgb, 'rgb8', 0))
    assert reference.workload == WORKLOAD and len(reference.class_ids) == 3
    assert reference.labels[0] and 0.0 < reference.scores[0] <= 1.0
    assert reference.header.frame_id == 'cam/0'
    variants = {
        'bgr8': rgb[..., ::-1], 'rgba8': np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]),
        'bgra8': np.dstack([rgb[..., ::-1], np.zeros(rgb.shape[:2], np.uint8)]), 'mono8': rgb[..., :1],
        'mono16': rgb[..., :1].astype(np.uint16) * 257,
    }
    for i, (encoding, pixels) in enumerate(variants.items(), start=1):
        raw_pub.publish(_raw(np.ascontiguousarray(pixels), encoding, i))
        result = _result_for(probe, i)
        assert result.header.frame_id == f'cam/{i}' and result.header.stamp.nanosec == i, encoding
        assert result.class_ids[0] == reference.class_ids[0], encoding
        assert result.scores[0] == pytest.approx(reference.scores[0], abs=0.02), encoding
    _wait_ready(probe, compressed_pub, _compressed(rgb, 'png', 10))
    png = _result_for(probe, 10)
    assert png.class_ids[0] == reference.class_ids[0] and png.workload == 'compressed_camera'
    compressed_pub.publish(_compressed(rgb, 'jpeg', 11))
    assert _result_for(probe, 11).class_ids[0] == reference.class_ids[0]


def test_bad_input_is_counted_and_the_next_good_frame_is_served(raw_and_compressed_nodes, probe, ros_graph):
    from dynofa_ros.msg import PerformanceTarget, SubnetDecision
    raw_pub, compressed_pub = raw_and_compressed_nodes
    decisions = probe.publisher(SubnetDecision, 'subnet_decision', latched=True)
    targets = probe.publisher(PerformanceTarget, 'performance_target')
    rgb = _image_from_dataset()
    _wait_ready(probe, raw_pub, _raw(rgb, 'rgb8', 0))
    _wait_ready(probe, compressed_pub, _compressed(rgb, 'png', 1))  # both nodes up before bad input

    wrong_encoding = _raw(rgb, 'rgb8', 100)
    wrong_encoding.encoding = 'yuv422_yuy2'
    truncated = _raw(rgb, 'rgb8', 101)
    truncated.data = truncated.data[: len(truncated.data) // 2]
    empty = _raw(rgb, 'rgb8', 102)
    empty.height = empty.width = 0
    empty.data = b''
    corrupt = _compressed(rgb, 'jpeg', 103)
    corrupt.data = corrupt.data[:60]
    bad_inputs = [
        lambda: raw_pub.publish(wrong_encoding), lambda: raw_pub.publish(truncated),
        lambda: raw_pub.publish(empty), lambda: compressed_pub.publish(corrupt),
        lambda: decisions.publish(SubnetDecision(workload=WORKLOAD, subnet_id='mbv3-r999-nonsense')),
        lambda: decisions.publish(SubnetDecision(workload='someone_else', subnet_id='whatever')),
        lambda: targets.publish(PerformanceTarget(workload=WORKLOAD, max_latency_ms=math.nan)),
    ]
    for n, send_bad in enumerate(bad_inputs):
        send_bad()
        good = 200 + n
        raw_pub.publish(_raw(rgb, 'rgb8', good))
        assert _result_for(probe, good).header.frame_id == f'cam/{good}'
        if n == 3:  # the compressed node also keeps serving after its corrupt JPEG
            compressed_pub.publish(_compressed(rgb, 'png', 300))
            _result_for(probe, 300)
    for stamp in (100, 101, 102, 103):
        assert not any(r.header.stamp.sec == 1000 + stamp for r in probe.received('inference_result'))

    def statuses_settled():
        raw = [s for s in probe.received('workload_status') if s.workload == WORKLOAD]
        comp = [s for s in probe.received('workload_status') if s.workload == 'compressed_camera']
        return raw and comp and raw[-1].frames_rejected == 3 and comp[-1].frames_rejected == 1 \
            and raw[-1].frames_processed >= 8 and (raw[-1], comp[-1])
    raw_status, _ = probe.wait_for(statuses_settled, 10, 'rejected counters in the status')
    assert raw_status.frames_received >= raw_status.frames_processed + raw_status.frames_rejected
    log = ros_graph.nodes[0].output()
    for warning in ("unsupported encoding 'yuv422_yuy2'", 'expected step*height', 'zero-sized image',
                    "unknown sub-network 'mbv3-r999-nonsense'", "workload 'someone_else'",
                    'max_latency_ms must be finite'):  # the shared target rules: NaN rejected
        assert warning in log, warning
    assert 'corrupt or undecodable' in ros_graph.nodes[1].output()
    assert ros_graph.nodes[0].running() and ros_graph.nodes[1].running()


def test_switches_mid_stream_give_each_processed_frame_exactly_one_result(ros_graph, probe):
    from sensor_msgs.msg import Image

    from dynofa_ros.msg import InferenceResult, SubnetDecision, WorkloadStatus
    from dynofa_ros.operating_points import load_table
    table = load_table(legacy_table())
    ids = [p.id for p in table.by_latency('cpu')]
    _start_node(ros_graph, qos_reliability='reliable', qos_depth=10)
    probe.subscribe(InferenceResult, 'inference_result', qos=100)
    probe.subscribe(WorkloadStatus, 'workload_status')
    images = probe.publisher(Image, 'image', qos=100)
    decisions = probe.publisher(SubnetDecision, 'subnet_decision', latched=True)
    rgb = _image_from_dataset(size=64)
    _wait_ready(probe, images, _raw(rgb, 'rgb8', 0))

    sent, frames = [], 90
    for i in range(1, frames + 1):  # 3 s at 30 fps, a switch every 0.5 s
        if i % 15 == 0:
            decisions.publish(SubnetDecision(workload=WORKLOAD, subnet_id=ids[(i // 15) % len(ids)],
                                             reason='test'))
        images.publish(_raw(rgb, 'rgb8', i))
        sent.append(i)
        time.sleep(1 / 30)

    def settled():
        status = probe.received('workload_status')
        return status and status[-1].frames_received >= frames + 1 and \
            status[-1].frames_processed + status[-1].frames_dropped == status[-1].frames_received and status[-1]
    status = probe.wait_for(settled, 30, 'every frame processed or dropped')
    results = [r for r in probe.received('inference_result') if r.header.stamp.sec > 1000]
    stamps = [r.header.stamp.sec - 1000 for r in results]
    assert len(stamps) == len(set(stamps)), 'a frame produced two results'
    assert set(stamps) <= set(sent)
    assert all(r.header.stamp.nanosec == r.header.stamp.sec - 1000 for r in results)
    assert status.frames_processed == len(results) + 1  # + the warm-up frame
    assert {r.subnet_id for r in results} <= set(ids) and len({r.subnet_id for r in results}) >= 3


def test_a_node_started_after_the_decision_follows_it_at_once(ros_graph, probe):
    """Decisions are latched: a perception node that starts (or restarts) after the manager decided
    serves the decided sub-network from its first frames, without waiting for a refresh."""
    from sensor_msgs.msg import Image

    from dynofa_ros.msg import InferenceResult, SubnetDecision
    from dynofa_ros.operating_points import load_table
    table = load_table(legacy_table())
    decided = next(p.id for p in table.by_latency('cpu') if p.graph_variant == 'eager')  # shared: no build
    assert decided != max(table.points, key=lambda p: p.accuracy).id  # not where a managed node starts
    decisions = probe.publisher(SubnetDecision, 'subnet_decision', latched=True)
    decisions.publish(SubnetDecision(workload=WORKLOAD, subnet_id=decided, reason='before the node'))
    probe.subscribe(InferenceResult, 'inference_result', qos=100)
    images = probe.publisher(Image, 'image', qos=10)
    _start_node(ros_graph)
    rgb = _image_from_dataset(size=64)
    _wait_ready(probe, images, _raw(rgb, 'rgb8', 0))
    images.publish(_raw(rgb, 'rgb8', 1))
    assert _result_for(probe, 1).subnet_id == decided


def test_camera_faster_than_the_model_keeps_latency_bounded_and_counts_drops(ros_graph, probe):
    from dynofa_ros.msg import InferenceResult, WorkloadStatus
    _start_node(ros_graph)
    ros_graph.start('synthetic_camera', parameters={'rate_hz': 200.0, 'size': 480, 'source': 'pattern',
                                                    'count': 8})
    probe.subscribe(InferenceResult, 'inference_result', qos=100)
    probe.subscribe(WorkloadStatus, 'workload_status')
    probe.wait_for(lambda: len(probe.received('inference_result')) > 5, 90, 'results')
    t0 = time.monotonic()
    probe.wait_for(lambda: time.monotonic() - t0 > 4, 6)
    ages = [wall - (r.header.stamp.sec + r.header.stamp.nanosec * 1e-9)
            for wall, r in probe.arrivals('inference_result')]
    status = probe.received('workload_status')[-1]
    assert status.frames_dropped > 0 and status.input_rate_hz > status.output_rate_hz > 0
    # A queue would make the age grow without bound; keep-latest keeps it near one model run.
    assert max(ages[-10:]) < 2.0, f'result age grew to {max(ages[-10:]):.2f} s'
    assert status.latency_p95_ms < 1000


def test_broken_checkpoint_or_table_fails_with_a_clear_error(ros_graph, tmp_path):
    broken = tmp_path / 'broken.pt'
    broken.write_bytes(b'not a checkpoint')
    bad_table = tmp_path / 'table.yaml'
    bad_table.write_text('version: 7\npoints: []\n')
    by_checkpoint = _start_node(ros_graph, 'perception_bad_checkpoint', checkpoint=str(broken))
    by_table = _start_node(ros_graph, 'perception_bad_table', operating_points=str(bad_table))
    for node, expected in ((by_checkpoint, 'not a readable torch checkpoint'), (by_table, 'missing field')):
        assert node.process.wait(60) == 1
        log = node.output()
        assert 'cannot start' in log and expected in log and 'Traceback' not in log, log


def test_subnet_parameter_switches_and_start_up_parameters_are_read_only(ros_graph, probe):
    from dynofa_ros.msg import WorkloadStatus
    from dynofa_ros.operating_points import load_table
    fastest = load_table(legacy_table()).by_latency('cpu')[0].id
    _start_node(ros_graph)
    probe.subscribe(WorkloadStatus, 'workload_status')
    probe.wait_for(lambda: probe.received('workload_status'), 90, 'the perception node')
    assert probe.set_parameters('perception', {'subnet_id': fastest}).successful
    probe.wait_for(lambda: probe.received('workload_status')[-1].active_subnet_id == fastest, 5,
                   'the switch by parameter')
    unknown = probe.set_parameters('perception', {'subnet_id': 'mbv3-r999-nonsense'})
    assert not unknown.successful and 'unknown sub-network' in unknown.reason
    for name, value in (('device', 'cuda'), ('status_rate_hz', 50.0)):
        assert not probe.set_parameters('perception', {name: value}).successful, name
    assert probe.set_parameters('perception', {'top_k': 5}).successful
    assert not probe.set_parameters('perception', {'top_k': 0}).successful
