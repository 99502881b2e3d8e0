"""ROS-free perception pieces: decoding every encoding, bad input, pre-processing, keep-latest serving."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from dynofa_ros.perception import image_codec
from dynofa_ros.perception.image_codec import (ImageDecodeError, check_compressed, check_raw, decode_compressed,
                                               decode_raw)
from dynofa_ros.perception.preprocess import Preprocessor
from dynofa_ros.perception.serving import InferenceWorker, LatestFrameSlot
from dynofa_ros.perception.stats import LatencyWindow, RateMeter
from dynofa_ros.text import clip
from image_samples import OTHER_FORMATS, encode_png, jpeg_header, png_bomb

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


def _rejection_cost(fmt: str, blob: bytes) -> tuple[float, int, str]:
    """Median seconds and peak traced bytes of rejecting `blob`, and the reason."""
    import statistics
    import tracemalloc
    times = []
    tracemalloc.start()
    try:
        for _ in range(5):
            t0 = time.perf_counter()
            with pytest.raises(ImageDecodeError) as caught:
                decode_compressed(fmt, blob)
            times.append(time.perf_counter() - t0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return statistics.median(times), peak, str(caught.value)


@pytest.mark.parametrize('fmt,blob,declared', [
    ('png', png_bomb(30000, 30000), '30000x30000'),
    ('rgb8; png compressed rgb8', png_bomb(30000, 30000, colour_type=2), '30000x30000'),
    ('mono16; png compressed mono16', png_bomb(20000, 20000, bit_depth=16), '20000x20000'),
    ('bgr8; jpeg compressed bgr8', jpeg_header(60000, 60000), '60000x60000'),
    ('jpeg', jpeg_header(65535, 65535, sof=0xC2), '65535x65535'),
])
def test_decompression_bombs_are_rejected_from_the_header_without_allocating(fmt, blob, declared):
    seconds, peak, reason = _rejection_cost(fmt, blob)
    assert f'oversized {"PNG" if "png" in fmt else "JPEG"} {declared}' in reason and 'max_pixels' in reason
    # the decoded image would be >= 900 MB; a header check costs microseconds and a few kB
    assert seconds < 0.010, f'{seconds * 1e3:.2f} ms'
    assert peak < 256 * 1024, f'{peak} bytes traced'


def test_max_pixels_is_the_limit_and_compressed_bytes_are_bounded():
    check_compressed('png', png_bomb(100, 100), max_pixels=100 * 100)
    with pytest.raises(ImageDecodeError, match='oversized PNG 100x101'):
        check_compressed('png', png_bomb(100, 101), max_pixels=100 * 100)
    with pytest.raises(ImageDecodeError, match='oversized compressed image'):
        check_compressed('png', png_bomb(10, 10) + b'\0' * (8 * 10_000 + 2**20), max_pixels=10_000)
    with pytest.raises(ImageDecodeError, match='oversized image 101x100'):
        check_raw('mono8', 100, 101, 101, 101 * 100, max_pixels=100 * 100)


@pytest.mark.parametrize('label', ['png', 'jpeg', 'bgr8; png compressed bgr8', 'mono8; jpeg compressed mono8'])
@pytest.mark.parametrize('name', sorted(OTHER_FORMATS))
def test_other_formats_labelled_jpeg_or_png_are_rejected_by_magic_bytes(name, label):
    codec = 'png' if 'png' in label else 'jpeg'
    with pytest.raises(ImageDecodeError, match=f'format says {codec} but the data is {name}'):
        check_compressed(label, OTHER_FORMATS[name])


def test_png_labelled_jpeg_and_unknown_bytes_are_rejected():
    with pytest.raises(ImageDecodeError, match='format says jpeg but the data is png'):
        check_compressed('jpeg', png_bomb(8, 8))
    with pytest.raises(ImageDecodeError, match='format is empty but the data is unknown'):
        check_compressed('', b'\x00garbage' * 8)
    with pytest.raises(ImageDecodeError, match='unsupported compressed format'):
        check_compressed('jpeg or png', png_bomb(8, 8))


def _grey_reference() -> np.ndarray:
    return np.kron(RGB[..., 0], np.ones((4, 4), np.uint8))


@pytest.mark.parametrize('use_pillow', [False, True])
def test_16_bit_png_is_scaled_to_the_8_bit_reference(use_pillow, monkeypatch):
    pytest.importorskip('cv2')
    if use_pillow:
        pytest.importorskip('PIL')
        monkeypatch.setattr(image_codec, 'cv2', None)
    grey = _grey_reference()
    wide = grey.astype(np.uint16) * 257
    for fmt in ('png', '', 'mono16; png compressed mono16'):
        decoded = decode_compressed(fmt, encode_png(wide))
        assert decoded.dtype == np.uint8 and decoded.shape == grey.shape + (1,)
        np.testing.assert_array_equal(decoded[..., 0], grey)
    colour = np.dstack([grey, grey // 2, 255 - grey])
    decoded = decode_compressed('rgb16; png compressed bgr16', encode_png(colour.astype(np.uint16) * 257))
    assert decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - colour).max() <= (1 if use_pillow else 0)  # Pillow truncates


def test_alpha_and_palette_pngs_decode_to_grey_or_rgb():
    PIL = pytest.importorskip('PIL.Image')
    import io
    grey = _grey_reference()
    for mode, channels in (('LA', 1), ('P', 3), ('RGBA', 3)):
        buffer = io.BytesIO()
        PIL.fromarray(grey).convert(mode).save(buffer, 'PNG')
        decoded = decode_compressed('png', buffer.getvalue())
        assert decoded.shape == grey.shape + (channels,) and decoded.dtype == np.uint8, mode
        np.testing.assert_array_equal(decoded[..., 0], grey)
    buffer = io.BytesIO()
    PIL.fromarray(grey >= 128).save(buffer, 'PNG')  # 1-bit grey: expanded to 0 / 255, not 0 / 1
    assert buffer.getvalue()[24] == 1
    decoded = decode_compressed('mono8; png compressed mono8', buffer.getvalue())
    np.testing.assert_array_equal(decoded[..., 0], np.where(grey >= 128, 255, 0))


@pytest.mark.parametrize('fmt,blob,reason', [
    ('bgr8; png compressed bgr8', 'grey16', 'format says bgr8 but the data is a 16-bit grey PNG'),
    ('mono8; png compressed mono8', 'grey16', 'format says mono8 but the data is a 16-bit grey PNG'),
    ('mono16; png compressed mono16', 'grey8', 'format says mono16 but the data is an 8-bit grey PNG'),
    ('16UC1; png compressed mono16', 'grey16', "depth source encoding '16UC1' is not intensity"),
    ('32FC1; png compressed 32fc1', 'grey16', "depth source encoding '32FC1' is not intensity"),
    ('16UC1; compressedDepth png', 'grey16', 'compressedDepth'),
    ('bgr8; png compressed yuv422', 'grey8', 'unsupported compressed format'),
])
def test_the_format_string_is_checked_against_the_header(fmt, blob, reason):
    grey = _grey_reference()
    data = encode_png(grey.astype(np.uint16) * 257 if blob == 'grey16' else grey)
    with pytest.raises(ImageDecodeError, match=reason):
        decode_compressed(fmt, data)


@pytest.mark.parametrize('blob,reason', [
    (jpeg_header(64, 64, precision=12), 'unsupported 12-bit JPEG'),
    (jpeg_header(64, 64, components=4), 'unsupported JPEG with 4 components'),
    (jpeg_header(64, 64, sof=0xC3), r'unsupported JPEG coding process \(SOF3\)'),
    (b'\xff\xd8\xff\xda' + b'\0' * 20, 'image data before any SOF'),
    (b'\xff\xd8' + b'\xff\xfe\x00\x04ab' * 300, 'no SOF header in the first 256 segments'),
    (png_bomb(64, 64)[:20], 'no IHDR chunk first'),
    (png_bomb(64, 64)[:29] + b'\0\0\0\0', 'IHDR checksum mismatch'),
])
def test_unsupported_or_corrupt_headers_are_rejected_before_decoding(blob, reason):
    with pytest.raises(ImageDecodeError, match=reason):
        check_compressed('', blob)


def test_a_jpeg_with_metadata_segments_is_found_and_decoded():
    cv2 = pytest.importorskip('cv2')
    grey = _grey_reference()
    ok, jpeg = cv2.imencode('.jpg', grey, [cv2.IMWRITE_JPEG_QUALITY, 95, cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    blob = jpeg.tobytes()
    comment = b'\xff\xfe' + (2 + 1000).to_bytes(2, 'big') + b'c' * 1000  # a COM segment before the SOF
    info = check_compressed('mono8; jpeg compressed mono8', blob[:2] + comment * 3 + blob[2:])
    assert (info.codec, info.width, info.height, info.channels, info.bit_depth) == ('jpeg', 28, 20, 1, 8)
    decoded = decode_compressed('jpeg', blob[:2] + comment * 3 + blob[2:])
    assert decoded.shape == (20, 28, 1) and np.abs(decoded[..., 0].astype(int) - grey).mean() < 8


@pytest.mark.parametrize('encoding', ['16UC1', '32FC1', '16SC1', '64FC1'])
def test_depth_encodings_are_not_classified_as_intensity(encoding):
    with pytest.raises(ImageDecodeError, match=f"depth encoding '{encoding}' is not intensity"):
        decode_raw(encoding, 2, 2, 16, False, b'\0' * 32)


def test_raw_data_must_match_step_times_height():
    with pytest.raises(ImageDecodeError, match='data has 36 bytes, expected step\\*height = 35'):
        decode_raw('mono8', 5, 7, 7, False, b'\0' * 36)


def test_huge_input_strings_give_short_messages():
    for call in (lambda: check_raw('x' * 2**20, 2, 2, 2, 4), lambda: check_compressed('y' * 2**20, b'png'),
                 lambda: check_compressed('z' * 200 + '; png compressed w' * 3, png_bomb(4, 4))):
        with pytest.raises(ImageDecodeError) as caught:
            call()
        assert len(str(caught.value)) < 200 and '...' in str(caught.value)


def test_clip_caps_and_escapes_input_strings():
    assert clip('bgr8') == 'bgr8'
    assert clip('a' * 2**20) == 'a' * 64 + '...'
    assert clip('forged\n[WARN] line', 10) == 'forged\\n[W...'
    assert '\n' not in clip('x\n' * 100) and len(clip('\x00' * 1000)) == 64 + 3
    assert clip(ValueError('bad')) == 'bad'


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
