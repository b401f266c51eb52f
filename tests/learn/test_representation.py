from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from intrinsics.errors import EstimationError
from intrinsics.learn import create_model, layer_activations, repr_dimension, resolve_layer


def _rank_r_net(r: int, d: int = 40, seed: int = 0) -> nn.Sequential:
    """Linear(d, d) whose weight has rank r, then a 2-logit head."""
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(d, d), nn.Linear(d, 2))
    with torch.no_grad():
        net[1].weight.copy_(torch.randn(d, r, generator=g) @ torch.randn(r, d, generator=g))
    return net


@pytest.mark.parametrize("r", [2, 5])
def test_rank_r_layer_has_d_repr_close_to_r(r):
    x = torch.randn(1500, 1, 5, 8, generator=torch.Generator().manual_seed(1))  # generic, 40-dim
    net = _rank_r_net(r)
    for estimator in ("twonn", "mle"):
        est = repr_dimension(net, x, "1", estimator=estimator, n_bootstrap=20)
        assert est.value == pytest.approx(r, rel=0.15), estimator
        assert est.n_features == 40 and est.layer == "1"
    # the input itself is 40-dimensional: d_repr must come from the layer, not the input
    assert repr_dimension(net, x, "0", n_bootstrap=20).value > 3 * 5


def test_penultimate_of_a_plain_module_is_the_input_of_its_last_linear():
    net = _rank_r_net(3)
    x = torch.randn(50, 1, 5, 8)
    name, _, use_input = resolve_layer(net, "penultimate")
    assert (name, use_input) == ("2", True)
    a, _ = layer_activations(net, x, "penultimate")
    b, _ = layer_activations(net, x, "1")
    assert np.allclose(a, b)


def test_reference_penultimate_layers():
    with torch.device("meta"):
        assert resolve_layer(create_model("resnet50"), "penultimate")[0] == "layer4"
        assert resolve_layer(create_model("vgg19"), "penultimate")[0] == "classifier.3"
    assert resolve_layer(create_model("smallcnn"), "penultimate")[0] == "classifier.2"


def test_named_layers_give_the_right_activations():
    torch.manual_seed(0)
    model = create_model("resnet18", 1, 2, image_size=16).eval()
    x = torch.rand(6, 1, 16, 16)
    acts, name = layer_activations(model, x, "layer4")
    assert name == "layer4" and acts.shape == (6, 512 * 1 * 1)
    pooled, _ = layer_activations(model, x, "avgpool")
    assert np.allclose(acts, pooled, atol=1e-6)  # a 1x1 map pools to itself
    fc, _ = layer_activations(model, x, "fc")
    with torch.no_grad():
        assert np.allclose(fc, model(x).numpy(), atol=1e-5)


def test_output_is_captured_before_a_following_inplace_relu():
    torch.manual_seed(0)
    model = create_model("vgg13", 1, 2, image_size=8)
    acts, name = layer_activations(model, torch.rand(4, 1, 8, 8), "classifier[3]")
    assert name == "classifier.3" and acts.shape == (4, 4096)
    # classifier.4 is ReLU(inplace=True): a hook keeping a reference would see no negatives
    assert (acts < 0).any()


def test_hooks_are_removed_and_mode_restored():
    model = create_model("smallcnn")
    model.train()
    layer_activations(model, torch.rand(4, 1, 8, 8), "features.8")
    assert model.training
    assert all(len(m._forward_hooks) == 0 and len(m._forward_pre_hooks) == 0 for m in model.modules())


def test_d_repr_of_a_trained_model(trained, pair38):
    model, _, _, _ = trained
    est = repr_dimension(model, pair38, n_bootstrap=20)
    assert est.layer == "classifier.2" and est.layer_requested == "penultimate"
    assert est.estimator == "twonn" and est.n_features == 128
    assert 1 < est.value < 128 and est.ci95[0] <= est.value <= est.ci95[1]
    assert est.to_dict()["ci95"] == list(est.ci95)


def test_unknown_layer_lists_the_choices():
    with pytest.raises(EstimationError, match="'layer9'.*'layer4'"):
        resolve_layer(create_model("resnet18"), "layer9")
    with pytest.raises(EstimationError, match="last Linear layer, and this model has none"):
        resolve_layer(nn.Sequential(nn.Conv2d(1, 1, 3)), "penultimate")



def test_twonn_discard_follows_the_setting_and_reaches_by_estimator():
    from intrinsics.measure import intrinsic_dimension

    x = torch.randn(800, 1, 5, 8, generator=torch.Generator().manual_seed(2))
    net = _rank_r_net(6)
    acts, _ = layer_activations(net, x, "1")
    for discard in (0.0, 0.1, 0.3):
        direct = intrinsic_dimension(acts, "twonn", discard_fraction=discard, n_bootstrap=0).value
        est = repr_dimension(net, x, "1", twonn_discard=discard, n_bootstrap=0)
        assert est.value == pytest.approx(direct, rel=1e-12)
        assert est.estimate["params"]["discard_fraction"] == discard
        # with MLE as the primary, the TwoNN beside it uses the same discard
        mle = repr_dimension(net, x, "1", estimator="mle", twonn_discard=discard, n_bootstrap=0)
        assert mle.by_estimator["twonn"] == pytest.approx(direct, rel=1e-12)
    kept_all = repr_dimension(net, x, "1", twonn_discard=0.0, n_bootstrap=0).value
    assert kept_all != repr_dimension(net, x, "1", n_bootstrap=0).value


def test_twonn_discard_setting_is_checked():
    from intrinsics.errors import SettingError
    from intrinsics.learn.pipeline import ReprSettings

    assert ReprSettings(twonn_discard=0.0).twonn_discard == 0.0
    assert ReprSettings(twonn_discard="reference").twonn_discard == 0.0  # the reference study's convention
    assert ReprSettings(twonn_discard="facco").twonn_discard == 0.1
    for bad in (1.0, -0.1, "0.1", True):
        with pytest.raises(SettingError, match="twonn_discard"):
            ReprSettings(twonn_discard=bad)
