"""intrinsics: intrinsic dimension (d_data) and label sharpness (K_F) of image datasets.

>>> from intrinsics import load, intrinsic_dimension, label_sharpness
>>> ds = load("builtin:digits")                       # doctest: +SKIP
>>> intrinsic_dimension(ds.images, estimator="mle", k=20)  # doctest: +SKIP
"""

from .data import ImageSet
from .measure import MLE, Estimate, LabelSharpness, SharpnessEstimate, TwoNN, intrinsic_dimension, label_sharpness

from ._version import __version__

__all__ = [
    "ImageSet",
    "load",
    "from_arrays",
    "from_torch",
    "from_monai",
    "measure_dataset",
    "MeasureSettings",
    "audit",
    "MLE",
    "TwoNN",
    "LabelSharpness",
    "Estimate",
    "SharpnessEstimate",
    "intrinsic_dimension",
    "label_sharpness",
    "__version__",
]


def __getattr__(name: str):
    # `load` pulls in every reader; import it on first use so `import intrinsics` stays light.
    if name == "load":
        from .data import load

        return load
    if name == "audit":
        from .measure.audit import audit

        return audit
    if name == "from_monai":
        from .data.monai_data import from_monai

        return from_monai
    if name in ("from_arrays", "from_torch"):
        from .data import arrays

        return getattr(arrays, name)
    if name in ("measure_dataset", "MeasureSettings"):
        from .measure import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'intrinsics' has no attribute {name!r}")
