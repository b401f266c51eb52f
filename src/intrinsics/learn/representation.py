"""d_repr: the intrinsic dimension of what a trained network computes at a named layer.

Activations are captured with forward hooks (eval mode, no gradients), flattened per image, and
passed to the same estimators and neighbour engine as ``d_data``
(:func:`intrinsics.measure.intrinsic_dimension`).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import ImageSet
from ..errors import EstimationError
from ..measure.dimension import by_estimator, intrinsic_dimension, shared_graph
from ..jsonio import to_jsonable
from .models import PENULTIMATE, ImageClassifier, model_family
from .train import resolve_device

__all__ = ["resolve_layer", "layer_activations", "repr_dimension", "ReprEstimate"]


def _layer_names(model: nn.Module) -> list[str]:
    prefix = "net." if isinstance(model, ImageClassifier) else ""
    return [n[len(prefix):] for n, _ in model.named_modules() if n.startswith(prefix) and n != prefix.rstrip(".")]


def resolve_layer(model: nn.Module, layer: str = "penultimate") -> tuple[str, nn.Module, bool]:
    """Find a layer by name: ``"penultimate"``, ``"layer4"``, ``"avgpool"``, ``"features.28"``,
    ``"classifier[3]"`` (indices in brackets are accepted).

    Returns
    -------
    name : str
        The resolved name (``"penultimate"`` becomes the layer it stands for).
    module : nn.Module
    use_input : bool
        True when the representation is the module's *input* (``"penultimate"`` on a model outside
        the registry: the input of its last Linear layer).
    """
    name = re.sub(r"\[(\d+)\]", r".\1", str(layer).strip())
    modules = dict(model.named_modules())
    if name == "penultimate":
        if isinstance(model, ImageClassifier):
            name = PENULTIMATE[model_family(model.name)]
        else:
            linears = [n for n, m in modules.items() if isinstance(m, nn.Linear)]
            if not linears:
                raise EstimationError(
                    "'penultimate' means the input of the last Linear layer, and this model has none; "
                    "name a layer instead"
                )
            return linears[-1], modules[linears[-1]], True
    for candidate in (name, f"net.{name}"):
        if candidate and candidate in modules:
            return name, modules[candidate], False
    known = _layer_names(model)
    tops = [n for n in known if "." not in n]
    example = f" (nested names with dots, e.g. {known[-1]!r})" if known else ""
    raise EstimationError(
        f"layer {layer!r} not found in the model; use 'penultimate' or a module name such as "
        f"{', '.join(repr(n) for n in tops[:12])}{example}"
    )


@torch.no_grad()
def layer_activations(
    model: nn.Module,
    images: ImageSet | np.ndarray | torch.Tensor,
    layer: str = "penultimate",
    *,
    batch_size: int = 256,
    device: str | torch.device = "auto",
) -> tuple[np.ndarray, str]:
    """Flattened activations of one layer for every image, with the model in eval mode.

    Returns
    -------
    activations : ndarray of shape (N, D), float32
    layer : str
        The resolved layer name.
    """
    x = images.images if isinstance(images, ImageSet) else images
    x = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x).float()
    if x.ndim != 4 or len(x) == 0:
        raise EstimationError(f"layer_activations needs images of shape (N, C, H, W), got {tuple(x.shape)}")
    name, module, use_input = resolve_layer(model, layer)
    dev = resolve_device(device)
    was_training = model.training
    model.to(dev).eval()
    captured: list[torch.Tensor] = []

    # clone at once: a following in-place ReLU would otherwise overwrite the captured output
    def keep(t: torch.Tensor) -> None:
        captured.append(t.detach().float().flatten(1).cpu().clone())

    if use_input:
        handle = module.register_forward_pre_hook(lambda m, inp: keep(inp[0]))
    else:
        handle = module.register_forward_hook(lambda m, inp, out: keep(out))
    try:
        for s in range(0, len(x), batch_size):
            model(x[s:s + batch_size].to(dev))
    finally:
        handle.remove()
        model.train(was_training)
    if not captured:
        raise EstimationError(f"layer {name!r} was never called in the forward pass; choose another layer")
    return torch.cat(captured).numpy(), name


@dataclass(frozen=True)
class ReprEstimate:
    """d_repr of one layer.

    Attributes
    ----------
    value, ci95, estimator, k
        As in :class:`~intrinsics.measure.Estimate`.
    layer : str
        The layer measured (``"penultimate"`` resolved to its real name).
    layer_requested : str
    n_samples : int
        Distinct activation vectors used.
    n_features : int
        Width of the flattened activations.
    warnings : tuple of str
    estimate : dict
        The full :class:`~intrinsics.measure.Estimate` record.
    by_estimator : dict
        The value by each estimator (``mle`` with ``k``, ``twonn``), from one neighbour graph, so d_repr
        can be compared with d_data by the same estimator; None where one could not be computed.
    """

    value: float
    ci95: tuple[float, float] | None
    estimator: str
    k: int | None
    layer: str
    layer_requested: str
    n_samples: int
    n_features: int
    warnings: tuple[str, ...] = ()
    estimate: dict[str, Any] = field(default_factory=dict)
    by_estimator: dict[str, float | None] = field(default_factory=dict)

    def __float__(self) -> float:
        return float(self.value)

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(asdict(self))


def repr_dimension(
    model: nn.Module,
    images: ImageSet | np.ndarray | torch.Tensor,
    layer: str = "penultimate",
    *,
    estimator: str = "twonn",
    k: int = 20,
    twonn_discard: float = 0.1,
    n_bootstrap: int = 200,
    seed: int = 0,
    batch_size: int = 256,
    device: str | torch.device = "auto",
) -> ReprEstimate:
    """Intrinsic dimension of a layer's activations (d_repr).

    Parameters
    ----------
    model : nn.Module
        A trained model (measured in eval mode).
    images : ImageSet or array (N, C, H, W)
        Usually the model's training set (the reference study's choice).
    layer : str, default "penultimate"
        ResNet ``layer4``, VGG ``classifier.3`` (the reference study's layers), smallcnn's hidden
        layer; or any module name.
    estimator : {"twonn", "mle"}, default "twonn"
        TwoNN is what the reference study used for d_repr; MLE (k) matches d_data.
    twonn_discard : float, default 0.1
        Share of the largest TwoNN ratios left out of the fit (Facco et al.'s 10%). The reference
        study's code keeps all but the last point of the empirical CDF: pass 0.0 for parity with it.
    k, n_bootstrap, seed
        As in :func:`intrinsics.measure.intrinsic_dimension`.

    Returns
    -------
    ReprEstimate
    """
    acts, name = layer_activations(model, images, layer, batch_size=batch_size, device=device)
    graph = shared_graph(acts, estimator, k)  # one graph serves both estimators
    params = {"discard_fraction": twonn_discard} if estimator == "twonn" else {}
    est = intrinsic_dimension(graph, estimator, k, n_bootstrap=n_bootstrap, seed=seed, **params)
    return ReprEstimate(
        value=float(est.value),
        ci95=None if est.ci95 is None else tuple(float(v) for v in est.ci95),  # type: ignore[arg-type]
        estimator=est.estimator,
        k=est.k,
        layer=name,
        layer_requested=str(layer),
        n_samples=int(est.n_samples),
        n_features=int(acts.shape[1]),
        warnings=tuple(est.warnings),
        estimate=est.to_dict(),
        by_estimator=by_estimator(graph, k, est, discard_fraction=twonn_discard),
    )

