"""MONAI datasets, datalists and Decathlon dataset.json files, on data the tests write."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

import intrinsics
from intrinsics.data import from_monai, load
from intrinsics.errors import DataError


@pytest.fixture
def pngs(tmp_path):
    """Twelve 16 × 12 grey PNGs of two classes and four patients, and their datalist."""
    rng = np.random.default_rng(0)
    (tmp_path / "img").mkdir()
    entries, arrays = [], []
    for i in range(12):
        a = rng.integers(0, 256, (16, 12), dtype=np.uint8)
        Image.fromarray(a).save(tmp_path / "img" / f"s{i:02d}.png")
        arrays.append(a)
        entries.append({"image": f"img/s{i:02d}.png", "label": i % 2, "patient_id": f"p{i // 3}", "site": "A"})
    return tmp_path, entries, np.stack(arrays)


def _monai_dataset(entries, root, cache=False):
    monai_data = pytest.importorskip("monai.data", reason="MONAI is a dev dependency")
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, ScaleIntensityRanged

    items = [dict(e, image=str(root / e["image"])) for e in entries]
    # MONAI's PIL reader gives (W, H) arrays; no scaling but uint8's range to [0, 1], as intrinsics does.
    transform = Compose([LoadImaged(keys="image"), EnsureChannelFirstd(keys="image"),
                         ScaleIntensityRanged(keys="image", a_min=0, a_max=255, b_min=0, b_max=1)])
    cls = monai_data.CacheDataset if cache else monai_data.Dataset
    kwargs = {"progress": False} if cache else {}
    return cls(data=items, transform=transform, **kwargs)


def test_datalist_without_transforms_reads_files_with_our_readers(pngs):
    root, entries, arrays = pngs
    ds = from_monai(entries, base_dir=root, group_key="patient_id")
    assert ds.N == 12 and ds.shape == (1, 16, 12)
    np.testing.assert_allclose(ds.images[:, 0], arrays / 255, atol=1e-7)
    assert ds.labels.tolist() == [i % 2 for i in range(12)]
    assert ds.ids[3] == "img/s03.png"
    assert ds.keys["patient_id"][:4] == ("p0", "p0", "p0", "p1") and set(ds.keys["site"]) == {"A"}
    assert ds.provenance["reader"]["reader"] == "datalist"


def test_monai_dataset_and_cache_dataset_give_the_same_measurement(pngs):
    root, entries, arrays = pngs
    plain = from_monai(entries, base_dir=root)
    for cache in (False, True):
        ds = from_monai(_monai_dataset(entries, root, cache), group_key="patient_id")
        # MONAI transposes 2-D images (its PIL reader's convention): a fixed permutation of the pixels,
        # so every distance, and so d_data and K_F, is the same as from the files read directly.
        np.testing.assert_allclose(ds.images[:, 0], arrays.transpose(0, 2, 1) / 255, atol=1e-6)
        assert ds.labels.tolist() == plain.labels.tolist()
        assert ds.keys["patient_id"] == plain.keys["patient_id"]
        assert ds.ids[0].endswith("s00.png")
        a = intrinsics.label_sharpness(ds.flat(), ds.labels)
        b = intrinsics.label_sharpness(plain.flat(), plain.labels)
        assert a.value == pytest.approx(b.value, rel=1e-5)


def test_datalist_with_transforms_is_made_into_a_monai_dataset(pngs):
    pytest.importorskip("monai", reason="MONAI is a dev dependency")
    root, entries, _ = pngs
    dataset = _monai_dataset(entries, root)
    ds = from_monai(dataset.data, dataset.transform, limit=6, seed=1)
    assert ds.N == 6 and ds.provenance["source"] == "monai:Dataset"


def test_metatensor_volumes_and_masks_are_refused_with_the_fix(tmp_path):
    pytest.importorskip("monai", reason="MONAI is a dev dependency")
    from monai.data import MetaTensor

    volume = [{"image": MetaTensor(np.zeros((1, 8, 8, 4), np.float32)), "label": 0}]
    with pytest.raises(DataError, match=r"shape \(1, 8, 8, 4\): a 3-D volume.*without transforms.*slices"):
        from_monai(volume, lambda item: item)
    mask = [{"image": MetaTensor(np.zeros((1, 8, 8), np.float32)), "label": np.zeros((1, 8, 8))}]
    with pytest.raises(DataError, match=r"'label' of shape \(1, 8, 8\), not one class .*label_key=None"):
        from_monai(mask, lambda item: item)
    ds = from_monai(mask, lambda item: item, label_key=None)
    assert ds.labels is None and ds.N == 1
    with pytest.raises(DataError, match="item 0 has no 'patient'"):
        from_monai(mask, lambda item: item, label_key=None, group_key="patient")
    crops = [[{"image": np.zeros((1, 4, 4))}] * 2]
    with pytest.raises(DataError, match="list of 2 samples .*RandCropByPosNegLabeld"):
        from_monai(crops, lambda item: item)


def _decathlon(tmp_path, labels_are_masks=False):
    """A Decathlon-style folder: two NIfTI volumes of 5 axial slices, and dataset.json."""
    rng = np.random.default_rng(2)
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "labelsTr").mkdir()
    training = []
    for i in range(2):
        nib.save(nib.Nifti1Image(rng.integers(0, 1000, (10, 9, 5)).astype(np.int16), np.eye(4)),
                 tmp_path / "imagesTr" / f"case_{i}.nii.gz")
        nib.save(nib.Nifti1Image(np.zeros((10, 9, 5), np.uint8), np.eye(4)), tmp_path / "labelsTr" / f"case_{i}.nii.gz")
        training.append({"image": f"./imagesTr/case_{i}.nii.gz",
                         "label": f"./labelsTr/case_{i}.nii.gz" if labels_are_masks else i,
                         "patient_id": f"P{i}"})
    doc = {"name": "Test", "modality": {"0": "CT"}, "labels": {"0": "benign", "1": "malignant"},
           "numTraining": 2, "training": training, "test": ["./imagesTr/case_0.nii.gz"]}
    (tmp_path / "dataset.json").write_text(json.dumps(doc))
    return tmp_path / "dataset.json"


def test_decathlon_dataset_json_is_a_source(tmp_path):
    path = _decathlon(tmp_path)
    ds = load(path)
    assert ds.N == 10 and ds.class_names == ("benign", "malignant")
    assert ds.labels.tolist() == [0] * 5 + [1] * 5  # each slice carries its volume's class
    assert ds.ids[0] == "imagesTr/case_0.nii.gz#z=0" and ds.keys["patient_id"][5] == "P1"
    assert load(path, slices=(1, 3)).N == 4
    test = load(path, split="test")
    assert test.N == 5 and test.labels is None
    assert from_monai(path).N == 10
    with pytest.raises(DataError, match="has no 'validation' list \\(lists: training, test\\)"):
        load(path, split="validation")


def test_segmentation_labels_are_named_as_masks(tmp_path):
    path = _decathlon(tmp_path, labels_are_masks=True)
    with pytest.raises(DataError, match="entries are image files .*segmentation masks.*unlabelled with "
                                        "(--no-labels|labels=False)"):
        load(path)
    ds = load(path, labels=False)
    assert ds.N == 10 and ds.labels is None


def test_datalist_mistakes_get_one_line_each(pngs, tmp_path):
    root, entries, _ = pngs
    with pytest.raises(DataError, match="lists 1 files more than once: img/s00.png \\(entries 0 and 12\\)"):
        from_monai([*entries, entries[0]], base_dir=root)
    with pytest.raises(DataError, match="entry 0 .* names img/nope.png, which is not a file"):
        from_monai([{"image": "img/nope.png", "label": 0}], base_dir=root)
    with pytest.raises(DataError, match="lists 2 image files under 'image' \\(one per modality\\)"):
        from_monai([{"image": ["a", "b"], "label": 0}], base_dir=root)
    with pytest.raises(DataError, match="entries 1 .* have no 'label' but others do"):
        from_monai([entries[0], {"image": entries[1]["image"]}], base_dir=root)
    with pytest.raises(DataError, match="label=0.5: a continuous value"):
        from_monai([dict(entries[0], label=0.5)], base_dir=root)
    with pytest.raises(DataError, match="drop labels"):
        from_monai(entries, base_dir=root, labels="x.csv")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="is not valid JSON"):
        load(bad)
    bad.write_text(json.dumps(entries))
    with pytest.raises(DataError, match="plain list of entries with no splits"):
        load(bad, split="training")


def test_review_cases_get_one_line_each(pngs, tmp_path):
    root, entries, _ = pngs
    with pytest.raises(DataError, match="no entry of datalist has 'lable' \\(keys: label, patient_id, site\\)"):
        from_monai(entries, base_dir=root, label_key="lable")
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps(entries))
    with pytest.raises(DataError, match="no entry of list.json has 'lable'"):
        load(listed, label_column="lable")
    # a mask path is refused whether or not the mask file is there
    with pytest.raises(DataError, match="image files \\(labelsTr/x.nii.gz: segmentation masks\\)"):
        from_monai([dict(entries[0], label="labelsTr/x.nii.gz")], base_dir=root)
    # group values are unwrapped from one-element lists and tensors; a null or list group is refused
    torch = pytest.importorskip("torch")
    ds = from_monai([dict(e, patient_id=[e["patient_id"]]) for e in entries], base_dir=root, group_key="patient_id")
    assert ds.keys["patient_id"][0] == "p0"
    with pytest.raises(DataError, match="patient_id=None, not one value"):
        from_monai([dict(entries[0], patient_id=None)], base_dir=root, group_key="patient_id")
    items = [{"image": torch.zeros(1, 4, 4), "label": torch.tensor(1), "pid": torch.tensor(7)}]
    ds = from_monai(items, lambda item: item, group_key="pid")
    assert ds.keys["pid"] == (7,) and ds.labels.tolist() == [0] and ds.class_names == ("1",)
    assert from_monai([{"image": torch.zeros(1, 4, 4, dtype=torch.bfloat16), "label": np.int64(1)}],
                      lambda item: item).N == 1
    with pytest.raises(DataError, match=r"shape \(8, 8, 3\): channel-last .*EnsureChannelFirstd"):
        from_monai([{"image": np.zeros((8, 8, 3)), "label": 0}], lambda item: item)
    with pytest.raises(DataError, match="is a path \\(a.png\\), not an image; add LoadImaged"):
        from_monai([{"image": "a.png", "label": 0}], lambda item: item)
    with pytest.raises(DataError, match="is a folder, not a datalist"):
        from_monai(root)
    with pytest.raises(DataError, match="is not a datalist \\(.json\\)"):
        from_monai(root / "img" / "s00.png")
    with pytest.raises(DataError, match="a dict .*doc\\['training'\\]"):
        from_monai({"training": entries})
    with pytest.raises(DataError, match="drop base_dir"):
        from_monai(listed, base_dir=root)
    listed.write_text('[{"image": "img/s00.png", "label": ' + "9" * 5000 + "}]")
    with pytest.raises(DataError, match="is not valid JSON"):
        load(listed)
