"""Unsafe or misleading images against a real perception process (issue 13, items 1 and 2).

Each bad frame must give a clear, short warning in the node's log, no result, and must not stop the next
good frame from being served promptly: decompression bombs are rejected from their header, other formats
by their magic bytes, depth data as not-intensity, and 16-bit PNGs are scaled to the 8-bit answer.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

from image_samples import OTHER_FORMATS, encode_png, png_bomb
from test_perception_node import _image_from_dataset, _raw, _result_for, _stamp, _start_node, _wait_ready

pytestmark = pytest.mark.ros

MAX_LOG_LINE = 400  # a warning quotes at most 64 characters of any input string
SERVE_AFTER_BAD_S = 10.0  # the good frame after a bomb (before the fix: 30 s of blocked inference)


def _compressed(fmt: str, data: bytes, i: int):
    from sensor_msgs.msg import CompressedImage
    msg = CompressedImage(format=fmt, data=data)
    msg.header.stamp, msg.header.frame_id = _stamp(i), f'cam/{i}'
    return msg


def _send_until_logged(node, publish, warning: str, timeout: float = 15.0) -> str:
    """Publish the bad frame until its warning is in the log (warnings are rate-limited per kind)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        publish()
        lines = [line for line in node.output().splitlines() if warning in line]
        if lines:
            return lines[0]
        time.sleep(0.5)
    raise AssertionError(f'no warning {warning!r} in the log:\n{node.output()[-3000:]}')


def _check_cases(node, probe, cases, send_bad, send_good, reference) -> None:
    """Each case: its warning is logged (short), then a good frame is served with the reference class."""
    for n, (what, bad, warning) in enumerate(cases):
        line = _send_until_logged(node, lambda: send_bad(bad, 100 + n), warning)
        assert len(line) < MAX_LOG_LINE, f'{what}: {len(line)} characters logged'
        t0 = time.monotonic()
        send_good(200 + n)
        result = _result_for(probe, 200 + n)
        assert time.monotonic() - t0 < SERVE_AFTER_BAD_S, what
        assert result.class_ids[0] == reference.class_ids[0], what
    served = {r.header.stamp.sec - 1000 for r in probe.received('inference_result')}
    assert not served & set(range(100, 100 + len(cases))), 'a bad frame was classified'
    assert max(len(line) for line in node.output().splitlines()) < MAX_LOG_LINE
    assert node.running()


def _subscribe(probe):
    from dynofa_ros.msg import InferenceResult, WorkloadStatus
    probe.subscribe(InferenceResult, 'inference_result', qos=100)
    probe.subscribe(WorkloadStatus, 'workload_status')


def test_compressed_bombs_foreign_formats_and_mislabelled_depth_are_rejected(ros_graph, probe):
    from sensor_msgs.msg import CompressedImage
    node = _start_node(ros_graph, transport='compressed', qos_reliability='reliable', qos_depth=10)
    _subscribe(probe)
    publisher = probe.publisher(CompressedImage, 'image/compressed')
    grey = _image_from_dataset()[..., 0]
    good_png = encode_png(grey)
    reference = _wait_ready(probe, publisher, _compressed('mono8; png compressed mono8', good_png, 0))
    cases = [
        ('30000x30000 grey PNG bomb (875 KB)', ('png', png_bomb(30000, 30000, filler_bytes=875_000)),
         'oversized PNG 30000x30000 = 900000000 pixels > max_pixels 16777216'),
        ('30000x30000 RGB PNG bomb (2.6 MB)',
         ('bgr8; png compressed bgr8', png_bomb(30000, 30000, colour_type=2, filler_bytes=2_600_000)),
         'oversized PNG 30000x30000'),
        ('float TIFF labelled png', ('png', OTHER_FORMATS['TIFF']), 'format says png but the data is TIFF'),
        ('PFM labelled jpeg', ('bgr8; jpeg compressed bgr8', OTHER_FORMATS['PFM']),
         'format says jpeg but the data is PFM'),
        ('16-bit PNG labelled bgr8', ('bgr8; png compressed bgr8', encode_png(grey.astype(np.uint16) * 257)),
         'format says bgr8 but the data is a 16-bit grey PNG'),
        ('16UC1 depth as PNG', ('16UC1; png compressed mono16', encode_png(grey.astype(np.uint16) * 257)),
         "depth source encoding '16UC1' is not intensity"),
        ('1 MiB format string', ('f' * 2**20, good_png), "unsupported compressed format '" + 'f' * 64 + "...'"),
    ]
    _check_cases(node, probe, cases, lambda bad, i: publisher.publish(_compressed(*bad, i)),
                 lambda i: publisher.publish(_compressed('png', good_png, i)), reference)


def test_16_bit_png_gives_the_8_bit_answer(ros_graph, probe):
    from sensor_msgs.msg import CompressedImage
    _start_node(ros_graph, transport='compressed', qos_reliability='reliable', qos_depth=10)
    _subscribe(probe)
    publisher = probe.publisher(CompressedImage, 'image/compressed')
    rgb = _image_from_dataset(index=3)
    reference = _wait_ready(probe, publisher, _compressed('rgb8; png compressed bgr8', encode_png(rgb), 0))
    wide = {'mono16; png compressed mono16': rgb[..., 0].astype(np.uint16) * 257,
            'rgb16; png compressed bgr16': rgb.astype(np.uint16) * 257, 'png': rgb[..., 0].astype(np.uint16) * 257}
    for i, (fmt, pixels) in enumerate(wide.items(), start=1):
        publisher.publish(_compressed(fmt, encode_png(pixels), i))
        result = _result_for(probe, i)
        assert result.class_ids[0] == reference.class_ids[0], fmt
        assert result.scores[0] == pytest.approx(reference.scores[0], abs=0.01), fmt


def test_raw_depth_oversized_and_huge_encoding_are_rejected(ros_graph, probe):
    from sensor_msgs.msg import Image
    rgb = _image_from_dataset()
    node = _start_node(ros_graph, qos_reliability='reliable', qos_depth=10, max_pixels=rgb.shape[0] * rgb.shape[1])
    _subscribe(probe)
    publisher = probe.publisher(Image, 'image')
    reference = _wait_ready(probe, publisher, _raw(rgb, 'rgb8', 0))
    grey = np.ascontiguousarray(rgb[..., :1])

    def raw(pixels: np.ndarray, encoding: str, extra: bytes = b''):
        def build(i: int):
            msg = _raw(pixels, encoding, i)
            msg.data = bytes(msg.data) + extra
            return msg
        return build
    cases = [
        ('16UC1 depth', raw(grey.astype(np.uint16) * 257, '16UC1'), "depth encoding '16UC1' is not intensity"),
        ('32FC1 depth', raw(grey.astype(np.float32) / 255, '32FC1'), "depth encoding '32FC1' is not intensity"),
        ('1 MiB encoding', raw(rgb, 'e' * 2**20), "unsupported encoding '" + 'e' * 64 + "...'"),
        ('one row over max_pixels', raw(np.concatenate([rgb, rgb[:1]]), 'rgb8'),
         f'oversized image 96x97 = {96 * 97} pixels > max_pixels {96 * 96}'),
        ('data longer than step*height', raw(rgb, 'rgb8', b'\0' * 7), 'expected step*height'),
    ]
    _check_cases(node, probe, cases, lambda build, i: publisher.publish(build(i)),
                 lambda i: publisher.publish(_raw(rgb, 'rgb8', i)), reference)


def test_max_pixels_must_be_positive(ros_graph):
    node = _start_node(ros_graph, max_pixels=0)
    assert node.process.wait(60) == 1
    log = node.output()
    assert 'max_pixels must be > 0' in log and 'Traceback' not in log, log
