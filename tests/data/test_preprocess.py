"""Preprocessing: intensity scaling, channels, resizing, class selection, limit, provenance."""

from __future__ import annotations

import json
import time
import warnings

import numpy as np
import pytest

from intrinsics.data import RawImages, comparison_key, preprocess
from intrinsics.data.preprocess import LUMA_WEIGHTS
from intrinsics.errors import DataError, IntrinsicsWarning


def raw(images, labels=None, **kw):
    return RawImages(images=list(images), labels=labels, **kw)


# --- intensity -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype, top",
    [(np.uint8, 255), (np.uint16, 65535), (np.int8, 127), (np.uint32, 2**32 - 1)],
)
def test_unit_scales_integers_by_their_dtype_range(dtype, top):
    info = np.iinfo(dtype)
    img = np.array([[info.min, top], [info.min, top]], dtype=dtype)
    ds = preprocess(raw([img]))
    assert ds.images.dtype == np.float32
    np.testing.assert_allclose(ds.images[0, 0], [[0, 1], [0, 1]], atol=1e-6)
    assert ds.preprocessing["scale"]["method"] == "dtype_range"
    assert ds.preprocessing["scale"]["ranges"][np.dtype(dtype).name] == [float(info.min), float(top)]


def test_sixteen_bit_values_are_not_truncated():
    img = np.array([[0, 1, 256, 65535]], dtype=np.uint16)
    ds = preprocess(raw([img]))
    np.testing.assert_allclose(ds.images[0, 0, 0], img[0] / 65535.0, rtol=1e-6)
    # 1 and 256 differ after scaling; an 8-bit truncation would have merged them with 0.
    assert 0 < ds.images[0, 0, 0, 1] < ds.images[0, 0, 0, 2]


def test_bool_images_map_to_zero_and_one():
    img = np.eye(3, dtype=bool)
    ds = preprocess(raw([img]))
    np.testing.assert_array_equal(ds.images[0, 0], np.eye(3, dtype=np.float32))


def test_float_images_in_unit_range_are_kept():
    rng = np.random.default_rng(0)
    img = rng.random((5, 6)).astype(np.float64)
    ds = preprocess(raw([img]))
    np.testing.assert_allclose(ds.images[0, 0], img, rtol=1e-6)
    assert ds.preprocessing["scale"]["ranges"] == {"float64": [0.0, 1.0]}


def test_float_images_outside_unit_range_need_a_range():
    img = np.array([[0.0, 255.0]], dtype=np.float32)
    with pytest.raises(DataError, match=r"value_range=\(0, 255\)"):
        preprocess(raw([img]))


def test_explicit_value_range_wins_and_is_recorded():
    img = np.array([[0.0, 127.5, 255.0]], dtype=np.float32)
    ds = preprocess(raw([img]), value_range=(0, 255))
    np.testing.assert_allclose(ds.images[0, 0, 0], [0, 0.5, 1], atol=1e-6)
    assert ds.preprocessing["scale"] == {"method": "value_range", "value_range": [0.0, 255.0], "from": "argument"}


def test_reader_value_range_is_used_for_integer_data():
    # e.g. a DICOM window: int16 values in a -100..300 window map to [0, 1] by the window, not the dtype.
    img = np.array([[-100, 100, 300]], dtype=np.int16)
    ds = preprocess(raw([img], value_range=(-100.0, 300.0)))
    np.testing.assert_allclose(ds.images[0, 0, 0], [0, 0.5, 1], atol=1e-6)
    assert ds.preprocessing["scale"]["from"] == "reader"


def test_values_outside_value_range_are_clipped_with_a_warning():
    img = np.array([[-10.0, 5.0, 20.0]], dtype=np.float32)
    with pytest.warns(IntrinsicsWarning, match="clipped"):
        ds = preprocess(raw([img, img * 0]), value_range=(0, 10))
    np.testing.assert_allclose(ds.images[0, 0, 0], [0, 0.5, 1])
    assert ds.preprocessing["clipped_images"] == 1


def test_per_image_max_divides_each_image_by_its_maximum():
    a = np.array([[0, 50], [100, 200]], dtype=np.uint8)
    b = np.array([[0, 10], [20, 40]], dtype=np.uint8)
    ds = preprocess(raw([a, b]), intensity="per_image_max")
    np.testing.assert_allclose(ds.images[0, 0], a / 200.0, rtol=1e-6)
    np.testing.assert_allclose(ds.images[1, 0], b / 40.0, rtol=1e-6)
    assert ds.images.reshape(2, -1).max(axis=1).tolist() == [1.0, 1.0]


def test_per_image_max_keeps_maximum_one_after_resize():
    rng = np.random.default_rng(1)
    imgs = [rng.integers(0, 256, (16, 16)).astype(np.uint8) for _ in range(3)]
    ds = preprocess(raw(imgs), intensity="per_image_max", size=5)
    np.testing.assert_allclose(ds.images.reshape(3, -1).max(axis=1), 1.0, rtol=1e-6)


def test_per_image_max_leaves_blank_images_at_zero_with_a_warning():
    blank = np.zeros((4, 4), np.uint8)
    img = np.full((4, 4), 7, np.uint8)
    with pytest.warns(IntrinsicsWarning, match=r"1 of 2 images are all zero"):
        ds = preprocess(raw([blank, img], origins=["blank.png", "b.png"]), intensity="per_image_max")
    assert np.all(ds.images[0] == 0) and np.all(np.isfinite(ds.images))
    np.testing.assert_allclose(ds.images[1], 1.0)
    assert ds.preprocessing["all_zero_images"] == 1


def test_per_image_max_refuses_negative_values():
    img = np.array([[-5, 10]], dtype=np.int16)
    with pytest.raises(DataError, match="negative"):
        preprocess(raw([img], origins=["ct.dcm"]), intensity="per_image_max")


def test_minmax_uses_the_dataset_range_not_per_image():
    a = np.array([[10.0, 20.0]], dtype=np.float32)
    b = np.array([[10.0, 30.0]], dtype=np.float32)
    ds = preprocess(raw([a, b]), intensity="minmax")
    np.testing.assert_allclose(ds.images[:, 0, 0], [[0, 0.5], [0, 1]], atol=1e-6)
    assert ds.preprocessing["scale"] == {"method": "dataset_minmax", "value_range": [10.0, 30.0]}


def test_minmax_of_a_constant_dataset_is_an_error():
    with pytest.raises(DataError, match="minmax"):
        preprocess(raw([np.ones((2, 2), np.float32)]), intensity="minmax")


def test_mixed_integer_widths_warn():
    with pytest.warns(IntrinsicsWarning, match="mix integer types"):
        ds = preprocess(raw([np.full((2, 2), 255, np.uint8), np.full((2, 2), 65535, np.uint16)]))
    np.testing.assert_allclose(ds.images, 1.0)


def test_nan_and_inf_are_errors_naming_count_and_origins():
    good = np.zeros((3, 3), np.float32)
    bad1 = good.copy()
    bad1[0, 0] = np.nan
    bad2 = good.copy()
    bad2[1, 1] = np.inf
    r = raw([good, bad1, good, bad2], origins=["a.tif", "b.tif", "c.tif", "d.tif"])
    with pytest.raises(DataError, match=r"2 of 4 images contain NaN or infinite.*b\.tif, d\.tif"):
        preprocess(r)


# --- channels and size ---------------------------------------------------------------------------


def test_rgb_to_grey_uses_bt601_luma():
    img = np.zeros((2, 2, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 255, 128, 0
    ds = preprocess(raw([img]), channels=1)
    expected = (LUMA_WEIGHTS[0] * 255 + LUMA_WEIGHTS[1] * 128) / 255
    np.testing.assert_allclose(ds.images[0, 0], expected, rtol=1e-6)
    assert ds.shape == (1, 2, 2)
    assert ds.preprocessing["channel_conversion"] == "rgb_to_grey_bt601"


def test_grey_to_rgb_repeats_the_channel():
    img = np.arange(4, dtype=np.uint8).reshape(2, 2)
    ds = preprocess(raw([img]), channels=3)
    assert ds.shape == (3, 2, 2)
    for c in range(3):
        np.testing.assert_allclose(ds.images[0, c], img / 255.0, rtol=1e-6)


def test_rgb_stays_channel_first_and_in_order():
    img = np.zeros((3, 4, 3), np.uint8)
    img[..., 2] = 255  # blue only
    ds = preprocess(raw([img]))
    assert ds.shape == (3, 3, 4)
    assert ds.images[0, 2].min() == 1.0 and ds.images[0, :2].max() == 0.0


def test_mixed_channel_counts_error_names_examples_and_fix():
    r = raw([np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.uint8)], origins=["grey.png", "colour.png"])
    with pytest.raises(DataError, match=r"grey\.png.*colour\.png.*channels=1"):
        preprocess(r)
    assert preprocess(r, channels=1).shape == (1, 4, 4)


def test_mixed_sizes_error_names_examples_and_suggests_size():
    r = raw([np.zeros((4, 4), np.uint8), np.zeros((6, 5), np.uint8), np.zeros((4, 4), np.uint8)],
            origins=["a.png", "b.png", "c.png"])
    with pytest.raises(DataError, match=r"4x4: a\.png, c\.png.*6x5: b\.png.*size=\(4, 4\)"):
        preprocess(r)
    ds = preprocess(r, size=(3, 2))
    assert ds.images.shape == (3, 1, 3, 2)
    assert ds.preprocessing["resize"] is not None
    assert ds.preprocessing["original_shapes"] == [[4, 4], [6, 5]]


def test_resize_keeps_constant_images_constant():
    img = np.full((17, 11), 100, np.uint8)
    ds = preprocess(raw([img]), size=(8, 23))
    assert ds.images.shape == (1, 1, 8, 23)
    np.testing.assert_allclose(ds.images, 100 / 255, rtol=1e-5)


def test_resize_is_antialiased():
    # A one-pixel checkerboard shrunk 4x must come out as its mean, not aliased to 0s and 1s.
    checker = (np.indices((32, 32)).sum(axis=0) % 2).astype(np.uint8) * 255
    ds = preprocess(raw([checker]), size=8)
    np.testing.assert_allclose(ds.images, 0.5, atol=0.02)


def test_no_resize_when_size_matches():
    img = np.arange(16, dtype=np.uint8).reshape(4, 4)
    ds = preprocess(raw([img]), size=4)
    np.testing.assert_allclose(ds.images[0, 0], img / 255.0, rtol=1e-6)
    assert ds.preprocessing["resize"] is None


@pytest.mark.parametrize("bad", ["abc", 0, (3, -1), 2.5, (1, 2, 3)])
def test_bad_size_is_an_error(bad):
    with pytest.raises(DataError, match="size="):
        preprocess(raw([np.zeros((2, 2), np.uint8)]), size=bad)


def test_size_accepts_strings():
    ds = preprocess(raw([np.zeros((4, 4), np.uint8)]), size="3x2")
    assert ds.images.shape[2:] == (3, 2)


@pytest.mark.parametrize(
    "option, match",
    [({"channels": 2}, "channels="), ({"intensity": "zscore"}, "intensity="),
     ({"value_range": (5, 5)}, "value_range="), ({"limit": 0}, "limit="), ({"seed": "x"}, "seed=")],
)
def test_bad_options_are_errors(option, match):
    with pytest.raises(DataError, match=match):
        preprocess(raw([np.zeros((2, 2), np.uint8)]), **option)


def test_no_images_is_an_error():
    with pytest.raises(DataError, match="no images"):
        preprocess(raw([]), source="empty")


# --- labels, classes, limit ----------------------------------------------------------------------


def _digits_like(n_per_class=10, n_classes=4):
    images = [np.full((2, 2), 10 * c, np.uint8) for c in range(n_classes) for _ in range(n_per_class)]
    labels = [c for c in range(n_classes) for _ in range(n_per_class)]
    return images, labels


def test_string_labels_become_sorted_classes():
    imgs = [np.zeros((2, 2), np.uint8)] * 4
    ds = preprocess(raw(imgs, ["tumour", "normal", "tumour", "normal"]))
    assert ds.class_names == ("normal", "tumour")
    assert ds.labels.tolist() == [1, 0, 1, 0]
    assert ds.labels.dtype == np.int64


def test_numeric_string_labels_sort_numerically():
    imgs = [np.zeros((2, 2), np.uint8)] * 3
    ds = preprocess(raw(imgs, ["10", "2", "1"]))
    assert ds.class_names == ("1", "2", "10")
    assert ds.labels.tolist() == [2, 1, 0]


def test_integer_labels_are_compacted_with_their_values_as_names():
    imgs = [np.zeros((2, 2), np.uint8)] * 3
    ds = preprocess(raw(imgs, np.array([7, 3, 7])))
    assert ds.class_names == ("3", "7")
    assert ds.labels.tolist() == [1, 0, 1]


def test_reader_class_names_keep_their_indices():
    imgs = [np.zeros((2, 2), np.uint8)] * 2
    ds = preprocess(raw(imgs, np.array([2, 0]), class_names=("a", "b", "c")))
    assert ds.class_names == ("a", "b", "c")
    assert ds.labels.tolist() == [2, 0]


def test_labels_out_of_class_range_are_errors():
    with pytest.raises(DataError, match="outside 0..1"):
        preprocess(raw([np.zeros((2, 2), np.uint8)], np.array([5]), class_names=("a", "b")))


def test_label_count_mismatch_is_an_error():
    with pytest.raises(DataError, match="2 images but 1 labels"):
        preprocess(raw([np.zeros((2, 2), np.uint8)] * 2, [0]))


def test_missing_label_is_an_error_naming_the_image():
    with pytest.raises(DataError, match="b.png"):
        preprocess(raw([np.zeros((2, 2), np.uint8)] * 2, ["x", None], origins=["a.png", "b.png"]))


@pytest.mark.parametrize("classes", [(3, 1), "3,1", ("3", "1"), [np.int64(3), 1]])
def test_classes_select_and_relabel_in_given_order(classes):
    images, labels = _digits_like()
    ds = preprocess(raw(images, labels), classes=classes)
    assert ds.N == 20
    assert ds.class_names == ("3", "1")
    # Class 3 images (value 30) are now label 0, class 1 images (value 10) label 1.
    np.testing.assert_allclose(ds.images[ds.labels == 0], 30 / 255, rtol=1e-6)
    np.testing.assert_allclose(ds.images[ds.labels == 1], 10 / 255, rtol=1e-6)
    assert ds.preprocessing["classes"] == ["3", "1"]


def test_classes_by_name_win_over_indices():
    imgs = [np.full((2, 2), v, np.uint8) for v in (0, 1, 2)]
    # Folders named "1" and "2" have indices 0 and 1: "2" must select the folder "2", not index 2.
    ds = preprocess(raw(imgs, ["1", "2", "x"]), classes="2,x")
    assert ds.class_names == ("2", "x")
    np.testing.assert_allclose(ds.images[:, 0, 0, 0], [1 / 255, 2 / 255], rtol=1e-6)


def test_a_class_name_with_a_comma_is_one_class():
    imgs = [np.zeros((2, 2), np.uint8)] * 3
    r = raw(imgs, np.array([0, 1, 1]), class_names=("malignant", "normal, benign"))
    ds = preprocess(r, classes="normal, benign")
    assert ds.class_names == ("normal, benign",) and ds.N == 2
    assert preprocess(r, classes="1,0").class_names == ("normal, benign", "malignant")


def test_value_range_from_a_command_line_string():
    img = np.array([[0.0, 127.5, 255.0]], dtype=np.float32)
    np.testing.assert_allclose(preprocess(raw([img]), value_range="0,255").images.ravel(), [0, 0.5, 1], atol=1e-6)


def test_classes_by_index_when_names_are_words():
    imgs = [np.zeros((2, 2), np.uint8)] * 3
    ds = preprocess(raw(imgs, np.array([0, 1, 1]), class_names=("normal", "pneumonia")), classes=(1,))
    assert ds.class_names == ("pneumonia",) and ds.N == 2


def test_absent_class_error_lists_available_classes():
    images, labels = _digits_like()
    with pytest.raises(DataError, match=r"class 7 is not in this dataset; available classes: 0='0' \(10 images\)"):
        preprocess(raw(images, labels), classes=(1, 7))


def test_class_without_images_is_an_error():
    imgs = [np.zeros((2, 2), np.uint8)] * 2
    with pytest.raises(DataError, match="has no images"):
        preprocess(raw(imgs, np.array([0, 0]), class_names=("a", "b")), classes=("a", "b"))


def test_repeated_class_is_an_error():
    images, labels = _digits_like()
    with pytest.raises(DataError, match="twice"):
        preprocess(raw(images, labels), classes=(1, "1"))


def test_classes_on_unlabelled_data_is_an_error():
    with pytest.raises(DataError, match="unlabelled"):
        preprocess(raw([np.zeros((2, 2), np.uint8)]), classes=(0,))


def test_limit_is_reproducible_and_depends_on_seed():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (3, 3)).astype(np.uint8) for _ in range(200)]
    labels = rng.integers(0, 2, 200)
    a = preprocess(raw(images, labels), limit=50, seed=1)
    b = preprocess(raw(images, labels), limit=50, seed=1)
    c = preprocess(raw(images, labels), limit=50, seed=2)
    assert a.N == 50
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.array_equal(a.images, c.images)


def test_limit_is_class_stratified():
    images = [np.full((2, 2), i % 256, np.uint8) for i in range(1000)]
    labels = np.array([0] * 800 + [1] * 150 + [2] * 50)
    ds = preprocess(raw(images, labels), limit=100, seed=3)
    assert np.bincount(ds.labels).tolist() == [80, 15, 5]


def test_limit_keeps_every_present_class():
    images = [np.zeros((2, 2), np.uint8)] * 1001
    labels = np.array([0] * 1000 + [1])
    ds = preprocess(raw(images, labels), limit=10)
    assert np.bincount(ds.labels).tolist() == [9, 1]


def test_limit_without_labels_and_above_n():
    images = [np.full((2, 2), i, np.uint8) for i in range(30)]
    ds = preprocess(raw(images), limit=10, seed=0)
    assert ds.N == 10 and ds.labels is None
    values = ds.images[:, 0, 0, 0] * 255
    assert len(np.unique(np.round(values))) == 10  # no image drawn twice
    assert preprocess(raw(images), limit=100).N == 30


def test_classes_then_limit():
    images, labels = _digits_like(n_per_class=50)
    ds = preprocess(raw(images, labels), classes=(2, 3), limit=20)
    assert np.bincount(ds.labels).tolist() == [10, 10]


# --- provenance ----------------------------------------------------------------------------------


def test_provenance_records_every_option_and_is_json_deterministic():
    images, labels = _digits_like()
    r = raw(images, labels, info={"note": np.float32(1.5), "shape": (2, 2), "arr": np.arange(3)})
    kw = dict(source="my-source", size=4, channels=3, classes="1,2", limit=8, seed=5)
    a = preprocess(r, **kw)
    b = preprocess(r, **kw)
    text = json.dumps(a.provenance, sort_keys=True)
    assert text == json.dumps(b.provenance, sort_keys=True)
    p = a.provenance["preprocessing"]
    assert a.provenance["source"] == "my-source"
    assert p["size"] == [4, 4] and p["channels"] == 3 and p["intensity"] == "unit"
    assert p["classes"] == ["1", "2"] and p["limit"] == 8 and p["seed"] == 5
    assert p["original_dtypes"] == ["uint8"] and p["original_shapes"] == [[2, 2]]
    assert p["resize"] and "antialias" in p["resize"]
    assert p["n_read"] == 40
    assert json.loads(text)["reader"] == {"note": 1.5, "shape": [2, 2], "arr": [0, 1, 2]}


def test_comparison_key_ignores_the_original_format():
    a = preprocess(raw([np.zeros((8, 8), np.uint8)]), size=4)
    b = preprocess(raw([np.zeros((6, 6), np.uint16)]), size=4)
    c = preprocess(raw([np.zeros((6, 6), np.uint16)]), size=5)
    assert comparison_key(a.preprocessing) == comparison_key(b.preprocessing)
    assert comparison_key(a.preprocessing) != comparison_key(c.preprocessing)


def test_large_set_without_resize_is_fast():
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 256, (70_000, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 70_000)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = preprocess(raw(stack, labels))
    elapsed = time.perf_counter() - start
    assert ds.images.shape == (70_000, 1, 28, 28)
    np.testing.assert_allclose(ds.images[12345, 0], stack[12345] / 255.0, rtol=1e-6)
    assert elapsed < 10.0, f"preprocessing 70,000 images took {elapsed:.1f} s"
