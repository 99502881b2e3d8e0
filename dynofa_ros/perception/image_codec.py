"""Decode camera images (sensor_msgs/Image and CompressedImage fields) into numpy arrays.

Works on plain fields so it needs no ROS and no cv_bridge; `step` and `is_bigendian` are honoured and
every malformed input raises `ImageDecodeError` with a reason the node can count and log.
"""
from __future__ import annotations

import numpy as np

try:  # OpenCV decodes JPEG/PNG fastest; Pillow is the fallback.
    import cv2
except ImportError:  # pragma: no cover - depends on the machine
    cv2 = None


class ImageDecodeError(ValueError):
    """An image that cannot be served; the message says why."""


DEFAULT_MAX_PIXELS = 4096 * 4096  # width*height decoded at most (the node's `max_pixels` parameter)


# encoding -> (channels, numpy dtype, channel order to reach RGB)
_RAW_ENCODINGS: dict[str, tuple[int, str, tuple[int, ...] | None]] = {
    'rgb8': (3, 'u1', None),
    'bgr8': (3, 'u1', (2, 1, 0)),
    'rgba8': (4, 'u1', (0, 1, 2)),
    'bgra8': (4, 'u1', (2, 1, 0)),
    'mono8': (1, 'u1', None),
    '8UC1': (1, 'u1', None),
    'mono16': (1, 'u2', None),
    '16UC1': (1, 'u2', None),
}
SUPPORTED_ENCODINGS = tuple(_RAW_ENCODINGS)


def check_raw(encoding: str, height: int, width: int, step: int, data_size: int,
              max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """O(1) validation of raw image fields, cheap enough for the receiving callback."""
    if encoding not in _RAW_ENCODINGS:
        raise ImageDecodeError(f"unsupported encoding '{encoding}' (supported: {', '.join(SUPPORTED_ENCODINGS)})")
    if height <= 0 or width <= 0:
        raise ImageDecodeError(f'zero-sized image {width}x{height}')
    if width * height > max_pixels:
        raise ImageDecodeError(f'oversized image {width}x{height} > max_pixels {max_pixels}')
    channels, kind, _ = _RAW_ENCODINGS[encoding]
    row_bytes = width * channels * np.dtype(kind).itemsize
    if step < row_bytes:
        raise ImageDecodeError(f'step {step} < width*channels*bytes {row_bytes} for {encoding}')
    if data_size < step * height:
        raise ImageDecodeError(f'data has {data_size} bytes, expected step*height = {step * height}')


def decode_raw(encoding: str, height: int, width: int, step: int, is_bigendian: bool,
               data: bytes | bytearray | memoryview | np.ndarray, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Return an HxWx3 (colour) or HxWx1 (mono) uint8 array; mono16 is scaled to 8 bits."""
    buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.view(np.uint8)
    check_raw(encoding, height, width, step, buf.size, max_pixels)
    channels, kind, order = _RAW_ENCODINGS[encoding]
    item = np.dtype(kind).itemsize
    rows = buf[:step * height].reshape(height, step)[:, :width * channels * item]
    dtype = np.dtype(kind).newbyteorder('>' if is_bigendian else '<') if item > 1 else np.dtype(kind)
    pixels = np.ascontiguousarray(rows).view(dtype).reshape(height, width, channels)
    if item > 1:
        pixels = (pixels.astype(np.float32) * (255.0 / 65535.0)).round().astype(np.uint8)
    if order is not None:
        pixels = pixels[..., list(order)]
    return np.ascontiguousarray(pixels)


def check_compressed(fmt: str, data: bytes | bytearray | memoryview, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """O(1) checks of a compressed frame before anything is decoded (size bound for now)."""
    if len(data) > 8 * max_pixels + 2**20:
        raise ImageDecodeError(f'oversized compressed image: {len(data)} bytes for max_pixels {max_pixels}')


def decode_compressed(fmt: str, data: bytes | bytearray | memoryview,
                      max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode JPEG/PNG bytes to HxWx3 RGB uint8 (or HxWx1 for grayscale files)."""
    check_compressed(fmt, data, max_pixels)
    raw = np.frombuffer(data, dtype=np.uint8)
    if raw.size == 0:
        raise ImageDecodeError('empty compressed image')
    kind = fmt.lower()
    if not any(name in kind for name in ('jpeg', 'jpg', 'png')) and kind:
        raise ImageDecodeError(f"unsupported compressed format '{fmt}' (jpeg or png)")
    if cv2 is not None:
        image = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)
        if image is None:
            raise ImageDecodeError(f"corrupt or undecodable compressed image (format '{fmt}')")
        if image.ndim == 2:
            return image[..., None]
        if image.shape[2] == 4:
            return np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGRA2RGB))
        return np.ascontiguousarray(image[..., ::-1])
    return _decode_with_pillow(bytes(raw), fmt)


def _decode_with_pillow(blob: bytes, fmt: str) -> np.ndarray:
    import io

    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(io.BytesIO(blob)) as img:
            img.load()
            if img.mode in ('L', 'I;16', 'I'):
                return np.asarray(img.convert('L'))[..., None]
            return np.asarray(img.convert('RGB'))
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageDecodeError(f"corrupt or undecodable compressed image (format '{fmt}'): {exc}") from exc
