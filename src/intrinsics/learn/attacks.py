"""L∞ adversarial attacks (FGSM, PGD) in plain torch, and robustness evaluation.

Inputs are images in [0, 1]; ε is on that pixel scale (2/255 is the reference study's FGSM size).
Normalisation happens inside the model, so the attacks never see normalised units. Models are
always attacked in eval mode (BatchNorm statistics frozen, dropout off).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..data import ImageSet
from ..errors import DataError
from .train import as_tensors, resolve_device

__all__ = ["fgsm", "pgd", "parse_eps", "evaluate_attack", "AttackResult", "ATTACKS"]

ATTACKS = ("fgsm", "pgd")


def _check_eps(eps: float) -> float:
    eps = float(eps)
    if not math.isfinite(eps) or eps < 0:
        raise DataError(f"eps={eps!r} must be a number >= 0 on the [0, 1] pixel scale, e.g. 2/255")
    if eps > 1:
        raise DataError(
            f"eps={eps!r} is larger than the whole [0, 1] pixel range; ε is on the [0, 1] scale, "
            f"so write {eps:g}/255 for {eps:g} grey levels"
        )
    return eps


def _check_range(x: torch.Tensor) -> None:
    lo, hi = float(x.min()), float(x.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise DataError(
            f"attacks need images in [0, 1] but these span [{lo:.4g}, {hi:.4g}]; "
            "load the data with intensities scaled to [0, 1]"
        )


def _loss_and_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-input cross-entropy and its gradient with respect to the input only (not the weights)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(x).float(), y, reduction="none")
        (grad,) = torch.autograd.grad(loss.sum(), x)
    return loss.detach(), grad


def _project(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Back into the ε-ball around ``x`` and into [0, 1]."""
    return torch.min(torch.max(x_adv, x - eps), x + eps).clamp_(0.0, 1.0)


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """Fast gradient sign method: one step of size ε along the sign of the input gradient.

    Parameters
    ----------
    model : nn.Module
        Put in eval mode (and left there).
    x : Tensor (N, C, H, W) in [0, 1]
    y : Tensor (N,) of class indices
    eps : float
        L∞ radius on the [0, 1] scale.

    Returns
    -------
    Tensor
        ``clip(x + ε·sign(∇ₓ loss), 0, 1)``; equal to ``x`` when ε = 0.
    """
    eps = _check_eps(eps)
    model.eval()
    x = x.detach()
    if eps == 0:
        return x.clone()
    return _project(x + eps * _loss_and_grad(model, x, y)[1].sign(), x, eps)


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    steps: int = 10,
    step_size: float | None = None,
    random_start: bool = True,
    keep_best: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Projected gradient descent (Madry et al.) in the L∞ ball, keeping each input's worst iterate.

    Parameters
    ----------
    model, x, y, eps
        As for :func:`fgsm`.
    steps : int, default 10
        Signed-gradient steps.
    step_size : float, optional
        Per-step size; default ``2.5·ε/steps`` (enough to cross the ball from a random start).
    random_start : bool, default True
        Start at a uniform random point of the ball (then clipped to [0, 1]).
    keep_best : bool, default True
        Return each input's highest-loss iterate (start included) rather than the last one, so
        more steps never make the attack weaker. False gives textbook PGD.
    generator : torch.Generator, optional
        For the random start (CPU generator; the noise is moved to ``x``'s device).

    Returns
    -------
    Tensor
        Attacked images, inside the ε-ball around ``x`` and inside [0, 1].
    """
    eps = _check_eps(eps)
    steps = int(steps)
    if steps < 1:
        raise DataError(f"steps={steps} must be at least 1")
    alpha = 2.5 * eps / steps if step_size is None else float(step_size)
    if not (alpha > 0 or eps == 0) or not math.isfinite(alpha):
        raise DataError(f"step_size={step_size!r} must be a positive number on the [0, 1] scale")
    model.eval()
    x = x.detach()
    if eps == 0:
        return x.clone()
    if random_start:
        noise = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        x_adv = _project(x + (2 * noise - 1) * eps, x, eps)
    else:
        x_adv = x.clone()

    best, best_loss = x_adv.clone(), torch.full((len(x),), -math.inf, device=x.device)

    def remember(z: torch.Tensor, loss: torch.Tensor) -> None:
        better = loss > best_loss
        best[better] = z[better]
        best_loss.copy_(torch.where(better, loss, best_loss))

    for _ in range(steps):
        loss, grad = _loss_and_grad(model, x_adv, y)
        if keep_best:  # the loss at this iterate comes free with its gradient
            remember(x_adv, loss)
        x_adv = _project(x_adv + alpha * grad.sign(), x, eps)
    if not keep_best:
        return x_adv
    with torch.no_grad():
        remember(x_adv, F.cross_entropy(model(x_adv).float(), y, reduction="none"))
    return best


def parse_eps(spec: str | float | Iterable[str | float]) -> list[float]:
    """ε values from ``"0,2/255,8/255"``, a number, or a list; fractions are accepted.

    Examples
    --------
    >>> parse_eps("0, 2/255, 0.1")
    [0.0, 0.00784313725490196, 0.1]
    """
    if isinstance(spec, (int, float)):
        items: list[Any] = [spec]
    elif isinstance(spec, str):
        items = [s for s in (p.strip() for p in spec.split(",")) if s]
    else:
        items = list(spec)
    if not items:
        raise DataError(f"no ε values in {spec!r}; give e.g. '0,2/255,8/255'")
    out = []
    for item in items:
        try:
            value = float(Fraction(item.replace(" ", ""))) if isinstance(item, str) else float(item)
        except (ValueError, ZeroDivisionError):
            raise DataError(f"ε value {item!r} is not a number or fraction; write e.g. 2/255 or 0.0078") from None
        out.append(_check_eps(value))
    return out


@dataclass(frozen=True)
class AttackResult:
    """Clean and attacked accuracy/loss of a model on one labelled set.

    Attributes
    ----------
    attack : str
        ``"fgsm"`` or ``"pgd"``.
    clean : dict
        ``accuracy`` and ``loss`` (mean cross-entropy) without attack.
    attacks : tuple of dict
        One per ε in the order given: ``eps``, ``accuracy``, ``loss``, ``accuracy_drop``
        (clean − attacked accuracy) and ``loss_increase`` (attacked − clean loss).
    n : int
        Images attacked.
    params : dict
        Steps, step size, random start and seed for PGD; the ε scale.
    """

    attack: str
    clean: dict[str, float]
    attacks: tuple[dict[str, float], ...]
    n: int
    params: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["attacks"] = [dict(a) for a in self.attacks]
        return d


def evaluate_attack(
    model: nn.Module,
    data: ImageSet | tuple[Any, Any],
    eps: Sequence[float] | str = (0.0, 2 / 255, 8 / 255),
    *,
    attack: str = "fgsm",
    steps: int = 10,
    step_size: float | None = None,
    random_start: bool = True,
    batch_size: int = 256,
    seed: int = 0,
    device: str | torch.device = "auto",
) -> AttackResult:
    """Accuracy and loss of ``model`` under an L∞ attack, for each ε.

    Parameters
    ----------
    model : nn.Module
        Taking [0, 1] images (normalisation inside); evaluated in eval mode.
    data : ImageSet or (images, labels)
        Images in [0, 1] (else :class:`~intrinsics.errors.DataError`).
    eps : sequence of float or str
        Radii on the [0, 1] scale, e.g. ``(0, 2/255, 8/255)`` or ``"0,2/255,8/255"``.
    attack : {"fgsm", "pgd"}
    steps, step_size, random_start
        PGD settings (see :func:`pgd`).
    batch_size : int
    seed : int
        Seeds PGD's random start.
    device : str

    Returns
    -------
    AttackResult
    """
    if attack not in ATTACKS:
        raise DataError(f"unknown attack {attack!r}; choose one of {', '.join(ATTACKS)}")
    eps_list = parse_eps(eps)
    x, y = as_tensors(data, "attack data")
    if len(x) == 0:
        raise DataError("no images to attack; give at least one")
    _check_range(x)
    dev = resolve_device(device)
    model.to(dev).eval()
    n = len(x)
    gen = torch.Generator().manual_seed(int(seed))

    def run(e: float | None) -> dict[str, float]:
        loss_sum, correct = 0.0, 0
        for s in range(0, n, batch_size):
            xb, yb = x[s:s + batch_size].to(dev), y[s:s + batch_size].to(dev)
            if e is not None:
                if attack == "fgsm":
                    xb = fgsm(model, xb, yb, e)
                else:
                    xb = pgd(model, xb, yb, e, steps=steps, step_size=step_size,
                             random_start=random_start, generator=gen)
            with torch.no_grad():
                out = model(xb).float()
                loss_sum += float(F.cross_entropy(out, yb, reduction="sum"))
                correct += int((out.argmax(1) == yb).sum())
        return {"accuracy": correct / n, "loss": loss_sum / n}

    clean = run(None)
    rows = []
    for e in eps_list:
        r = run(e)
        rows.append({"eps": e, **r, "accuracy_drop": clean["accuracy"] - r["accuracy"],
                     "loss_increase": r["loss"] - clean["loss"]})
    params: dict[str, Any] = {"scale": "[0, 1] pixel units", "norm": "Linf"}
    if attack == "pgd":
        params.update(steps=int(steps), step_size=step_size if step_size is not None else "2.5*eps/steps",
                      random_start=bool(random_start), seed=int(seed))
    return AttackResult(attack=attack, clean=clean, attacks=tuple(rows), n=n, params=params)
