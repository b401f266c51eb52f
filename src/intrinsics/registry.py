"""The model registry: every architecture the method trains, registered once (timm-style).

Names, families, the reference study's recipe, the layer "penultimate" stands for and the help text
all live here; :mod:`intrinsics.learn.models` builds the networks from it. It sits outside
``learn/`` because it imports no torch: the command line and spec checks read it without that cost.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import DataError

__all__ = [
    "ModelInfo",
    "DEFAULT_MODEL",
    "MODELS",
    "PENULTIMATE",
    "REFERENCE_RECIPE",
    "list_models",
    "model_family",
    "model_help",
    "model_info",
]


@dataclass(frozen=True)
class ModelInfo:
    """One registered architecture: how to build it and the reference study's recipe for it.

    Attributes
    ----------
    name : str
        Registry name, as passed to :func:`create_model` (``"resnet18"``).
    family : str
        ``"resnet"``, ``"vgg"`` or ``"smallcnn"``.
    batch_size : int
        Reference batch size (Konz & Mazurowski; for smallcnn, ours).
    lr : float
        Reference Adam learning rate.
    penultimate : str
        The layer ``"penultimate"`` stands for (a name inside the bare network): the reference
        study's representation layer (ResNet ``layer4`` before pooling, VGG's second
        fully-connected layer ``classifier.3``).
    description : str
        Short note shown after the name by :func:`model_help`; empty when the name says enough.
    """

    name: str
    family: str
    batch_size: int
    lr: float
    penultimate: str
    description: str = ""


_REGISTRY: dict[str, ModelInfo] = {}


def _register(*infos: ModelInfo) -> None:
    """Add models to the registry, refusing a name twice or a family that disagrees on "penultimate"."""
    for info in infos:
        if info.name in _REGISTRY:
            raise ValueError(f"model {info.name!r} is registered twice")
        # "penultimate" is looked up per family (PENULTIMATE), so a family must agree on it.
        for other in _REGISTRY.values():
            if other.family == info.family and other.penultimate != info.penultimate:
                raise ValueError(
                    f"model {info.name!r} has penultimate={info.penultimate!r} but {other.name!r} of "
                    f"the same family {info.family!r} has {other.penultimate!r}"
                )
        _REGISTRY[info.name] = info


_register(
    ModelInfo("resnet18", "resnet", batch_size=40, lr=1e-3, penultimate="layer4"),
    ModelInfo("resnet34", "resnet", batch_size=25, lr=1e-3, penultimate="layer4"),
    ModelInfo("resnet50", "resnet", batch_size=12, lr=1e-3, penultimate="layer4"),
    ModelInfo("vgg13", "vgg", batch_size=6, lr=1e-4, penultimate="classifier.3"),
    ModelInfo("vgg16", "vgg", batch_size=6, lr=1e-4, penultimate="classifier.3"),
    ModelInfo("vgg19", "vgg", batch_size=6, lr=1e-4, penultimate="classifier.3"),
    ModelInfo("smallcnn", "smallcnn", batch_size=64, lr=1e-3, penultimate="classifier.2",
              description="fast, CPU"),
)

#: The model used when none is named: the only one that trains in seconds on a CPU.
DEFAULT_MODEL = "smallcnn"

#: Names accepted by :func:`create_model`, in registration order.
MODELS: tuple[str, ...] = tuple(_REGISTRY)

#: The layer called "penultimate" for each family (see :attr:`ModelInfo.penultimate`).
PENULTIMATE: dict[str, str] = {info.family: info.penultimate for info in _REGISTRY.values()}

#: Reference training recipe per model: Adam learning rate and batch size (Konz & Mazurowski).
REFERENCE_RECIPE: dict[str, dict[str, float | int]] = {
    info.name: {"lr": info.lr, "batch_size": info.batch_size} for info in _REGISTRY.values()
}


def model_info(name: str) -> ModelInfo:
    """The registry entry of a model.

    Raises
    ------
    DataError
        If ``name`` is not registered (the message lists the names that are).
    """
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise DataError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}") from None


def list_models() -> list[str]:
    """Names of the available architectures, in registration order."""
    return list(MODELS)


def model_family(name: str) -> str:
    """``"resnet"``, ``"vgg"`` or ``"smallcnn"``; raises :class:`DataError` for an unknown name."""
    return model_info(name).family


def model_help() -> str:
    """One line naming every model, the default first, for a ``--model`` help text.

    Examples
    --------
    >>> model_help()
    'smallcnn (fast, CPU), resnet18, resnet34, resnet50, vgg13, vgg16, vgg19'
    """
    infos = [_REGISTRY[DEFAULT_MODEL], *(i for i in _REGISTRY.values() if i.name != DEFAULT_MODEL)]
    return ", ".join(f"{i.name} ({i.description})" if i.description else i.name for i in infos)
