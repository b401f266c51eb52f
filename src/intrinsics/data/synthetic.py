"""Synthetic image datasets whose d_data and K_F are known by construction.

No labelled medical image set ships with the package, so every claim of the method is checked on these
generators, and the demo uses them. A source string names a generator and its parameters::

    synthetic:lesion?n=2000&contrast=0.2&size=64&seed=0
    synthetic:manifold?n=1000&d=4&kind=waves

:func:`from_spec` parses the part after ``synthetic:`` and returns :class:`~intrinsics.data._raw.RawImages`
with float32 (H, W) images in [0, 1]; ``info`` records every parameter (defaults included), the true
dimension and, for lesions, the theoretical minimum cross-label distance and K_F.

Generators
----------
``manifold``
    Images that are a smooth, locally injective function of ``d`` periodic latent factors, so the data
    lie on a compact d-dimensional manifold without boundary (kNN estimators are biased at boundaries).
    ``kind="waves"``: ``0.5 + a * sum_i cos(2 pi f_i . x - theta_i)`` with distinct spatial
    frequencies f_i; the modes are orthogonal on the pixel grid, so the data form a flat d-torus (a
    product of equal circles in orthogonal planes). ``kind="blobs"``: Gaussian blobs translated on a
    periodic image plane, two factors (x, y) per blob (d <= 8). Label: 1 when the first factor lies
    in the second half of its period.
``lesion``
    Anatomy-like backgrounds (a body, an organ ellipse and smooth texture, ``background_d`` latent
    factors) with label 1 when a faint Gaussian lesion of amplitude ``contrast`` sits inside the organ.
    A fraction ``paired`` of the images come in pairs sharing one background, one with and one without
    the lesion: their distance is the lesion's L2 norm ~= contrast * sigma * sqrt(pi), so
    K_F ~= 1 / (contrast * sigma * sqrt(pi)): fainter lesions give sharper labels.

The population (basis fields, anatomy, frequencies) does not depend on ``seed``; the seed draws the
sample. Same parameters and seed give identical bytes.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable

import numpy as np

from ..errors import DataError
from ._raw import RawImages

__all__ = ["make_manifold", "make_lesion", "from_spec", "GENERATORS"]

_MIN_N = 10
_MAX_PIXELS = 500_000_000  # n * size**2: 2 GB as float32, beyond which a laptop runs out of memory
_ANATOMY_SEED = 20240117  # fixes the population's texture fields, independent of the sample seed
_N_TEXTURE_MODES = 6

# Background factors of the lesion generator, in the order `background_d` switches them on.
# Periodic factors come first because they add dimension without adding a boundary.
_LESION_FACTORS = (
    "organ_rotation",
    "texture_phase_1",
    "texture_phase_2",
    "organ_x",
    "organ_y",
    "organ_scale",
    "organ_intensity",
    "texture_phase_3",
)


# ----------------------------------------------------------------------------------- validation


def _check_int(name: str, value: Any, lo: int, hi: int | None, fix: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise DataError(f"{name}={value!r} must be an integer; {fix}")
    if value < lo or (hi is not None and value > hi):
        bound = f">= {lo}" if hi is None else f"between {lo} and {hi}"
        raise DataError(f"{name}={value!r} must be {bound}; {fix}")
    return int(value)


def _check_float(name: str, value: Any, lo: float, hi: float, fix: str, *, lo_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise DataError(f"{name}={value!r} must be a number; {fix}")
    value = float(value)
    low_bad = value <= lo if lo_open else value < lo
    if not math.isfinite(value) or low_bad or value > hi:
        interval = f"{'(' if lo_open else '['}{lo}, {hi}]"
        raise DataError(f"{name}={value!r} must lie in {interval}; {fix}")
    return value


def _check_common(n: Any, size: Any, seed: Any, generator: str) -> tuple[int, int, int]:
    n = _check_int("n", n, _MIN_N, None, f"the {generator} generator needs at least {_MIN_N} images, e.g. n=500")
    size = _check_int("size", size, 8, 1024, "pass an image side length such as size=32 or size=64")
    seed = _check_int("seed", seed, 0, None, "pass a non-negative integer seed such as seed=0")
    if n * size * size > _MAX_PIXELS:
        raise DataError(
            f"n={n} images of {size}x{size} need {4 * n * size * size / 1e9:.1f} GB; "
            f"reduce n or size so that n*size**2 <= {_MAX_PIXELS:.0e}"
        )
    return n, size, seed


# ------------------------------------------------------------------------------------ rendering


def _pixel_centres(size: int) -> np.ndarray:
    """Pixel-centre coordinates in [0, 1), so that every parameter is independent of the resolution."""
    return (np.arange(size, dtype=np.float64) + 0.5) / size


def _periodic_gaussian(t: np.ndarray, centre: np.ndarray, sigma: float) -> np.ndarray:
    """(n, len(t)) Gaussian profiles on the unit circle; wrapping makes translation boundary-free."""
    diff = t[None, :] - centre[:, None]
    out = np.zeros_like(diff)
    for shift in (-2.0, -1.0, 0.0, 1.0, 2.0):  # sigma <= 0.25: farther copies < exp(-50), negligible
        out += np.exp(-((diff + shift) ** 2) / (2.0 * sigma**2))
    return out


def _wave_frequencies(d: int, size: int) -> np.ndarray:
    """The d lowest distinct integer frequencies (no f and -f both), below the Nyquist limit."""
    half = size // 2
    freqs = [
        (fx, fy)
        for fx in range(0, half)
        for fy in range(-half + 1, half)
        if (fx > 0 or fy > 0)
    ]
    freqs.sort(key=lambda f: (f[0] ** 2 + f[1] ** 2, -f[0], -f[1]))
    return np.asarray(freqs[:d], dtype=np.float64)


def _max_manifold_d(kind: str, size: int) -> int:
    if kind == "waves":
        return len(_wave_frequencies(size * size, size))  # every frequency below the Nyquist limit
    # beyond 4 wide blobs their positions project onto the same few low frequencies and the map
    # becomes ill-conditioned (MLE saturates near 8), so higher d needs kind="waves"
    return 8


def _render_waves(theta: np.ndarray, size: int) -> np.ndarray:
    n, d = theta.shape
    freqs = _wave_frequencies(d, size)
    t = _pixel_centres(size)
    # phase[i, p] = 2 pi f_i . x_p ; cos(phase - theta) = cos(phase) cos(theta) + sin(phase) sin(theta)
    phase = 2.0 * np.pi * (freqs[:, 0, None, None] * t[None, None, :] + freqs[:, 1, None, None] * t[None, :, None])
    basis = np.concatenate([np.cos(phase), np.sin(phase)]).reshape(2 * d, size * size)
    coef = np.concatenate([np.cos(theta), np.sin(theta)], axis=1)
    amplitude = 0.45 / d  # the sum of d waves then stays within [0.05, 0.95]: no clipping, no boundary
    images = 0.5 + amplitude * (coef @ basis)
    return images.reshape(n, size, size)


def _blob_sigmas(n_blobs: int) -> np.ndarray:
    # distinct widths break the symmetry of swapping two blobs (global injectivity)
    # wide blobs keep the translation manifold gently curved at the scale of k=20 neighbourhoods;
    # narrow ones (sigma ~ 0.06) make distances saturate and MLE overestimate d by 2x at d = 4
    return 0.15 * (1.0 + 0.1 * (np.arange(n_blobs) % 5))


def _render_blobs(pos: np.ndarray, d: int, size: int) -> np.ndarray:
    n = pos.shape[0]
    n_blobs = (d + 1) // 2
    t = _pixel_centres(size)
    amplitude = 0.9 / n_blobs
    images = np.full((n, size, size), 0.05)
    for b, sigma in enumerate(_blob_sigmas(n_blobs)):
        gx = _periodic_gaussian(t, pos[:, 2 * b], sigma)
        gy = _periodic_gaussian(t, pos[:, 2 * b + 1], sigma)
        images += amplitude * gy[:, :, None] * gx[:, None, :]
    return images


def _texture_fields(size: int) -> np.ndarray:
    """(2 * _N_TEXTURE_MODES, size, size) smooth fields, each scaled to max |value| = 1."""
    rng = np.random.default_rng(_ANATOMY_SEED)
    t = _pixel_centres(size)
    x, y = t[None, :], t[:, None]
    fields = []
    for _ in range(2 * _N_TEXTURE_MODES):
        field = np.zeros((size, size))
        for _ in range(4):
            fx, fy = rng.uniform(-4.0, 4.0, size=2)
            field += rng.normal() * np.cos(2.0 * np.pi * (fx * x + fy * y) + rng.uniform(0, 2 * np.pi))
        fields.append(field / np.abs(field).max())
    return np.asarray(fields)


def _soft_ellipse(
    x: np.ndarray, y: np.ndarray, cx: np.ndarray, cy: np.ndarray, a: np.ndarray, b: np.ndarray,
    angle: np.ndarray, edge: float,
) -> np.ndarray:
    """(n, H, W) ellipse masks with a sigmoid edge of width ``edge``: smooth in every parameter."""
    dx = x[None] - cx[:, None, None]
    dy = y[None] - cy[:, None, None]
    c, s = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    u = (c * dx + s * dy) / a[:, None, None]
    v = (-s * dx + c * dy) / b[:, None, None]
    # 1 - r is the distance to the edge in ellipse units; times the minor axis gives it in image units
    dist = (1.0 - np.sqrt(u**2 + v**2)) * np.minimum(a, b)[:, None, None]
    return 0.5 * (1.0 + np.tanh(dist / edge))


def _lesion_background_latents(rng: np.random.Generator, n: int, background_d: int) -> dict[str, np.ndarray]:
    """Every background factor per image; factors beyond ``background_d`` keep a fixed value."""
    drawn = {
        "organ_rotation": rng.uniform(0.0, np.pi, n),  # an ellipse is pi-periodic in its angle
        "texture_phase_1": rng.uniform(0.0, 2 * np.pi, n),
        "texture_phase_2": rng.uniform(0.0, 2 * np.pi, n),
        "organ_x": rng.uniform(-0.06, 0.06, n),
        "organ_y": rng.uniform(-0.06, 0.06, n),
        "organ_scale": rng.uniform(0.85, 1.15, n),
        "organ_intensity": rng.uniform(0.14, 0.22, n),
        "texture_phase_3": rng.uniform(0.0, 2 * np.pi, n),
    }
    fixed = {
        "organ_rotation": 0.35, "texture_phase_1": 0.0, "texture_phase_2": 1.0, "organ_x": 0.0,
        "organ_y": 0.0, "organ_scale": 1.0, "organ_intensity": 0.18, "texture_phase_3": 2.0,
    }
    # Every factor is drawn whatever background_d is, so the rng stream (and the lesion positions
    # drawn after it) does not depend on background_d.
    return {
        name: drawn[name] if i < background_d else np.full(n, fixed[name])
        for i, name in enumerate(_LESION_FACTORS)
    }


def _organ_geometry(lat: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    cx = 0.5 + lat["organ_x"]
    cy = 0.47 + lat["organ_y"]
    a = 0.2 * lat["organ_scale"]
    b = 0.13 * lat["organ_scale"]
    return cx, cy, a, b, lat["organ_rotation"]


_CHUNK_PIXELS = 1 << 18  # pixels of the images rendered at once (2 MiB per float64 temporary)


def _image_chunks(n: int, size: int) -> Any:
    """(start, end) of consecutive chunks of ``n`` images of ``size``² pixels, about _CHUNK_PIXELS each."""
    step = max(1, _CHUNK_PIXELS // (size * size))
    for s in range(0, n, step):
        yield s, min(n, s + step)


def _render_lesion_backgrounds(lat: dict[str, np.ndarray], size: int) -> np.ndarray:
    n = len(lat["organ_x"])
    t = _pixel_centres(size)
    x, y = np.broadcast_arrays(t[None, :], t[:, None])
    ones = np.ones(1)
    body = _soft_ellipse(x, y, 0.5 * ones, 0.5 * ones, 0.42 * ones, 0.36 * ones, 0.0 * ones, 0.01)
    cx, cy, a, b, angle = _organ_geometry(lat)

    fields = _texture_fields(size).reshape(_N_TEXTURE_MODES, 2, size * size)
    texture = 0.02 * fields[3:].sum(axis=(0, 1)).reshape(size, size)  # fixed anatomy, not a factor
    phases = np.stack([lat["texture_phase_1"], lat["texture_phase_2"], lat["texture_phase_3"]], axis=1)
    coef = np.stack([np.cos(phases), np.sin(phases)], axis=2).reshape(n, 6)
    varied = (coef @ fields[:3].reshape(6, size * size)).reshape(n, size, size)
    varied *= 0.025
    varied += texture[None]  # in place (IEEE addition commutes): no second array of every image

    # body 0.2, organ adds 0.14-0.22, texture stays within +-0.1: background in [0, 0.55],
    # so lesions up to contrast 0.45 never clip and pair distances equal the lesion norm exactly.
    # The organ's ellipse by chunks of images, written into the texture's array: every step is
    # elementwise, so the values are those of one pass over all images, and the temporaries stay in
    # cache (20,000 images at 64×64: 8.9 s for the whole generator in one pass, 3.6 s by chunks).
    out = varied
    for s, e in _image_chunks(n, size):
        organ = _soft_ellipse(x, y, cx[s:e], cy[s:e], a[s:e], b[s:e], angle[s:e], 0.015)
        out[s:e] = body * (0.2 + out[s:e]) + organ * lat["organ_intensity"][s:e, None, None]
    return out


# ----------------------------------------------------------------------------------- generators


def make_manifold(n: int = 1000, d: int = 4, size: int = 64, kind: str = "waves", seed: int = 0) -> RawImages:
    """Images on a compact d-dimensional manifold without boundary (true d_data = d).

    Parameters
    ----------
    n : int
        Number of images (>= 10).
    d : int
        Number of latent factors, i.e. the intrinsic dimension by construction.
    size : int
        Image side length in pixels.
    kind : {"waves", "blobs"}
        ``waves``: d plane waves with random phases (a flat d-torus). ``blobs``: ceil(d/2) Gaussian
        blobs translated on a periodic plane (one moving along x only when d is odd; d <= 8).
    seed : int
        Seed of the sample.

    Returns
    -------
    RawImages
        float32 (size, size) images in [0, 1]; label 1 when the first factor lies in the second half
        of its period; ``info["true_d"] == d``.

    Examples
    --------
    >>> raw = make_manifold(n=200, d=3, size=16)
    >>> raw.info["true_d"], raw.images[0].shape
    (3, (16, 16))
    """
    n, size, seed = _check_common(n, size, seed, "manifold")
    if kind not in ("waves", "blobs"):
        raise DataError(f"kind={kind!r} is not a manifold kind; use kind=waves or kind=blobs")
    d = _check_int("d", d, 1, _max_manifold_d(kind, size),
                   f"a {kind} manifold at size={size} offers 1..{_max_manifold_d(kind, size)} latent factors")
    rng = np.random.default_rng(seed)
    if kind == "waves":
        latents = rng.uniform(0.0, 2 * np.pi, size=(n, d))
        images = _render_waves(latents, size)
        labels = (latents[:, 0] >= np.pi).astype(np.int64)
    else:
        latents = rng.uniform(0.0, 1.0, size=(n, 2 * ((d + 1) // 2)))
        if d % 2:
            latents[:, -1] = 0.5  # the last blob moves along x only
        images = _render_blobs(latents, d, size)
        labels = (latents[:, 0] >= 0.5).astype(np.int64)
    images = images.astype(np.float32)
    params = {"n": n, "d": d, "size": size, "kind": kind, "seed": seed}
    info = {
        "generator": "manifold",
        "params": params,
        "true_d": d,
        "theoretical_K_F": None,  # set by the sample's closest cross-label pair, not by construction
        "labels": "1 when the first latent factor lies in the second half of its period",
    }
    return RawImages(
        images=list(images),
        labels=labels,
        class_names=("first_half", "second_half"),
        origins=[f"synthetic:manifold[{i}]" for i in range(n)],
        info=info,
        value_range=(0.0, 1.0),
    )


def make_lesion(
    n: int = 1000,
    size: int = 64,
    contrast: float = 0.2,
    lesion_size: float = 0.03,
    background_d: int = 6,
    paired: float = 0.5,
    noise: float = 0.0,
    seed: int = 0,
) -> RawImages:
    """Anatomy-like images, label 1 when a faint lesion is present; K_F is set by ``contrast``.

    Parameters
    ----------
    n : int
        Number of images (>= 10); the classes are balanced (within one image when n is odd).
    size : int
        Image side length in pixels.
    contrast : float
        Peak amplitude of the lesion's Gaussian bump, in [0, 1] (0 makes paired images identical:
        deliberate label conflicts). Up to 0.45 nothing clips.
    lesion_size : float
        Standard deviation of the bump as a fraction of the image side, in (0, 0.25].
    background_d : int
        Number of latent background factors (1..8): organ rotation, three texture phases, organ
        position (x, y), scale and intensity.
    paired : float
        Fraction of images, in [0, 1], that come in pairs sharing one background, one with and one
        without the lesion. At low contrast these pairs set the minimum cross-label distance; at high
        contrast (above about 0.45, where pixels clip) a pair that was not designed can be closer.
    noise : float
        Standard deviation of i.i.d. pixel noise (part of the background, so shared within a pair).
        Any noise > 0 makes the true d_data unbounded.
    seed : int
        Seed of the sample.

    Returns
    -------
    RawImages
        float32 images in [0, 1], labels 0 ("normal") / 1 ("lesion"). ``info`` holds
        ``theoretical_min_distance`` (smallest distance within a pair, measured on these arrays),
        ``theoretical_K_F`` (its inverse) and ``closest_pair`` (their indices), all at this size and
        the [0, 1] intensity scale; None when there is no pair. ``theoretical_K_F`` is a lower bound on
        the exact K_F (the designed pairs are among all pairs) and equals it while the designed pairs
        are the closest, as at the contrasts of the demo.

    Examples
    --------
    >>> raw = make_lesion(n=100, size=32, contrast=0.1)
    >>> round(raw.info["theoretical_K_F"] * raw.info["lesion_norm_formula"], 2)
    1.0
    """
    n, size, seed = _check_common(n, size, seed, "lesion")
    contrast = _check_float("contrast", contrast, 0.0, 1.0,
                            "pass the lesion's peak intensity on the [0, 1] scale, e.g. contrast=0.2")
    lesion_size = _check_float("lesion_size", lesion_size, 0.0, 0.25,
                               "pass the lesion's width as a fraction of the image side, e.g. lesion_size=0.03",
                               lo_open=True)
    background_d = _check_int("background_d", background_d, 1, len(_LESION_FACTORS),
                              f"choose 1..{len(_LESION_FACTORS)} background factors, e.g. background_d=6")
    paired = _check_float("paired", paired, 0.0, 1.0,
                          "pass the fraction of images that come in with/without-lesion pairs, e.g. paired=0.5")
    noise = _check_float("noise", noise, 0.0, 1.0, "pass a pixel noise standard deviation such as noise=0.01")

    rng = np.random.default_rng(seed)
    n_pairs = int(round(paired * n / 2))
    n_single = n - 2 * n_pairs
    n_bg = n_pairs + n_single
    lat = _lesion_background_latents(rng, n_bg, background_d)
    # the lesion site is drawn for every image, used only for label 1: the stream does not depend on labels
    site_r = 0.6 * np.sqrt(rng.uniform(0.0, 1.0, n))  # uniform over the inner 60% of the organ
    site_a = rng.uniform(0.0, 2 * np.pi, n)
    single_labels = rng.permutation(np.arange(n_single) % 2)
    order = rng.permutation(n)
    pixel_noise = rng.standard_normal((n_bg, size, size)) if noise > 0 else None

    backgrounds = _render_lesion_backgrounds(lat, size)
    if pixel_noise is not None:
        backgrounds += noise * pixel_noise

    # image k uses background bg_of[k]; pair p is (p, n_pairs + p): without, then with the lesion
    bg_of = np.concatenate([np.arange(n_pairs), np.arange(n_pairs), n_pairs + np.arange(n_single)])
    labels = np.concatenate([np.zeros(n_pairs), np.ones(n_pairs), single_labels]).astype(np.int64)

    cx, cy, a, b, angle = (g[bg_of] for g in _organ_geometry(lat))
    u, v = a * site_r * np.cos(site_a), b * site_r * np.sin(site_a)
    lx = cx + np.cos(angle) * u - np.sin(angle) * v
    ly = cy + np.sin(angle) * u + np.cos(angle) * v
    t = _pixel_centres(size)
    gx = np.exp(-((t[None, :] - lx[:, None]) ** 2) / (2 * lesion_size**2))
    gy = np.exp(-((t[None, :] - ly[:, None]) ** 2) / (2 * lesion_size**2))
    images = backgrounds[bg_of]
    del backgrounds
    amplitude = contrast * labels
    out = np.empty(images.shape, dtype=np.float32)
    for s, e in _image_chunks(n, size):  # elementwise, by chunks of images (see _render_lesion_backgrounds)
        images[s:e] += amplitude[s:e, None, None] * gy[s:e, :, None] * gx[s:e, None, :]
        out[s:e] = np.clip(images[s:e], 0.0, 1.0)
    images = out

    info: dict[str, Any] = {
        "generator": "lesion",
        "params": {"n": n, "size": size, "contrast": contrast, "lesion_size": lesion_size,
                   "background_d": background_d, "paired": paired, "noise": noise, "seed": seed},
        # normal images lie on a background_d manifold, lesion images add the 2-D lesion site
        "true_d": None if noise > 0 else background_d + (2 if contrast > 0 else 0),
        "true_d_per_class": None if noise > 0 else [background_d, background_d + (2 if contrast > 0 else 0)],
        "background_factors": list(_LESION_FACTORS[:background_d]),
        "n_pairs": n_pairs,
        # continuous-limit L2 norm of the bump: contrast * sigma_px * sqrt(pi)
        "lesion_norm_formula": contrast * lesion_size * size * math.sqrt(math.pi),
        "theoretical_min_distance": None,
        "theoretical_K_F": None,
        "closest_pair": None,
        "scale": f"{size}x{size} pixels, intensities in [0, 1]",
    }
    if n_pairs:
        # measured on the final float32 arrays, so clipping (contrast > 0.45) is accounted for
        diff = images[n_pairs : 2 * n_pairs].astype(np.float64) - images[:n_pairs]
        dist = np.sqrt(np.einsum("pij,pij->p", diff, diff))
        p = int(np.argmin(dist))
        info["theoretical_min_distance"] = float(dist[p])
        info["theoretical_K_F"] = 1.0 / float(dist[p]) if dist[p] > 0 else None
        position = np.empty(n, dtype=np.int64)
        position[order] = np.arange(n)
        info["closest_pair"] = [int(position[p]), int(position[n_pairs + p])]

    images = images[order]
    return RawImages(
        images=list(images),
        labels=labels[order],
        class_names=("normal", "lesion"),
        origins=[f"synthetic:lesion[{i}]" for i in range(n)],
        info=info,
        value_range=(0.0, 1.0),
    )


GENERATORS: dict[str, Callable[..., RawImages]] = {"lesion": make_lesion, "manifold": make_manifold}


# --------------------------------------------------------------------------------------- specs


def _defaults(generator: Callable[..., RawImages]) -> dict[str, Any]:
    return {name: p.default for name, p in inspect.signature(generator).parameters.items()}


def _describe(name: str) -> str:
    return f"{name}(" + ", ".join(f"{k}={v}" for k, v in _defaults(GENERATORS[name]).items()) + ")"


def _typed(name: str, key: str, text: str, default: Any) -> Any:
    """Convert ``text`` to the type of ``default``."""
    if isinstance(default, str):
        return text
    try:
        if isinstance(default, int):
            number = float(text)
            if not number.is_integer():
                raise ValueError
            return int(number)
        return float(text)
    except (ValueError, OverflowError):
        kind = "an integer" if isinstance(default, int) else "a number"
        raise DataError(
            f"{key}={text!r} in synthetic:{name} must be {kind}; write e.g. {key}={default}"
        ) from None


def from_spec(spec: str) -> RawImages:
    """Generate the dataset a spec string describes.

    Parameters
    ----------
    spec : str
        ``NAME?key=value&key=value`` (an optional ``synthetic:`` prefix is accepted); NAME is a key of
        :data:`GENERATORS`, values are converted to the type of the parameter's default.

    Returns
    -------
    RawImages
        As returned by the generator; ``info["params"]`` lists every parameter, defaults included.

    Examples
    --------
    >>> raw = from_spec("lesion?n=50&size=16&contrast=0.3")
    >>> raw.info["params"]["contrast"], len(raw.images)
    (0.3, 50)
    """
    if not isinstance(spec, str):
        raise DataError(f"a synthetic spec must be a string such as 'lesion?n=500', got {spec!r}")
    body = spec.strip()
    if body.startswith("synthetic:"):
        body = body[len("synthetic:"):]
    name, _, query = body.partition("?")
    name = name.strip()
    if name not in GENERATORS:
        valid = "; ".join(_describe(g) for g in sorted(GENERATORS))
        raise DataError(f"unknown synthetic generator {name!r} in {spec!r}; valid generators: {valid}")
    defaults = _defaults(GENERATORS[name])
    kwargs: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in query.split("&"))):
        key, eq, text = (s.strip() for s in item.partition("="))
        if key not in defaults:
            raise DataError(
                f"unknown parameter {key!r} for synthetic:{name}; valid parameters: {_describe(name)}"
            )
        if not eq or not text:
            raise DataError(f"parameter {key!r} in {spec!r} has no value; write e.g. {key}={defaults[key]}")
        if key in kwargs:
            raise DataError(f"parameter {key!r} is given twice in {spec!r}; keep one {key}=... entry")
        kwargs[key] = _typed(name, key, text, defaults[key])
    return GENERATORS[name](**kwargs)
