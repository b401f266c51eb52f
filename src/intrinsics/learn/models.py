"""One factory for every network the method trains: the reference study's six and a small CPU CNN.

Every model returned by :func:`create_model` takes images in their preprocessed scale (for attacks:
[0, 1]) and normalises them itself in a first :class:`Normalize` layer, so that an attack's ε is
always measured in pixel units and never in normalised units.

Each architecture is registered once, as a :class:`ModelInfo` (builder, family, reference recipe,
"penultimate" layer, help note); :data:`MODELS`, :data:`REFERENCE_RECIPE`, :data:`PENULTIMATE`,
:func:`model_family` and :func:`model_help` are all read from that one registry.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import nn

from ..errors import DataError
from ..registry import (
    DEFAULT_MODEL,
    MODELS,
    PENULTIMATE,
    REFERENCE_RECIPE,
    ModelInfo,
    list_models,
    model_family,
    model_help,
    model_info,
)

__all__ = [
    "ModelInfo",
    "DEFAULT_MODEL",
    "MODELS",
    "PENULTIMATE",
    "REFERENCE_RECIPE",
    "Normalize",
    "ImageClassifier",
    "SmallCNN",
    "create_model",
    "list_models",
    "model_family",
    "model_help",
    "model_info",
]


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std``, stored as buffers so it travels with the weights."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"channels={self.mean.shape[1]}"


class ImageClassifier(nn.Module):
    """A network preceded by its own input normalisation.

    Attributes
    ----------
    normalize : Normalize
        First layer; its mean/std are set from the training set by :func:`~intrinsics.learn.train`.
    net : nn.Module
        The architecture itself; layer names such as ``"layer4"`` refer to ``net``'s children.
    name : str
        Registry name (``"resnet18"``, ``"smallcnn"``, ...).
    """

    def __init__(self, net: nn.Module, name: str, in_chans: int, num_classes: int,
                 image_size: tuple[int, int] | None) -> None:
        super().__init__()
        self.normalize = Normalize([0.0] * in_chans, [1.0] * in_chans)
        self.net = net
        self.name = name
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.image_size = image_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))

    def set_normalization(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """Set the input normalisation (per channel); a zero std is replaced by 1."""
        std = [s if s > 0 else 1.0 for s in std]
        self.normalize.mean.copy_(torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.normalize.std.copy_(torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def spec(self) -> dict:
        """What :func:`create_model` needs to rebuild this architecture (stored in checkpoints)."""
        return {
            "name": self.name,
            "in_chans": self.in_chans,
            "num_classes": self.num_classes,
            "image_size": None if self.image_size is None else list(self.image_size),
        }


class SmallCNN(nn.Module):
    """Three conv blocks (16, 64, 128 maps), global pooling and a 128-unit hidden layer: fast
    enough for CPU studies.

    Works on any input of at least 1×1 pixels (the pools round up, so 8×8 digits are fine).
    """

    def __init__(self, in_chans: int = 1, num_classes: int = 2, width: int = 32) -> None:
        super().__init__()

        def block(cin: int, cout: int, pool: bool) -> list[nn.Module]:
            layers: list[nn.Module] = [
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]
            if pool:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            return layers

        # the first block runs at full resolution, so it is kept narrow: it dominates CPU time
        self.features = nn.Sequential(
            *block(in_chans, width // 2, True),
            *block(width // 2, 2 * width, True),
            *block(2 * width, 4 * width, False),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(4 * width, 128),
            nn.ReLU(inplace=True),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.avgpool(self.features(x)))


def _as_size(image_size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    if isinstance(image_size, int):
        return (image_size, image_size)
    h, w = (int(s) for s in image_size)
    return (h, w)


# Builds the bare network for (in_chans, num_classes, image_size); create_model wraps it.
_Builder = Callable[[int, int, tuple[int, int] | None], nn.Module]


def _torchvision(arch: str, num_classes: int) -> nn.Module:
    from torchvision import models  # on first build only: torchvision is slow to import

    return getattr(models, arch)(weights=None, num_classes=num_classes)


def _resnet(arch: str) -> _Builder:
    def make(in_chans: int, num_classes: int, image_size: tuple[int, int] | None) -> nn.Module:
        net = _torchvision(arch, num_classes)
        if in_chans != 3:
            old = net.conv1
            net.conv1 = nn.Conv2d(in_chans, old.out_channels, old.kernel_size, old.stride,
                                  old.padding, bias=False)
            # keep torchvision's initialisation of the stem, only for the new channel count
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        # ResNets end in a global average pool, so any input of at least 1x1 after the stem works.
        return net

    return make


def _vgg(arch: str) -> _Builder:
    def make(in_chans: int, num_classes: int, image_size: tuple[int, int] | None) -> nn.Module:
        net = _torchvision(arch, num_classes)
        if in_chans != 3:
            old = net.features[0]
            net.features[0] = nn.Conv2d(in_chans, old.out_channels, old.kernel_size, old.stride,
                                        old.padding)
            nn.init.kaiming_normal_(net.features[0].weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(net.features[0].bias)
        # Five 2x2 pools shrink 28x28 to 0x0; rounding up keeps at least one pixel and changes
        # nothing when every intermediate size is even (224, 64, 32).
        for m in net.features:
            if isinstance(m, nn.MaxPool2d):
                m.ceil_mode = True
        if image_size is not None:
            side = [s for s in image_size]
            for _ in range(sum(isinstance(m, nn.MaxPool2d) for m in net.features)):
                side = [math.ceil(s / 2) for s in side]
            target = (min(7, side[0]), min(7, side[1]))
            if target != (7, 7):
                # Pooling a 1x1 map "up" to 7x7 only copies each value 49 times; size the first
                # classifier layer to the map that really exists instead.
                net.avgpool = nn.AdaptiveAvgPool2d(target)
                old = net.classifier[0]
                net.classifier[0] = nn.Linear(512 * target[0] * target[1], old.out_features)
                nn.init.normal_(net.classifier[0].weight, 0, 0.01)
                nn.init.zeros_(net.classifier[0].bias)
        return net

    return make


def _smallcnn(in_chans: int, num_classes: int, image_size: tuple[int, int] | None) -> nn.Module:
    return SmallCNN(in_chans, num_classes)


# The bare network of each registered family, by architecture name (the registry says which family).
_FAMILY_BUILDERS: dict[str, Callable[[str], _Builder]] = {
    "resnet": _resnet,
    "vgg": _vgg,
    "smallcnn": lambda arch: _smallcnn,
}


def create_model(
    name: str,
    in_chans: int = 1,
    num_classes: int = 2,
    *,
    image_size: int | Sequence[int] | None = None,
) -> ImageClassifier:
    """Build a classifier by name, adapted to the channel count, class count and image size.

    Parameters
    ----------
    name : str
        One of :data:`MODELS`: ``resnet18``, ``resnet34``, ``resnet50``, ``vgg13``, ``vgg16``,
        ``vgg19`` (torchvision, from scratch) or ``smallcnn``.
    in_chans : int
        Input channels (1 for grey-scale medical images); the first convolution is rebuilt for it.
    num_classes : int
        Output logits (2 for a binary task; 1000 reproduces the reference study's head).
    image_size : int or (int, int), optional
        Input side. Only VGG uses it: below 224 its pooled map is smaller than 7x7 and the first
        fully-connected layer is sized to the real map. None keeps torchvision's layout.

    Returns
    -------
    ImageClassifier
        ``Normalize`` followed by the network; set the normalisation with
        :meth:`ImageClassifier.set_normalization` (``train`` does it from the training set).

    Examples
    --------
    >>> model = create_model("resnet18", in_chans=1, num_classes=2)
    >>> model(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 2])
    """
    info = model_info(name)
    if int(in_chans) < 1:
        raise DataError(f"in_chans={in_chans!r} must be a positive channel count, e.g. 1 or 3")
    if int(num_classes) < 2:
        raise DataError(f"num_classes={num_classes!r} must be at least 2 for a classifier")
    size = _as_size(image_size)
    net = _FAMILY_BUILDERS[info.family](info.name)(int(in_chans), int(num_classes), size)
    return ImageClassifier(net, name, int(in_chans), int(num_classes), size)
