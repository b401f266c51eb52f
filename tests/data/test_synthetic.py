"""Tests of the synthetic generators: the contract, determinism, validation, and that the measured
d_data and K_F follow the values the generators are built to have."""

from __future__ import annotations

import hashlib
import inspect
import json
import warnings

import numpy as np
import pytest

from intrinsics.data._raw import RawImages
from intrinsics.data.synthetic import GENERATORS, from_spec, make_lesion, make_manifold
from intrinsics.errors import DataError, IntrinsicsWarning


def _stack(raw: RawImages) -> np.ndarray:
    return np.stack(raw.images)


def _digest(raw: RawImages) -> str:
    h = hashlib.sha256(_stack(raw).tobytes())
    h.update(np.asarray(raw.labels).tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------------------------- contract


@pytest.mark.parametrize(
    "spec, generator",
    [("lesion?n=40&size=16&contrast=0.3", "lesion"), ("manifold?n=30&d=3&size=16&kind=blobs", "manifold")],
)
def test_from_spec_returns_the_raw_images_contract(spec, generator):
    raw = from_spec(spec)
    assert isinstance(raw, RawImages)
    assert len(raw.images) == len(raw.labels) == len(raw.origins) == int(spec.split("n=")[1].split("&")[0])
    for im in raw.images:
        assert im.dtype == np.float32 and im.shape == (16, 16)
    X = _stack(raw)
    assert X.min() >= 0.0 and X.max() <= 1.0
    assert np.asarray(raw.labels).dtype == np.int64
    assert set(np.unique(raw.labels)) == {0, 1} and len(raw.class_names) == 2
    assert raw.value_range == (0.0, 1.0)
    assert raw.info["generator"] == generator
    # every parameter is recorded, defaults included, with the value actually used
    assert list(raw.info["params"]) == list(inspect.signature(GENERATORS[generator]).parameters)
    assert raw.info["params"]["size"] == 16
    json.dumps(raw.info, allow_nan=False)  # provenance must serialise to strict JSON


def test_from_spec_types_values_from_defaults_and_accepts_the_prefix():
    raw = from_spec("synthetic:lesion?n=2e1&contrast=1&size=16")
    assert raw.info["params"]["n"] == 20 and isinstance(raw.info["params"]["n"], int)
    assert raw.info["params"]["contrast"] == 1.0 and isinstance(raw.info["params"]["contrast"], float)
    assert raw.info["params"]["background_d"] == 6  # default filled in
    assert from_spec(" manifold ").info["params"]["d"] == 4  # no query: all defaults


def test_classes_are_balanced():
    for n in (101, 400):
        counts = np.bincount(make_lesion(n=n, size=16, paired=0.3).labels)
        assert abs(int(counts[0]) - int(counts[1])) <= 1
    counts = np.bincount(make_manifold(n=2000, d=2, size=8).labels)
    assert abs(int(counts[0]) - 1000) < 100


# ---------------------------------------------------------------------------------- determinism


@pytest.mark.parametrize(
    "spec", ["lesion?n=60&size=16&noise=0.01", "manifold?n=60&size=16&d=5", "manifold?n=60&size=16&kind=blobs"]
)
def test_same_seed_same_bytes_different_seed_different_images(spec):
    assert _digest(from_spec(spec)) == _digest(from_spec(spec))
    a, b = _stack(from_spec(spec + "&seed=1")), _stack(from_spec(spec + "&seed=2"))
    assert not np.allclose(a, b)


def test_contrast_changes_only_the_lesion():
    # the controlled experiment: same seed, different contrast -> identical normal images and sites
    low, high = make_lesion(n=200, size=16, contrast=0.05), make_lesion(n=200, size=16, contrast=0.4)
    assert np.array_equal(low.labels, high.labels)
    normal = low.labels == 0
    assert np.array_equal(_stack(low)[normal], _stack(high)[normal])
    # below the clipping limit the lesion scales linearly with contrast
    lesion_low = _stack(low)[~normal] - _stack(make_lesion(n=200, size=16, contrast=0.0))[~normal]
    lesion_high = _stack(high)[~normal] - _stack(make_lesion(n=200, size=16, contrast=0.0))[~normal]
    np.testing.assert_allclose(lesion_high, 8.0 * lesion_low, atol=1e-5)


# ------------------------------------------------------------------------------- construction


def test_waves_manifold_is_a_d_torus_in_2d_dimensions_with_labels_from_the_first_phase():
    d, size = 3, 16
    raw = make_manifold(n=300, d=d, size=size, kind="waves")
    X = _stack(raw).reshape(300, -1).astype(np.float64)
    # d circles in orthogonal planes: the centred data span exactly 2d directions
    s = np.linalg.svd(X - X.mean(0), compute_uv=False)
    assert s[2 * d - 1] > 1e-2 * s[0] and s[2 * d] < 1e-5 * s[0]
    # the first factor is the phase of the lowest frequency along x; recover it and check the label
    x = (np.arange(size) + 0.5) / size
    cos_f = np.tile(np.cos(2 * np.pi * x), (size, 1)).ravel()
    sin_f = np.tile(np.sin(2 * np.pi * x), (size, 1)).ravel()
    theta = np.mod(np.arctan2((X - 0.5) @ sin_f, (X - 0.5) @ cos_f), 2 * np.pi)
    assert np.array_equal(raw.labels, (theta >= np.pi).astype(np.int64))
    assert X.min() >= 0.05 - 1e-6 and X.max() <= 0.95 + 1e-6  # never clipped
    assert raw.info["true_d"] == d


def test_lesion_pairs_differ_by_exactly_one_faint_bump():
    contrast, size = 0.2, 64
    raw = make_lesion(n=200, size=size, contrast=contrast)
    X = _stack(raw).astype(np.float64)
    i, j = raw.info["closest_pair"]
    assert (raw.labels[i], raw.labels[j]) == (0, 1)
    diff = X[j] - X[i]
    assert diff.min() >= -1e-6  # a lesion only adds intensity
    assert 0.7 * contrast <= diff.max() <= contrast + 1e-6  # peak = contrast, up to sub-pixel sampling
    # a localised Gaussian: above 1% of the peak only within r = sigma*sqrt(2 ln 100) of its centre
    sigma_px = raw.info["params"]["lesion_size"] * size
    radius = sigma_px * np.sqrt(2 * np.log(100))
    rows, cols = np.nonzero(diff > 0.01 * contrast)
    peak = np.unravel_index(np.argmax(diff), diff.shape)
    assert np.hypot(rows - peak[0], cols - peak[1]).max() <= radius + 1.5
    assert rows.size == pytest.approx(np.pi * radius**2, rel=0.25)
    assert np.linalg.norm(diff) == pytest.approx(raw.info["theoretical_min_distance"], rel=1e-6)
    # sigma = 1.9 px is well sampled, so the continuous formula contrast*sigma*sqrt(pi) holds
    assert raw.info["lesion_norm_formula"] == pytest.approx(raw.info["theoretical_min_distance"], rel=0.01)
    assert raw.info["theoretical_K_F"] == pytest.approx(1.0 / raw.info["theoretical_min_distance"])
    assert raw.info["n_pairs"] == 50 and raw.info["true_d_per_class"] == [6, 8]


def test_unpaired_noisy_and_zero_contrast_variants_record_what_is_known():
    assert make_lesion(n=50, size=16, paired=0.0).info["theoretical_min_distance"] is None
    noisy = make_lesion(n=50, size=16, noise=0.05)
    assert noisy.info["true_d"] is None and noisy.info["theoretical_min_distance"] > 0
    flat = make_lesion(n=50, size=16, contrast=0.0)
    assert flat.info["theoretical_min_distance"] == 0.0 and flat.info["theoretical_K_F"] is None
    json.dumps(flat.info, allow_nan=False)


# ---------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "spec, quoted, fix",
    [
        ("lesoin?n=100", "'lesoin'", "lesion(n=1000, size=64, contrast=0.2"),
        ("lesion?contrst=0.1", "'contrst'", "contrast=0.2"),
        ("lesion?contrast=-0.1", "-0.1", "contrast=0.2"),
        ("lesion?n=3", "n=3", "n=500"),
        ("manifold?n=2.5", "'2.5'", "n=1000"),
        ("lesion?contrast=high", "'high'", "contrast=0.2"),
        ("lesion?n=", "'n'", "n=1000"),
        ("lesion?n=100&n=200", "'n'", "keep one"),
        ("lesion?background_d=0", "background_d=0", "background_d=6"),
        ("lesion?paired=1.5", "paired=1.5", "paired=0.5"),
        ("lesion?lesion_size=0", "lesion_size=0.0", "lesion_size=0.03"),
        ("lesion?size=4", "size=4", "size=32"),
        ("lesion?seed=-1", "seed=-1", "seed=0"),
        ("lesion?n=100000&size=1024", "n=100000", "reduce n or size"),
        ("manifold?kind=spiral", "'spiral'", "kind=waves"),
        ("manifold?d=0", "d=0", "latent factors"),
        ("manifold?d=9&kind=blobs", "d=9", "1..8"),
        ("manifold?d=100&size=8", "d=100", "1..24"),
    ],
)
def test_bad_specs_raise_a_data_error_that_names_the_value_and_the_fix(spec, quoted, fix):
    with pytest.raises(DataError) as err:
        from_spec(spec)
    assert quoted in str(err.value) and fix in str(err.value)


def test_python_api_validates_too():
    with pytest.raises(DataError, match="contrast=-0.5"):
        make_lesion(contrast=-0.5)
    with pytest.raises(DataError, match="integer"):
        make_manifold(n=100.0)
    with pytest.raises(DataError, match="string"):
        from_spec(None)


# ------------------------------------------------------------------- measured d_data and K_F


@pytest.mark.parametrize(
    "kind, tolerance",
    # MLE(k=20) at N=1000: waves 1.9, 4.1, 9.7 and blobs 1.9, 4.2, 7.1 for d = 2, 4, 8. On a compact
    # torus the k=20 neighbourhoods span much of each circle at d=8, so chords shorten and waves are
    # overestimated (+21%); blobs show the usual kNN underestimate (-11%).
    [("waves", {2: 0.1, 4: 0.1, 8: 0.3}), ("blobs", {2: 0.1, 4: 0.1, 8: 0.2})],
)
def test_estimated_d_data_rises_with_the_number_of_latent_factors(kind, tolerance):
    from intrinsics.measure import intrinsic_dimension

    estimates = []
    for d in (2, 4, 8):
        raw = make_manifold(n=1000, d=d, size=16, kind=kind, seed=1)
        est = intrinsic_dimension(_stack(raw), "mle", k=20, n_bootstrap=20)
        assert abs(est.value - d) <= tolerance[d] * d, (kind, d, est.value)
        estimates.append(est.value)
    assert estimates[0] < estimates[1] < estimates[2]


def test_normal_lesion_images_have_the_recorded_background_dimension():
    from intrinsics.measure import intrinsic_dimension

    for background_d in (2, 4):
        raw = make_lesion(n=1600, size=32, background_d=background_d, paired=0.0, seed=2)
        normal = _stack(raw)[raw.labels == 0]
        value = intrinsic_dimension(normal, "mle", k=20, n_bootstrap=20).value
        assert abs(value - raw.info["true_d_per_class"][0]) <= 0.2 * background_d, (background_d, value)


def test_exact_K_F_rises_as_contrast_falls_and_matches_the_theoretical_distance():
    from intrinsics.measure import label_sharpness

    contrasts = (0.4, 0.2, 0.1, 0.05)
    values = []
    for contrast in contrasts:
        raw = make_lesion(n=1000, size=32, contrast=contrast, seed=3)
        est = label_sharpness(_stack(raw), raw.labels, n_samples=1000, exact=True)
        theory = raw.info["theoretical_min_distance"]
        # the pair sets an upper bound on the minimum cross-label distance; with 6 background
        # factors no two different backgrounds come closer (observed agreement: < 0.05%)
        assert 1.0 / est.exact <= theory * (1 + 1e-5)
        assert 1.0 / est.exact == pytest.approx(theory, rel=0.01)
        assert {est.closest_pairs[0].i, est.closest_pairs[0].j} == set(raw.info["closest_pair"])
        values.append(est.exact)
    assert all(a < b for a, b in zip(values, values[1:]))
    # no clipping below contrast 0.45: K_F is inversely proportional to contrast
    np.testing.assert_allclose(np.array(values) * np.array(contrasts), values[0] * contrasts[0], rtol=0.01)


def test_zero_contrast_pairs_surface_as_label_conflicts():
    from intrinsics.measure import label_sharpness

    raw = make_lesion(n=200, size=16, contrast=0.0, paired=0.2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = label_sharpness(_stack(raw), raw.labels, n_samples=200, exact=True)
    assert len(est.label_conflicts) == raw.info["n_pairs"] == 20
    assert any(issubclass(w.category, IntrinsicsWarning) for w in caught)
    assert np.isfinite(est.exact)


def test_default_preprocessing_keeps_the_theoretical_K_F():
    # the loader preprocesses generator output; native size and the [0, 1] range must not move K_F
    from intrinsics.data.preprocess import preprocess
    from intrinsics.measure import label_sharpness

    raw = from_spec("lesion?n=300&size=32&contrast=0.1")
    images = preprocess(raw, source="synthetic:lesion?n=300&size=32&contrast=0.1")
    assert images.shape == (1, 32, 32)
    est = label_sharpness(images, n_samples=300)
    assert est.exact == pytest.approx(raw.info["theoretical_K_F"], rel=1e-4)


def test_the_lesion_theoretical_K_F_is_a_lower_bound_equal_to_the_exact_one_at_low_contrast():
    from intrinsics.data import load
    from intrinsics.measure import LabelSharpness

    for contrast, equal in ((0.15, True), (0.6, False)):
        ds = load(f"synthetic:lesion?n=600&contrast={contrast}&size=32")
        theory = ds.provenance["reader"]["theoretical_K_F"]
        exact = LabelSharpness(n_samples=50, n_draws=1).fit(ds).exact_
        assert theory <= exact * (1 + 1e-9)
        assert (abs(theory - exact) < 1e-9 * exact) == equal  # at 0.6 a pair that was not designed is closer


@pytest.mark.parametrize("noise", [0.0, 0.01])
def test_lesion_images_do_not_depend_on_how_many_are_rendered_at_once(monkeypatch, noise):
    """The lesion generator renders its images by chunks (to keep temporaries small): chunks of 7
    images, the last one shorter, give the same bytes as a single pass over all of them."""
    from intrinsics.data import synthetic

    kw = dict(n=101, size=24, noise=noise, seed=3)
    monkeypatch.setattr(synthetic, "_CHUNK_PIXELS", 10 ** 9)
    whole = synthetic.make_lesion(**kw)
    monkeypatch.setattr(synthetic, "_CHUNK_PIXELS", 7 * 24 * 24)
    chunked = synthetic.make_lesion(**kw)
    assert np.array_equal(np.stack(whole.images), np.stack(chunked.images))
    assert whole.info["theoretical_K_F"] == chunked.info["theoretical_K_F"]
    assert np.array_equal(whole.labels, chunked.labels)
