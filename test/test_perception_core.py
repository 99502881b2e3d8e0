"""ROS-free perception pieces: decoding every encoding, bad input, pre-processing, keep-latest serving."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from dynofa_ros.perception.image_codec import ImageDecodeError, decode_compressed, decode_raw
from dynofa_ros.perception.preprocess import Preprocessor
from dynofa_ros.perception.serving import InferenceWorker, LatestFrameSlot
from dynofa_ros.perception.stats import LatencyWindow, RateMeter

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)


def _pack(pixels: np.ndarray, pad: int = 0) -> tuple[bytes, int]:
    """Row-padded bytes and step, like a camera driver with aligned rows."""
    rows = pixels.reshape(pixels.shape[0], -1).view(np.uint8)
    padded = np.concatenate([rows, np.zeros((rows.shape[0], pad), np.uint8)], axis=1)
    return padded.tobytes(), padded.shape[1]


@pytest.mark.parametrize('encoding,pixels', [
    ('rgb8', RGB), ('bgr8', RGB[..., ::-1]),
    ('rgba8', np.dstack([RGB, np.full(RGB.shape[:2], 255, np.uint8)])),
    ('bgra8', np.dstack([RGB[..., ::-1], np.full(RGB.shape[:2], 9, np.uint8)])),
])
@pytest.mark.parametrize('pad', [0, 3])
def test_colour_encodings_decode_to_rgb_honouring_step(encoding, pixels, pad):
    data, step = _pack(np.ascontiguousarray(pixels), pad)
    out = decode_raw(encoding, 5, 7, step, False, data)
    np.testing.assert_array_equal(out, RGB)


def test_mono8_and_mono16_both_endians():
    mono = RGB[..., 0]
    np.testing.assert_array_equal(decode_raw('mono8', 5, 7, 7, False, mono.tobytes())[..., 0], mono)
    wide = mono.astype(np.uint16) * 257
    little = decode_raw('mono16', 5, 7, 14, False, wide.astype('<u2').tobytes())
    big = decode_raw('mono16', 5, 7, 14, True, wide.astype('>u2').tobytes())
    np.testing.assert_array_equal(little[..., 0], mono)
    np.testing.assert_array_equal(big[..., 0], mono)


@pytest.mark.parametrize('args,reason', [
    (('yuv422', 5, 7, 14, False, b'\0' * 70), 'unsupported encoding'),
    (('rgb8', 5, 7, 21, False, b'\0' * 50), r'expected step\*height'),
    (('rgb8', 0, 7, 21, False, b''), 'zero-sized'),
    (('rgb8', 5, 7, 10, False, b'\0' * 105), 'step 10'),
])
def test_bad_raw_images_raise_with_reason(args, reason):
    with pytest.raises(ImageDecodeError, match=reason):
        decode_raw(*args)


def test_jpeg_and_png_round_trip_and_corrupt_jpeg():
    cv2 = pytest.importorskip('cv2')
    big = np.ascontiguousarray(np.kron(RGB, np.ones((8, 8, 1), np.uint8)))
    ok, png = cv2.imencode('.png', big[..., ::-1].copy())
    np.testing.assert_array_equal(decode_compressed('rgb8; png compressed rgb8', png.tobytes()), big)
    ok, jpeg = cv2.imencode('.jpg', big[..., ::-1].copy(), [cv2.IMWRITE_JPEG_QUALITY, 95])
    decoded = decode_compressed('jpeg', jpeg.tobytes())
    assert decoded.shape == big.shape and np.abs(decoded.astype(int) - big).mean() < 12
    with pytest.raises(ImageDecodeError, match='corrupt'):
        decode_compressed('jpeg', jpeg.tobytes()[:40])
    with pytest.raises(ImageDecodeError, match='empty'):
        decode_compressed('jpeg', b'')


def test_preprocess_resizes_converts_and_normalises():
    pre = Preprocessor([0.5], [0.25], in_channels=1)
    x = pre(np.full((40, 60, 3), 255, np.uint8), 32)
    assert x.shape == (1, 1, 32, 32)
    torch.testing.assert_close(x, torch.full_like(x, 2.0), atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match='std'):
        Preprocessor([0.5], [0.0], in_channels=1)


def test_latest_slot_drops_older_frames_and_worker_survives_errors():
    slot: LatestFrameSlot[int] = LatestFrameSlot()
    assert slot.put(1) is False and slot.put(2) is True  # 1 was never served: dropped
    assert slot.take(0.1) == 2 and slot.take(0.01) is None
    served, errors, gate = [], [], threading.Event()

    def handle(frame: int) -> None:
        if frame == 13:
            raise RuntimeError('bad frame')
        served.append(frame)
        gate.set()

    worker = InferenceWorker(slot, handle, lambda frame, exc: errors.append((frame, str(exc))))
    worker.start()
    slot.put(13)
    time.sleep(0.05)
    slot.put(14)
    assert gate.wait(5)
    worker.stop()
    assert served == [14] and errors == [(13, 'bad frame')]


def test_latency_window_and_rate_meter():
    window = LatencyWindow(size=4)
    assert np.isnan(window.percentile(50))
    for value in (1, 2, 3, 4, 100):
        window.add(value)
    assert window.percentile(50) == pytest.approx(3.5)
    meter = RateMeter(window_s=2.0)
    for i in range(20):
        meter.tick(now=10.0 + i * 0.1)
    assert meter.rate_hz(now=11.9) == pytest.approx(10.0)
    assert meter.rate_hz(now=20.0) == 0.0


def test_fast_and_fallback_preprocessing_agree():
    import dynofa_ros.perception.preprocess as preprocess
    if preprocess.cv2 is None:
        pytest.skip('OpenCV not installed: only the torch path exists')
    image = np.kron(RGB, np.ones((40, 40, 1), np.uint8))  # 200x280 blocks: well-defined area averages
    pre = Preprocessor([0.286], [0.353], in_channels=1)
    fast = pre(image, 28)
    preprocess.cv2, saved = None, preprocess.cv2
    try:
        fallback = pre(image, 28)
    finally:
        preprocess.cv2 = saved
    assert fast.shape == fallback.shape == (1, 1, 28, 28)
    assert (fast - fallback).abs().mean() < 0.05  # same image up to filter differences
