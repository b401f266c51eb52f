from __future__ import annotations

import dataclasses
import re

import pytest
import torch
import torchvision

from intrinsics.errors import DataError
from intrinsics.learn import MODELS, ImageClassifier, create_model, list_models
from intrinsics.learn.models import REFERENCE_RECIPE


def test_registry_has_the_reference_six_and_smallcnn():
    assert set(list_models()) == {"resnet18", "resnet34", "resnet50", "vgg13", "vgg16", "vgg19", "smallcnn"}
    assert set(REFERENCE_RECIPE) == set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_one_channel_28px_gives_one_logit_per_class_and_depends_on_input(name):
    torch.manual_seed(0)
    model = create_model(name, in_chans=1, num_classes=2, image_size=28).eval()
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 2)
    assert torch.isfinite(out).all()
    # a broken adaptation (e.g. pooling to nothing, or a constant path) would give equal rows
    assert not torch.allclose(out[0], out[1])


@pytest.mark.parametrize("name", ["resnet18", "vgg13", "smallcnn"])
def test_tiny_8px_inputs_work(name):
    model = create_model(name, 1, 3, image_size=8).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 1, 8, 8)).shape == (2, 3)


# Shape-only checks run on the "meta" device: no memory, no initialisation, same shape errors.


def test_vgg_without_image_size_still_runs_on_28px():
    # torchvision's VGG fails on 28x28 (five pools reach 0x0); ours rounds the pools up
    with torch.device("meta"):
        assert create_model("vgg13", 1, 2).eval()(torch.rand(2, 1, 28, 28)).shape == (2, 2)
        with pytest.raises(RuntimeError, match="too small"):
            torchvision.models.vgg13(weights=None).eval()(torch.rand(2, 3, 28, 28))


@pytest.mark.parametrize("size, side", [(28, 1), (64, 2), (224, 7)])
def test_vgg_classifier_is_sized_to_the_real_feature_map(size, side):
    with torch.device("meta"):
        model = create_model("vgg16", 1, 2, image_size=size).eval()
        assert model.net.classifier[0].in_features == 512 * side * side
        assert model(torch.rand(2, 1, size, size)).shape == (2, 2)


@pytest.mark.parametrize("name", MODELS[:-1])
def test_rgb_1000_classes_at_224_matches_torchvision_exactly(name):
    with torch.device("meta"):
        ours = create_model(name, 3, 1000, image_size=224).net.state_dict()
        ref = getattr(torchvision.models, name)(weights=None).state_dict()
    assert list(ours) == list(ref)
    assert all(ours[k].shape == ref[k].shape for k in ref)


def test_first_convolution_takes_the_requested_channels():
    with torch.device("meta"):
        assert create_model("resnet34", in_chans=1).net.conv1.weight.shape[1] == 1
        assert create_model("vgg13", in_chans=1).net.features[0].weight.shape[1] == 1
    assert create_model("smallcnn", in_chans=3).net.features[0].weight.shape[1] == 3


def test_normalisation_is_the_first_layer_and_travels_in_the_state_dict():
    model = create_model("smallcnn", 1, 2).eval()
    model.set_normalization([0.25], [0.5])
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(model(x), model.net((x - 0.25) / 0.5))
    state = model.state_dict()
    assert float(state["normalize.mean"]) == 0.25 and float(state["normalize.std"]) == 0.5
    other = create_model("smallcnn", 1, 2)
    other.load_state_dict(state)
    assert float(other.normalize.std) == 0.5
    # a constant channel (std 0) must not divide by zero
    model.set_normalization([0.0], [0.0])
    assert float(model.normalize.std) == 1.0


def test_unknown_model_fails_at_once_with_the_known_names():
    with pytest.raises(DataError) as err:
        create_model("resnet1000")
    msg = str(err.value)
    assert "'resnet1000'" in msg
    for name in MODELS:
        assert name in msg


def test_bad_channel_or_class_counts_are_refused():
    with pytest.raises(DataError, match="in_chans=0"):
        create_model("smallcnn", in_chans=0)
    with pytest.raises(DataError, match="num_classes=1"):
        create_model("smallcnn", num_classes=1)


def test_spec_rebuilds_the_same_architecture():
    with torch.device("meta"):
        model = create_model("vgg13", 1, 2, image_size=(28, 28))
        assert isinstance(model, ImageClassifier)
        spec = model.spec()
        rebuilt = create_model(spec["name"], spec["in_chans"], spec["num_classes"], image_size=spec["image_size"])
        rebuilt.load_state_dict(model.state_dict(), assign=True)  # raises on any shape mismatch
        with pytest.raises(RuntimeError, match="size mismatch"):
            create_model("vgg13", 1, 2, image_size=64).load_state_dict(model.state_dict(), assign=True)


# -- the registry: one entry per model, every other view derived from it --------------------------


def test_registry_views_keep_their_values():
    from intrinsics.learn.models import PENULTIMATE

    assert MODELS == ("resnet18", "resnet34", "resnet50", "vgg13", "vgg16", "vgg19", "smallcnn")
    assert list_models() == list(MODELS)
    assert REFERENCE_RECIPE == {
        "resnet18": {"lr": 1e-3, "batch_size": 40},
        "resnet34": {"lr": 1e-3, "batch_size": 25},
        "resnet50": {"lr": 1e-3, "batch_size": 12},
        "vgg13": {"lr": 1e-4, "batch_size": 6},
        "vgg16": {"lr": 1e-4, "batch_size": 6},
        "vgg19": {"lr": 1e-4, "batch_size": 6},
        "smallcnn": {"lr": 1e-3, "batch_size": 64},
    }
    assert all(isinstance(r["batch_size"], int) and isinstance(r["lr"], float) for r in REFERENCE_RECIPE.values())
    assert PENULTIMATE == {"resnet": "layer4", "vgg": "classifier.3", "smallcnn": "classifier.2"}


@pytest.mark.parametrize("name", MODELS)
def test_model_info_is_the_one_entry_behind_every_view(name):
    from intrinsics.learn.models import PENULTIMATE, model_family, model_info

    info = model_info(name)
    assert info.name == name
    family = "resnet" if name.startswith("resnet") else "vgg" if name.startswith("vgg") else "smallcnn"
    assert model_family(name) == info.family == family
    assert REFERENCE_RECIPE[name] == {"lr": info.lr, "batch_size": info.batch_size}
    assert PENULTIMATE[info.family] == info.penultimate
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.lr = 0.5


@pytest.mark.parametrize("name", MODELS)
def test_each_penultimate_layer_exists_in_the_built_network(name):
    from intrinsics.learn.models import model_info

    with torch.device("meta"):
        net = create_model(name, 1, 2, image_size=28).net
    assert model_info(name).penultimate in dict(net.named_modules())


def test_model_help_lists_every_model_once_default_first():
    from intrinsics.learn.models import DEFAULT_MODEL, model_help

    text = model_help()
    assert text == "smallcnn (fast, CPU), resnet18, resnet34, resnet50, vgg13, vgg16, vgg19"
    assert text.startswith(DEFAULT_MODEL) and "\n" not in text
    assert sorted(re.sub(r" \([^)]*\)", "", text).split(", ")) == sorted(MODELS)  # notes dropped


@pytest.mark.parametrize("lookup", ["model_info", "model_family"])
def test_unknown_name_in_lookups_names_the_valid_ones(lookup):
    from intrinsics.learn import models

    with pytest.raises(DataError, match="unknown model 'resnet1000'; choose one of resnet18, .*smallcnn"):
        getattr(models, lookup)("resnet1000")
    with pytest.raises(DataError, match="unknown model"):
        getattr(models, lookup)(["smallcnn"])  # unhashable: still the same clear error


def test_register_refuses_a_repeated_name_or_a_family_that_disagrees_on_penultimate():
    from intrinsics.learn.models import ModelInfo, model_info
    from intrinsics.registry import _register

    before = list_models()
    with pytest.raises(ValueError, match="'smallcnn' is registered twice"):
        _register(model_info("smallcnn"))
    odd = dataclasses.replace(model_info("resnet18"), name="resnet-odd", penultimate="avgpool")
    with pytest.raises(ValueError, match="penultimate='avgpool' but 'resnet18'"):
        _register(odd)
    assert isinstance(odd, ModelInfo) and list_models() == before


def test_train_recipe_comes_from_the_registry_and_outsiders_get_the_default_models():
    from intrinsics.learn import TrainConfig
    from intrinsics.learn.models import DEFAULT_MODEL, model_info

    for name in MODELS:
        cfg = TrainConfig().resolved(name)
        assert (cfg.batch_size, cfg.lr) == (model_info(name).batch_size, model_info(name).lr)
    default = model_info(DEFAULT_MODEL)
    for outsider in (None, "my-net"):
        cfg = TrainConfig().resolved(outsider)
        assert (cfg.batch_size, cfg.lr) == (default.batch_size, default.lr) == (64, 1e-3)
