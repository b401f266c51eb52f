"""The package as a user installs it: a wheel built from this tree, installed into a fresh virtual
environment, runs `intrinsics measure` and finds its presets (not the source tree's files)."""

from __future__ import annotations

import json
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """``python -m build``: the sdist, and the wheel built from that sdist (so the sdist is complete)."""
    import shutil

    # Built from a copy of what a release holds, so the source tree gets no build/ or egg-info, and test
    # processes running side by side (pytest -n) never build in one folder.
    src = tmp_path_factory.mktemp("tree")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "-o", str(out), str(src)], check=True,
                   capture_output=True, timeout=600)
    return out


@pytest.fixture(scope="module")
def wheel(dist) -> Path:
    (path,) = dist.glob("intrinsics-*.whl")
    return path


def test_the_sdist_holds_the_sources_schemas_and_license(dist):
    import tarfile

    (sdist,) = dist.glob("intrinsics-*.tar.gz")
    names = {n.split("/", 1)[1] for n in tarfile.open(sdist).getnames() if "/" in n}
    assert {"pyproject.toml", "LICENSE", "README.md", "src/intrinsics/schemas/measure.schema.json"} <= names


def test_the_wheel_holds_the_code_presets_and_license(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "intrinsics/cli.py" in names and "intrinsics/presets/demo-quick.toml" in names
    assert {f"intrinsics/schemas/{n}.schema.json" for n in ("measure", "audit", "fits", "common")} <= set(names)
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "License-Expression: MIT" in meta and any(n.endswith("licenses/LICENSE") for n in names)
    assert not any(n.startswith("tests/") for n in names)


def test_the_installed_wheel_measures_from_a_fresh_environment(wheel, tmp_path):
    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True,
                   capture_output=True, timeout=300)
    # The heavy dependencies (torch, ...) come from this environment's site-packages, on PYTHONPATH: an
    # editable install's path hooks are not read from there, so `intrinsics` is the fresh environment's.
    deps = ":".join(site.getsitepackages())
    run = dict(capture_output=True, text=True, timeout=600, env={"PYTHONPATH": deps, "PATH": "/usr/bin:/bin"})
    where = subprocess.run([str(py), "-c", "import intrinsics; print(intrinsics.__file__)"], **run)
    assert where.returncode == 0 and str(env_dir) in where.stdout, where.stderr
    out = tmp_path / "m.json"
    done = subprocess.run([str(env_dir / "bin" / "intrinsics"), "measure", "builtin:digits", "--classes", "3,8",
                           "--bootstrap", "0", "--json", str(out)], **run)
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["dataset"]["N"] == 357
    check = f"import json; from intrinsics.schemas import validate; validate(json.load(open({str(out)!r})), 'measure')"
    valid = subprocess.run([str(py), "-c", check], **run)  # the installed package's own schema files
    assert valid.returncode == 0, valid.stderr
    version = subprocess.run([str(env_dir / "bin" / "intrinsics"), "--version"], **run)
    assert version.stdout.strip().startswith("intrinsics ")
    preset = subprocess.run([str(env_dir / "bin" / "intrinsics"), "study", "init", str(tmp_path / "s.toml")], **run)
    assert preset.returncode == 0 and "[[datasets]]" in (tmp_path / "s.toml").read_text()
