"""Pictures of images for people: a pair of images and their difference, as one PNG (the closest
pairs of a study's report and of an audit's gallery)."""

from __future__ import annotations

import os

import numpy as np

__all__ = ["save_pair"]


def save_pair(a: np.ndarray, b: np.ndarray, path: str | os.PathLike[str], height: int = 96) -> float:
    """Two (C, H, W) images in [0, 1] and their absolute difference side by side as one PNG, upscaled
    (nearest neighbour, whole factors) so small images stay visible, to about ``height`` pixels. The
    difference is stretched so its largest pixel is white; returns that stretch factor (1 / the largest
    |a − b|) for the caption."""
    from PIL import Image

    def to_hwc(img: np.ndarray) -> np.ndarray:
        img = np.clip(np.asarray(img, dtype=np.float32), 0, 1)
        img = img[0] if img.shape[0] == 1 else np.transpose(img, (1, 2, 0))
        return (img * 255).round().astype(np.uint8)

    diff = np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32))
    peak = float(diff.max())
    stretch = 1.0 / peak if peak > 0 else 1.0
    left, right, delta = to_hwc(a), to_hwc(b), to_hwc(diff * stretch)
    gap_shape = (left.shape[0], max(1, left.shape[1] // 8)) + left.shape[2:]
    gap = np.full(gap_shape, 255, np.uint8)
    joined = np.concatenate([left, gap, right, gap, delta], axis=1)
    im = Image.fromarray(joined)
    scale = max(1, height // max(1, left.shape[0]))
    im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    im.save(path)
    return stretch
