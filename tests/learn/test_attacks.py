from __future__ import annotations

import pytest
import torch
from torch import nn

from intrinsics.errors import DataError
from intrinsics.learn import evaluate_attack, fgsm, parse_eps, pgd
from intrinsics.learn.models import SmallCNN

EPS = [0.0, 0.02, 0.05, 0.1, 0.2]


class _Linear(nn.Module):
    """Two logits (0, w·x + b): the loss only depends on the margin, so the worst L∞ move is known."""

    def __init__(self, w: torch.Tensor, b: float) -> None:
        super().__init__()
        self.w, self.b = nn.Parameter(w.clone()), nn.Parameter(torch.tensor(b))

    def forward(self, x):
        z = x.flatten(1) @ self.w + self.b
        return torch.stack([torch.zeros_like(z), z], 1)


@pytest.fixture
def linear_case():
    g = torch.Generator().manual_seed(0)
    d = 16
    w = torch.randn(d, generator=g)
    w[3] = 0.0  # a pixel the model ignores must not move
    x = 0.3 + 0.4 * torch.rand(400, 1, 4, 4, generator=g)  # inside [0.3, 0.7]: the box never binds for eps <= 0.3
    model = _Linear(w, b=-float(x.flatten(1).mean(0) @ w))
    with torch.no_grad():
        y = (model(x)[:, 1] > 0).long()
    y[:40] = 1 - y[:40]  # some misclassified points too
    return model, x, y, w


def _closed_form(x, y, w, eps):
    # the loss grows as the signed margin s·(w·x+b) shrinks: move each pixel by eps against s·sign(w)
    s = (2 * y - 1).float().view(-1, 1, 1, 1)
    return (x - eps * s * torch.sign(w).view(1, 1, 4, 4)).clamp(0, 1)


@pytest.mark.parametrize("eps", [0.01, 0.1, 0.3])
def test_fgsm_and_pgd_find_the_closed_form_worst_case_of_a_linear_model(linear_case, eps):
    model, x, y, w = linear_case
    expected = _closed_form(x, y, w, eps)
    assert torch.allclose(fgsm(model, x, y, eps), expected, atol=1e-6)
    # PGD reaches the same corner of the box from a random start; the ignored pixel (w = 0) may
    # stay anywhere in its interval, all equally bad
    got = pgd(model, x, y, eps, steps=20, step_size=eps / 4, random_start=True,
              generator=torch.Generator().manual_seed(1))
    moved = (w != 0).view(1, 1, 4, 4).expand_as(x)
    assert torch.allclose(got[moved], expected[moved], atol=1e-6)
    assert float((got - x).abs().max()) <= eps + 1e-6


def test_linear_attacked_accuracy_matches_the_margin_formula(linear_case):
    model, x, y, w = linear_case
    with torch.no_grad():
        margin = (2 * y - 1) * model(x)[:, 1]
    res = evaluate_attack(model, (x, y), EPS, attack="fgsm", device="cpu")
    for row in res.attacks:
        # correct after attack  <=>  margin - eps·||w||_1 > 0
        expected = float(((margin - row["eps"] * w.abs().sum()) > 0).float().mean())
        assert row["accuracy"] == pytest.approx(expected)


def test_eps_zero_changes_nothing(trained):
    model, x, y, _ = trained
    assert torch.equal(fgsm(model, x, y, 0.0), x)
    assert torch.equal(pgd(model, x, y, 0.0), x)
    res = evaluate_attack(model, (x, y), [0.0], device="cpu")
    assert res.attacks[0]["accuracy"] == res.clean["accuracy"]
    assert res.attacks[0]["loss"] == pytest.approx(res.clean["loss"])


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_accuracy_falls_and_loss_rises_with_eps(trained, attack):
    model, x, y, _ = trained
    res = evaluate_attack(model, (x, y), EPS, attack=attack, device="cpu")
    accs = [r["accuracy"] for r in res.attacks]
    losses = [r["loss"] for r in res.attacks]
    assert all(a >= b for a, b in zip(accs, accs[1:]))
    assert all(a <= b for a, b in zip(losses, losses[1:]))
    assert accs[-1] < res.clean["accuracy"] - 0.3  # a real attack, not a no-op
    for r in res.attacks:
        assert r["accuracy_drop"] == pytest.approx(res.clean["accuracy"] - r["accuracy"])


def test_pgd_is_at_least_as_strong_as_fgsm(trained):
    model, x, y, _ = trained
    f = evaluate_attack(model, (x, y), EPS[1:], attack="fgsm", device="cpu")
    p = evaluate_attack(model, (x, y), EPS[1:], attack="pgd", device="cpu")
    for rf, rp in zip(f.attacks, p.attacks):
        assert rp["accuracy"] <= rf["accuracy"]
        assert rp["loss"] >= rf["loss"]


@pytest.mark.parametrize("eps", [2 / 255, 8 / 255, 0.1])
def test_attacked_inputs_stay_in_the_ball_and_in_unit_range(trained, eps):
    model, x, y, _ = trained
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0  # the clipping is exercised
    for adv in (fgsm(model, x, y, eps), pgd(model, x, y, eps, generator=torch.Generator().manual_seed(0))):
        assert float((adv - x).abs().max()) <= eps + 1e-6
        assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
        assert float((adv - x).abs().max()) > eps / 2  # and it did move


def test_attacks_use_eval_mode_and_leave_batchnorm_alone(trained):
    _, x, y, _ = trained
    torch.manual_seed(0)
    model = SmallCNN(1, 2)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    adv = fgsm(model, x, y, 0.05)
    assert not model.training
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # running stats untouched
    assert torch.equal(adv, fgsm(model.eval(), x, y, 0.05))


def test_results_keep_the_given_eps_order(trained):
    model, x, y, _ = trained
    res = evaluate_attack(model, (x, y), "8/255, 0, 2/255", device="cpu")
    assert [r["eps"] for r in res.attacks] == [8 / 255, 0.0, 2 / 255]
    d = res.to_dict()
    assert set(d["clean"]) == {"accuracy", "loss"} and d["attack"] == "fgsm" and d["n"] == len(x)


def test_parse_eps_accepts_fractions_and_refuses_nonsense():
    assert parse_eps("0,2/255,8/255") == [0.0, 2 / 255, 8 / 255]
    assert parse_eps(0.1) == [0.1]
    assert parse_eps(["1/255", 0.5]) == [1 / 255, 0.5]
    with pytest.raises(DataError, match="8/255"):
        parse_eps("8")
    with pytest.raises(DataError, match="-0.1"):
        parse_eps("-0.1")
    with pytest.raises(DataError, match="'abc'"):
        parse_eps("0,abc")
    with pytest.raises(DataError):
        parse_eps("")


def test_images_outside_unit_range_and_unknown_attacks_are_refused(trained):
    model, x, y, _ = trained
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        evaluate_attack(model, (x * 255, y), [0.1])
    with pytest.raises(DataError, match="'cw'"):
        evaluate_attack(model, (x, y), [0.1], attack="cw")
    with pytest.raises(DataError, match="steps=0"):
        pgd(model, x, y, 0.1, steps=0)


def test_agrees_with_torchattacks(trained):
    """Dev-only cross-check against a well-known implementation, when it is installed."""
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y, _ = trained
    eps = 8 / 255
    ref = torchattacks.FGSM(model, eps=eps)(x, y)
    assert torch.allclose(fgsm(model, x, y, eps), ref, atol=1e-6)
    ref = torchattacks.PGD(model, eps=eps, alpha=eps / 4, steps=7, random_start=False)(x, y)
    ours = pgd(model, x, y, eps, steps=7, step_size=eps / 4, random_start=False, keep_best=False)
    assert torch.allclose(ours, ref, atol=1e-6)
