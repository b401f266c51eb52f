"""Study specs: parsing, validation messages, grid expansion, presets."""

from __future__ import annotations

import tomllib

import pytest

from intrinsics.study.presets import PRESETS, preset_text, write_preset
from intrinsics.study.spec import SpecError, expand_grid, load_spec, parse_spec

from ._fake import tiny_spec_text


def _raw(**over):
    raw = tomllib.loads(tiny_spec_text())
    raw.update(over)
    return raw


def test_grid_is_the_full_product_with_unique_stable_keys():
    spec = parse_spec(_raw())
    grid = expand_grid(spec)
    assert len(grid) == 2 * 1 * 3 * 3
    keys = [r["run_key"] for r in grid]
    assert len(set(keys)) == len(keys)
    assert keys == [r["run_key"] for r in expand_grid(parse_spec(_raw()))]  # deterministic
    r = grid[0]
    assert (r["dataset"], r["model"], r["N"], r["seed"]) == ("ds0", "smallcnn", 10, 0)
    assert r["config"]["training"]["epochs"] == 10 and r["config"]["test_size"] == 200
    assert {x["domain"] for x in grid} == {"natural", "medical"}


def test_run_key_changes_with_settings_but_not_with_comments():
    base = {r["run_key"] for r in expand_grid(parse_spec(_raw()))}
    more_epochs = {r["run_key"] for r in expand_grid(parse_spec(_raw(training={"epochs": 11})))}
    assert not base & more_epochs
    text = "# a comment\n" + tiny_spec_text()
    assert {r["run_key"] for r in expand_grid(parse_spec(tomllib.loads(text)))} == base
    assert parse_spec(_raw()).digest() == parse_spec(tomllib.loads(text)).digest()


def test_dataset_overrides_for_N_and_test_size():
    raw = _raw()
    raw["datasets"][0]["N"] = [5, 7]
    raw["datasets"][0]["test_size"] = 30
    grid = expand_grid(parse_spec(raw))
    ds0 = [r for r in grid if r["dataset"] == "ds0"]
    assert sorted({r["N"] for r in ds0}) == [5, 7] and ds0[0]["config"]["test_size"] == 30
    assert sorted({r["N"] for r in grid if r["dataset"] == "ds1"}) == [10, 20, 40]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"N": []}, "'N' must be a non-empty list"),
        ({"N": [10, 10]}, "lists a value twice"),
        ({"seeds": [-1]}, "'seeds' must be"),
        ({"models": "smallcnn"}, None),  # a single string is accepted
        ({"training": {"epochs": 0}}, "training.epochs must be a positive integer, got 0"),
        ({"training": {"epoch": 3}}, "training has unknown key(s) ['epoch']"),
        ({"attacks": {"fgsm_eps": [2]}}, "attacks.fgsm_eps must be a list of L-inf sizes"),
        ({"measure": {"estimator": "pca"}}, "measure.estimator must be 'mle' or 'twonn', got 'pca'"),
        ({"preprocessing": {"resize": 8}}, "preprocessing has unknown key(s) ['resize']"),
        ({"datasets": []}, "no [[datasets]] given"),
        ({"colour": 1}, "unknown top-level key(s) ['colour']"),
        ({"models": ["smallcnn", "resnet19"]}, "unknown model(s) ['resnet19']; 'models' may list resnet18, "),
        ({"representation": {"layers": "penultimate"}}, "representation.layers must be a list of layer names"),
        ({"representation": {"layers": [""]}}, "representation.layers must be a list of layer names"),
        ({"attacks": {"pgd_eps": [0.5, 1.5]}}, "attacks.pgd_eps must be a list of L-inf sizes"),
        ({"attacks": {"pgd_steps": 0}}, "attacks.pgd_steps must be a positive integer, got 0"),
        ({"attacks": {"pgd_step_size": 0}}, "attacks.pgd_step_size must be a number in (0, 1)"),
        ({"attacks": {"pgd_iters": 5}}, "attacks has unknown key(s) ['pgd_iters']; valid are ['fgsm_eps', "),
    ],
)
def test_validation_names_key_and_fix(change, message):
    if message is None:
        assert parse_spec(_raw(**change)).models == ("smallcnn",)
        return
    with pytest.raises(SpecError) as err:
        parse_spec(_raw(**change))
    assert message in str(err.value)


def test_dataset_validation():
    raw = _raw()
    raw["datasets"][1]["name"] = "ds0"
    with pytest.raises(SpecError, match="'ds0' is used twice"):
        parse_spec(raw)
    raw = _raw()
    del raw["datasets"][0]["domain"]
    with pytest.raises(SpecError, match=r"datasets\[0\].domain is missing"):
        parse_spec(raw)
    raw = _raw()
    raw["datasets"][0]["classes"] = [3]
    with pytest.raises(SpecError, match="at least two classes"):
        parse_spec(raw)
    raw = _raw()
    raw["datasets"][0]["limit"] = 100
    with pytest.raises(SpecError, match="needs 240 images; raise the limit"):
        parse_spec(raw)


def test_load_spec_errors(tmp_path):
    with pytest.raises(SpecError, match="intrinsics study init --preset demo-quick"):
        load_spec(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(SpecError, match="is not valid TOML"):
        load_spec(bad)


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_parse_and_expand(tmp_path, preset):
    path = write_preset(preset, tmp_path / f"{preset}.toml")
    text = path.read_text()
    assert text.lstrip().startswith("#") and str(path) in text  # commented, tells how to run it
    spec = load_spec(path)
    grid = expand_grid(spec)
    domains = {d.domain for d in spec.datasets}
    assert domains == {"natural", "medical"}
    if preset == "reference":
        assert spec.N == (500, 750, 1000, 1250, 1500, 1750) and spec.training["epochs"] == 100
        assert spec.preprocessing["size"] == 224 and spec.training["test_size"] == 750
        assert len(spec.models) == 6 and sum(d.domain == "medical" for d in spec.datasets) == 7
        assert spec.measure["k"] == 20 and spec.measure["kf_samples"] == 1000
        assert "/data/intrinsics/" in text and "GPU" in text
    else:
        assert spec.models == ("smallcnn",) and len(grid) >= 12
    with pytest.raises(SpecError, match="already exists"):
        write_preset(preset, path)
    with pytest.raises(SpecError, match="unknown preset 'big'"):
        preset_text("big")


def test_unknown_model_is_refused_with_the_known_list_and_one_line():
    from intrinsics.learn import MODELS

    with pytest.raises(SpecError) as err:
        parse_spec(_raw(models=["resnet19"]))
    msg = str(err.value)
    assert "\n" not in msg and all(m in msg for m in MODELS)


def test_pgd_settings_are_kept_and_absent_ones_leave_the_digest_alone():
    base = parse_spec(_raw())
    assert set(base.attacks) == {"fgsm_eps", "max_images"}  # old specs keep their digest and run keys
    pgd = parse_spec(_raw(attacks={"pgd_eps": [0.03], "pgd_steps": 5, "pgd_step_size": 0.01}))
    assert pgd.attacks == {"fgsm_eps": [2 / 255], "max_images": 500, "pgd_eps": [0.03], "pgd_steps": 5,
                           "pgd_step_size": 0.01}
    assert pgd.digest() != base.digest()
    assert not {r["run_key"] for r in expand_grid(pgd)} & {r["run_key"] for r in expand_grid(base)}


def test_optional_parity_keys_are_kept_and_absent_ones_leave_the_digest_alone():
    from intrinsics.study._execute import measure_settings, run_settings

    base = parse_spec(_raw())
    assert "twonn_discard" not in base.representation and "kf_pairs" not in base.measure
    parity = parse_spec(_raw(representation={"twonn_discard": 0.0}, measure={"kf_pairs": "aligned"}))
    assert parity.digest() != base.digest()
    assert measure_settings(parity.measure).kf_pairs == "aligned"
    assert measure_settings(base.measure).kf_pairs == "all"
    assert run_settings(expand_grid(parity)[0]).representation.twonn_discard == 0.0
    assert run_settings(expand_grid(base)[0]).representation.twonn_discard == 0.1
    named = parse_spec(_raw(representation={"twonn_discard": "reference"}))
    assert run_settings(expand_grid(named)[0]).representation.twonn_discard == 0.0
    for block, bad in (("representation", {"twonn_discard": 1.5}), ("measure", {"kf_pairs": "some"})):
        with pytest.raises(SpecError) as err:
            parse_spec(_raw(**{block: bad}))
        assert "\n" not in str(err.value) and next(iter(bad)) in str(err.value)


def test_an_exclude_list_enters_the_spec_as_its_ids(tmp_path):
    listing = tmp_path / "confirmed.txt"
    listing.write_text("[3]\n[7]\n", encoding="utf-8")
    raw = _raw()
    raw["datasets"][0]["options"] = {"exclude": str(listing)}
    spec = parse_spec(raw)
    assert spec.datasets[0].options["exclude"] == ["[3]", "[7]"]
    assert spec.digest() != parse_spec(_raw()).digest()
    listing.write_text("[3]\n", encoding="utf-8")
    assert parse_spec(raw).digest() != spec.digest()  # the list changed: another study
    raw["datasets"][0]["options"] = {"exclude": str(tmp_path / "missing.txt")}
    with pytest.raises(SpecError, match="options.exclude .* names no file"):
        parse_spec(raw)
