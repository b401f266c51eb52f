"""Study presets: packaged TOML files, their compatibility contract, and the files written from them."""

from __future__ import annotations

import hashlib
import re
import tomllib
from importlib import resources

import pytest

from intrinsics.study.demo import demo_spec_text
from intrinsics.study.presets import PRESETS, preset_text, write_preset
from intrinsics.study.spec import SpecError, expand_grid, load_spec, parse_spec

# The digests, run counts, first and last run keys, and a hash of all run keys that commit 8a5a1e2
# produced for each preset (then built from Python string templates). Existing study folders are
# tied to them: a preset that parses to anything else would rerun a user's whole study.
# preset: (digest, number of runs, first run key, last run key, sha1 of the run keys joined by "\n")
CONTRACT = {
    # The two demo presets changed on purpose twice (issue "Trustworthy studies"): when they gained
    # validation-based selection (val_size = 60, loss_at = "best_val"; 8a5a1e2 gave a2bb4b94b3 and
    # ab7bf880bd), and when the contrast-only lesion sets became a factorial design (contrast x background
    # factors) and the full demo went to three seeds (a02a99b gave 2c3992c437 and b6e340611b). The
    # reference preset keeps the reference protocol (last epoch) and its digest.
    "demo-quick": ("294b19c492", 21, "mnist-3v8/smallcnn/N=50/seed=0/e2de211aa8",
                   "lesion-b6-c0.3/smallcnn/N=200/seed=0/ed90ed4b23", "3ef157194c72dbd3"),
    "demo": ("cf7d190d38", 126, "mnist-3v8/smallcnn/N=100/seed=0/d155828c53",
             "lesion-b6-c0.3/smallcnn/N=600/seed=2/b242581dfd", "023228ff1ce7bd98"),
    "reference": ("3891090b88", 540, "brats/resnet18/N=500/seed=1337/e04378b33b",
                  "mnist-1v7/vgg19/N=1750/seed=1337/eb1e79f49d", "035da4cf8430cdce"),
}

# A format-style field such as {THIS_FILE} or {name}; shell braces like {neg,pos} are not one.
PLACEHOLDER = re.compile(r"\{\{|\}\}|\{[A-Za-z_]\w*\}")


def test_every_packaged_file_is_a_preset_and_every_preset_is_packaged():
    folder = resources.files("intrinsics").joinpath("presets")
    files = {f.name for f in folder.iterdir() if f.name.endswith(".toml")}
    assert files == {f"{p}.toml" for p in PRESETS}
    assert set(CONTRACT) == set(PRESETS)


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_text_is_the_packaged_file(preset):
    packaged = resources.files("intrinsics").joinpath("presets", f"{preset}.toml").read_text(encoding="utf-8")
    assert preset_text(preset) == packaged
    assert packaged.startswith(f"# intrinsics study spec ({preset}")  # the comments ship with the values
    assert "K_F is only comparable between datasets prepared" in packaged


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_keep_the_digests_and_run_keys_of_8a5a1e2(preset):
    digest, n_runs, first, last, keys_sha1 = CONTRACT[preset]
    spec = parse_spec(tomllib.loads(preset_text(preset)))
    keys = [r["run_key"] for r in expand_grid(spec)]
    assert spec.digest() == digest
    assert (len(keys), keys[0], keys[-1]) == (n_runs, first, last)
    assert hashlib.sha1("\n".join(keys).encode()).hexdigest()[:16] == keys_sha1


@pytest.mark.parametrize("preset", PRESETS)
def test_no_preset_text_has_a_placeholder(tmp_path, preset):
    packaged = preset_text(preset)
    written = write_preset(preset, tmp_path / f"{preset}.toml").read_text(encoding="utf-8")
    for text in (packaged, written):
        assert PLACEHOLDER.search(text) is None, PLACEHOLDER.search(text)
    # The copy a study folder keeps (runner.py saves spec.source_text as study.toml) is the file as written.
    assert PLACEHOLDER.search(load_spec(tmp_path / f"{preset}.toml").source_text) is None


def test_placeholder_pattern_catches_the_old_header():
    assert PLACEHOLDER.search("# Run it with:   intrinsics study run {THIS_FILE} --out runs/demo")
    assert PLACEHOLDER.search("name = \"{name}\"")
    assert PLACEHOLDER.search("/data/intrinsics/brats/{neg,pos}/*.png") is None


def test_demo_spec_text_has_no_placeholder():
    for quick in (True, False):
        assert PLACEHOLDER.search(demo_spec_text(quick)) is None


@pytest.mark.parametrize("preset", PRESETS)
def test_written_preset_names_its_own_file_and_out_folder_and_keeps_the_spec(tmp_path, preset):
    path = write_preset(preset, tmp_path / "sub" / "my.toml")
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines[0] == preset_text(preset).splitlines()[0]  # the title stays first
    assert lines[1] == f"# Run it with:   intrinsics study run {path} --out runs/{preset}"
    assert text.replace(lines[1] + "\n", "", 1) == preset_text(preset)  # nothing else added
    assert load_spec(path).digest() == CONTRACT[preset][0]


def test_written_command_quotes_a_path_with_spaces(tmp_path):
    path = write_preset("demo-quick", tmp_path / "my study.toml")
    assert f"intrinsics study run '{path}' --out runs/demo-quick" in path.read_text(encoding="utf-8")


def test_write_preset_refuses_to_overwrite_unless_asked(tmp_path):
    path = tmp_path / "spec.toml"
    path.write_text("old", encoding="utf-8")
    with pytest.raises(SpecError, match="already exists.*--force"):
        write_preset("demo", path)
    assert path.read_text(encoding="utf-8") == "old"
    write_preset("demo", path, overwrite=True)
    assert load_spec(path).digest() == CONTRACT["demo"][0]


def test_unknown_preset_names_the_valid_ones(tmp_path):
    with pytest.raises(SpecError, match="unknown preset 'big'; choose one of demo-quick, demo, reference"):
        preset_text("big")
    with pytest.raises(SpecError, match="unknown preset 'big'"):
        write_preset("big", tmp_path / "big.toml")
    assert not (tmp_path / "big.toml").exists()
