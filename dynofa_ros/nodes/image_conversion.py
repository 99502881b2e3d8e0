"""sensor_msgs image <-> numpy, through cv_bridge when it imports and the numpy decoder otherwise."""
from __future__ import annotations

import numpy as np
from sensor_msgs.msg import CompressedImage, Image

from dynofa_ros.perception.image_codec import (DEFAULT_MAX_PIXELS, ImageDecodeError,
                                               check_compressed as check_compressed_fields, check_raw,
                                               decode_compressed, decode_raw)
from dynofa_ros.text import clip

try:
    from cv_bridge import CvBridge, CvBridgeError
    _BRIDGE: CvBridge | None = CvBridge()
except ImportError:  # not installable from PyPI; the numpy path is equivalent for our encodings
    _BRIDGE = None


def image_to_array(msg: Image, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """HxWx3 RGB or HxWx1 mono uint8; raises ImageDecodeError on malformed or unsupported input."""
    check_image(msg, max_pixels)
    if _BRIDGE is not None:
        try:
            target = 'mono8' if msg.encoding in ('mono8', 'mono16', '8UC1') else 'rgb8'
            array = _BRIDGE.imgmsg_to_cv2(msg, desired_encoding=target)
            return array[..., None] if array.ndim == 2 else array
        except CvBridgeError as exc:
            raise ImageDecodeError(f'cv_bridge: {clip(exc, 120)}') from exc
    return decode_raw(msg.encoding, msg.height, msg.width, msg.step, bool(msg.is_bigendian), msg.data,
                      max_pixels)


def check_image(msg: Image, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """O(1) checks of the fields (no pixel copy), so the receiving callback can reject bad frames."""
    check_raw(msg.encoding, msg.height, msg.width, msg.step, len(msg.data), max_pixels)


def check_compressed(msg: CompressedImage, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """O(1) checks of size, format and header, so a decompression bomb never reaches the decoder."""
    check_compressed_fields(msg.format, msg.data, max_pixels)  # the header info is re-read when decoding


def compressed_to_array(msg: CompressedImage, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    return decode_compressed(msg.format, msg.data, max_pixels)


def array_to_image(array: np.ndarray, encoding: str, header=None) -> Image:
    """Pack an HxWxC uint8 (or uint16 for mono16) array into sensor_msgs/Image."""
    msg = Image()
    if header is not None:
        msg.header = header
    contiguous = np.ascontiguousarray(array)
    msg.height, msg.width = int(contiguous.shape[0]), int(contiguous.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = int(contiguous.dtype.byteorder == '>')
    msg.step = int(contiguous.strides[0])
    msg.data = contiguous.tobytes()
    return msg
