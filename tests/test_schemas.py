"""The shipped JSON Schemas: every JSON the CLI writes (measure, audit.json, fits.json) follows its
schema, and the schemas are strict enough to refuse a wrong document."""

from __future__ import annotations

import copy
import json

import jsonschema
import numpy as np
import pytest

from intrinsics import from_arrays, measure_dataset
from intrinsics.cli import main
from intrinsics.schemas import SCHEMAS, schema, schema_path, validate


def _measure(tmp_path, *args):
    out = tmp_path / "m.json"
    assert main(["measure", *map(str, args), "--json", str(out), "--bootstrap", "10", "--quiet"]) == 0
    doc = json.loads(out.read_text())
    validate(doc, "measure")
    return doc


def _npz(path, duplicate_with_other_label=False, labelled=True):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (120, 10, 10), dtype=np.uint8)
    labels = np.arange(120) % 2
    if duplicate_with_other_label:
        images[1] = images[0]  # the same image with two labels: a label conflict, left out of K_F
    np.savez(path, images=images, **({"labels": labels} if labelled else {}))
    return path


def test_schemas_are_valid_draft_2020_12_and_ship_in_the_package():
    for name in (*SCHEMAS, "common"):
        assert schema_path(name).is_file()
        jsonschema.Draft202012Validator.check_schema(schema(name))
    assert schema("measure")["properties"]["K_F"]["$ref"] == "common.schema.json#/$defs/K_F"


def test_every_measure_variant_follows_the_schema(tmp_path):
    data = _npz(tmp_path / "d.npz")
    _measure(tmp_path, data, "--kf-samples", "50")
    _measure(tmp_path, data, "--estimator", "twonn", "--no-exact", "--kf-samples", "50")
    sweep = _measure(tmp_path, data, "--k-sweep", "--kf-samples", "50")
    assert sweep["d_data"]["k_sweep"]["ks"][0] == 5
    unlabelled = _measure(tmp_path, _npz(tmp_path / "u.npz", labelled=False))
    assert unlabelled["K_F"] is None
    conflict = _measure(tmp_path, _npz(tmp_path / "dup.npz", duplicate_with_other_label=True), "--kf-samples", "50")
    assert conflict["K_F"]["label_conflicts"] == [[0, 1]]
    (tmp_path / "ex.txt").write_text("images[5]\nimages[6]\n")
    excluded = _measure(tmp_path, data, "--exclude", tmp_path / "ex.txt", "--kf-samples", "50")
    assert excluded["exclusion"]["n_excluded"] == 2
    python = measure_dataset(from_arrays(np.load(data)["images"], np.load(data)["labels"])).to_dict(version="x")
    validate(json.loads(json.dumps(python)), "measure")


def test_audit_json_follows_the_schema(tmp_path):
    data = _npz(tmp_path / "d.npz")
    for extra in ([], ["--test", str(_npz(tmp_path / "t.npz"))]):
        out = tmp_path / f"audit{len(extra)}"
        assert main(["audit", str(data), *extra, "--out", str(out), "--bootstrap", "10", "--quiet",
                     "--kf-samples", "50"]) == 0
        doc = json.loads((out / "audit.json").read_text())
        validate(doc, "audit")
        assert (doc["audit"]["n_test"] is None) == (not extra)


def test_fits_json_follows_the_schema(tmp_path):
    from intrinsics.study.report import write_fits

    from .study._fake import fill_store_from_law

    fill_store_from_law(tmp_path, seed=1)
    assert main(["report", str(tmp_path), "--bootstrap", "20"]) == 0
    doc = json.loads((tmp_path / "fits.json").read_text())
    validate(doc, "fits")
    empty = tmp_path / "few"
    fill_store_from_law(empty, seed=2, n_runs_per=1)
    validate(json.loads(json.dumps(write_fits(empty, n_bootstrap=0))), "fits")


@pytest.mark.parametrize("path, value", [
    (("d_data", "estimator"), "pca"),
    (("d_data", "ci95"), [1.0]),
    (("K_F", "value"), "NaN"),
    (("dataset", "N"), -1),
    (("dataset", "shape"), [8, 8]),
    (("d_data", "value"), -5.0),
    (("K_F", "exact"), -1.0),
])
def test_a_wrong_document_is_refused(tmp_path, path, value):
    doc = copy.deepcopy(_measure(tmp_path, _npz(tmp_path / "d.npz"), "--kf-samples", "50"))
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        validate(doc, "measure")
    del doc["d_data"]
    with pytest.raises(jsonschema.ValidationError, match="'d_data' is a required property"):
        validate(doc, "measure")
