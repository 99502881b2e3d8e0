"""Read the small fields of a serialized sensor_msgs Image / CompressedImage without deserialising it.

Under a flood most frames are superseded before the inference thread takes one, so the node receives
them serialized (`raw=True`) and checks size, encoding and length here, in O(1): only the frame that is
served is deserialised and decoded. Plain CDR (XCDR1, either byte order; what rmw_fastrtps and
rmw_cyclonedds send for these types) is understood; anything else returns None and the caller falls
back to full deserialisation.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

_ENCAPSULATIONS = {b'\x00\x00': '>', b'\x00\x01': '<'}  # CDR_BE, CDR_LE
_BODY = 4  # the encapsulation header; CDR alignment counts from here


class _Reader:
    def __init__(self, buffer: bytes | memoryview, order: str) -> None:
        self.buffer = buffer
        self.order = order
        self.offset = _BODY

    def uint32(self) -> int:
        self.offset += -(self.offset - _BODY) % 4
        (value,) = struct.unpack_from(self.order + 'I', self.buffer, self.offset)
        self.offset += 4
        return value

    def uint8(self) -> int:
        value = self.buffer[self.offset]
        self.offset += 1
        return value

    def string(self) -> str:
        size = self.uint32()  # includes the terminating NUL
        if size == 0 or self.offset + size > len(self.buffer):
            raise ValueError('string runs past the buffer')
        text = bytes(self.buffer[self.offset:self.offset + size - 1]).decode('utf-8', 'replace')
        self.offset += size
        return text

    def sequence(self) -> memoryview:
        size = self.uint32()
        if self.offset + size > len(self.buffer):
            raise ValueError('sequence runs past the buffer')
        view = memoryview(self.buffer)[self.offset:self.offset + size]
        self.offset += size
        return view

    def skip_header(self) -> None:
        self.uint32()  # stamp.sec
        self.uint32()  # stamp.nanosec
        self.string()  # frame_id


@dataclass(frozen=True)
class RawImageFields:
    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data_size: int


@dataclass(frozen=True)
class CompressedFields:
    format: str
    data: memoryview  # a view into the serialized buffer: no copy


def _reader(buffer: bytes) -> _Reader | None:
    order = _ENCAPSULATIONS.get(bytes(buffer[:2]))
    return None if order is None or len(buffer) < _BODY else _Reader(buffer, order)


def peek_image(buffer: bytes) -> RawImageFields | None:
    """sensor_msgs/Image fields except `data` (its size only); None when not plain CDR or malformed."""
    reader = _reader(buffer)
    if reader is None:
        return None
    try:
        reader.skip_header()
        height, width, encoding = reader.uint32(), reader.uint32(), reader.string()
        is_bigendian, step = reader.uint8(), reader.uint32()
        return RawImageFields(height, width, encoding, is_bigendian, step, len(reader.sequence()))
    except (ValueError, struct.error, IndexError):
        return None


def peek_compressed(buffer: bytes) -> CompressedFields | None:
    """sensor_msgs/CompressedImage `format` and a view of `data`; None when not plain CDR or malformed."""
    reader = _reader(buffer)
    if reader is None:
        return None
    try:
        reader.skip_header()
        return CompressedFields(reader.string(), reader.sequence())
    except (ValueError, struct.error, IndexError):
        return None
