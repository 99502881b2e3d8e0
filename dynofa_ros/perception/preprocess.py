"""Turn decoded camera frames into the input tensor of the active sub-network.

Sub-networks may differ in input resolution, so resizing happens per frame to the resolution of the
sub-network that will run it. Camera frames are far larger than the network input, so the uint8 image
is shrunk first (OpenCV's area filter, antialiased) and only the small result becomes a float tensor;
that keeps a 640x480 frame well under a millisecond on one core.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

try:
    import cv2
except ImportError:  # pragma: no cover - the torch path below is the fallback
    cv2 = None


def centre_crop(image: np.ndarray, crop: float) -> np.ndarray:
    """The central square of side crop x the shorter side (a view, no copy): resizing it to r is the
    ImageNet evaluation transform "resize the shorter side to r / crop, centre-crop r" (crop 0.875)."""
    h, w = image.shape[:2]
    side = max(1, int(round(min(h, w) * crop)))
    top, left = (h - side) // 2, (w - side) // 2
    return image[top:top + side, left:left + side]


class Preprocessor:
    """Resize and normalise to the model's channels, on CPU or CUDA.

    crop 1.0 resizes the whole frame (the shipped 28-px models' training transform); crop < 1 first
    takes the centre square of that share of the shorter side (ImageNet models: 0.875).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], in_channels: int,
                 device: torch.device | str = 'cpu', crop: float = 1.0) -> None:
        if len(mean) != len(std) or len(mean) not in (1, in_channels):
            raise ValueError(f'mean/std need 1 or {in_channels} values, got {len(mean)} and {len(std)}')
        if any(s <= 0 for s in std):
            raise ValueError(f'std must be positive, got {list(std)}')
        if not 0 < crop <= 1:
            raise ValueError(f'crop must be in (0, 1], got {crop}')
        self.in_channels = in_channels
        self.crop = crop
        self.device = torch.device(device)
        self._mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)

    def __call__(self, image: np.ndarray, resolution: int) -> torch.Tensor:
        """HxWxC uint8 (C = 1 or 3) -> 1 x in_channels x resolution x resolution float tensor."""
        if self.crop < 1:
            image = centre_crop(image, self.crop)
        if cv2 is not None:
            small = self._shrink_uint8(image, resolution)
            x = torch.from_numpy(small).to(self.device, non_blocking=True)
            x = x.permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
        else:
            x = self._resize_float(image, resolution)
        if x.shape[1] == 1 and self.in_channels == 3:
            x = x.expand(-1, 3, -1, -1)
        return (x - self._mean) / self._std

    def _shrink_uint8(self, image: np.ndarray, resolution: int) -> np.ndarray:
        if image.shape[2] == 3 and self.in_channels == 1:  # luma first: a third of the data to resize
            image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        if image.shape[:2] != (resolution, resolution):
            shrinking = image.shape[0] >= resolution and image.shape[1] >= resolution
            image = cv2.resize(image, (resolution, resolution),
                               interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
        return np.ascontiguousarray(image[..., None] if image.ndim == 2 else image)

    def _resize_float(self, image: np.ndarray, resolution: int) -> torch.Tensor:
        x = torch.from_numpy(image).to(self.device, non_blocking=True)
        x = x.permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
        if x.shape[1] == 3 and self.in_channels == 1:  # ITU-R BT.601 luma
            weights = torch.tensor([0.299, 0.587, 0.114], device=self.device).view(1, 3, 1, 1)
            x = (x * weights).sum(dim=1, keepdim=True)
        if x.shape[-2:] != (resolution, resolution):
            x = F.interpolate(x, size=(resolution, resolution), mode='bilinear', align_corners=False,
                              antialias=True)
        return x
