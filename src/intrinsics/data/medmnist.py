"""What each MedMNIST 2-D dataset is: its task, label names, channels and (when known) split sizes and
file checksums.

The ``medmnist`` package's own ``INFO`` table is used when the package is installed (it is the
dataset's reference, and carries split sizes and MD5 checksums); otherwise intrinsics' own table of the
MedMNIST v2 metadata (task, label names, channels) stands in, so that no extra package is needed.
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError

__all__ = ["MEDMNIST_LABELS", "MEDMNIST_MULTILABEL", "MEDMNIST_SIZES", "MedMNISTInfo", "medmnist_info",
           "medmnist_package_root"]

MEDMNIST_SIZES = (28, 64, 128, 224)

_ORGAN = ("bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right", "liver",
          "lung-left", "lung-right", "pancreas", "spleen")
# MedMNIST v2's 2-D datasets: (task, channels, label names by class index), from the dataset's paper
# and metadata. Used when the medmnist package is not installed.
_TABLE: dict[str, tuple[str, int, tuple[str, ...]]] = {
    "pathmnist": ("multi-class", 3, (
        "adipose", "background", "debris", "lymphocytes", "mucus", "smooth muscle", "normal colon mucosa",
        "cancer-associated stroma", "colorectal adenocarcinoma epithelium")),
    "chestmnist": ("multi-label, binary-class", 1, (
        "atelectasis", "cardiomegaly", "effusion", "infiltration", "mass", "nodule", "pneumonia",
        "pneumothorax", "consolidation", "edema", "emphysema", "fibrosis", "pleural", "hernia")),
    "dermamnist": ("multi-class", 3, (
        "actinic keratoses and intraepithelial carcinoma", "basal cell carcinoma", "benign keratosis-like lesions",
        "dermatofibroma", "melanoma", "melanocytic nevi", "vascular lesions")),
    "octmnist": ("multi-class", 1, ("choroidal neovascularization", "diabetic macular edema", "drusen", "normal")),
    "pneumoniamnist": ("binary-class", 1, ("normal", "pneumonia")),
    "retinamnist": ("ordinal-regression", 3, ("0", "1", "2", "3", "4")),  # diabetic retinopathy grade
    "breastmnist": ("binary-class", 1, ("malignant", "normal, benign")),
    "bloodmnist": ("multi-class", 3, (
        "basophil", "eosinophil", "erythroblast",
        "immature granulocytes(myelocytes, metamyelocytes and promyelocytes)", "lymphocyte", "monocyte",
        "neutrophil", "platelet")),
    "tissuemnist": ("multi-class", 1, (
        "Collecting Duct, Connecting Tubule", "Distal Convoluted Tubule", "Glomerular endothelial cells",
        "Interstitial endothelial cells", "Leukocytes", "Podocytes", "Proximal Tubule Segments",
        "Thick Ascending Limb")),
    "organamnist": ("multi-class", 1, _ORGAN),
    "organcmnist": ("multi-class", 1, _ORGAN),
    "organsmnist": ("multi-class", 1, _ORGAN),
}
MEDMNIST_LABELS: dict[str, tuple[str, ...]] = {flag: row[2] for flag, row in _TABLE.items()}
# ChestMNIST holds 14 binary findings per image, not one class: a task picks one finding.
MEDMNIST_MULTILABEL = frozenset(flag for flag, row in _TABLE.items() if row[0].startswith("multi-label"))
_VOLUME_SET = re.compile(r"^[a-z]+mnist3d$")


@dataclass(frozen=True)
class MedMNISTInfo:
    """One MedMNIST 2-D dataset's metadata.

    Attributes
    ----------
    flag : str
        The dataset's name in the medmnist package ("pneumoniamnist").
    task : str
        "binary-class", "multi-class", "ordinal-regression" or "multi-label, binary-class".
    labels : tuple of str
        Label (or, multi-label, finding) names by index.
    n_channels : int
    n_samples : dict of str to int
        Images per split ("train", "val", "test"); empty when only intrinsics' own table is known.
    md5 : dict of int to str
        The file checksum of each image size; empty when only intrinsics' own table is known.
    source : str
        Where the metadata came from: "medmnist X.Y.Z" or "intrinsics".
    """

    flag: str
    task: str
    labels: tuple[str, ...]
    n_channels: int
    n_samples: dict[str, int] = field(default_factory=dict)
    md5: dict[int, str] = field(default_factory=dict)
    source: str = "intrinsics"

    @property
    def multilabel(self) -> bool:
        """True when each image carries several binary findings (ChestMNIST)."""
        return self.task.startswith("multi-label")


@functools.cache
def _package() -> Any:
    """The medmnist package's ``info`` module, or None when the package is not installed."""
    # medmnist's __init__ prints to stdout when its own dependencies are missing, which would corrupt
    # `intrinsics measure --json`; whatever it prints or warns while importing is kept off the output.
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from medmnist import info
    except Exception:  # noqa: BLE001 - a broken optional package must not stop a load: our table stands in
        return None
    return info


def medmnist_package_root() -> Path | None:
    """The medmnist package's download folder (``~/.medmnist``) when the package is installed."""
    info = _package()
    root = getattr(info, "DEFAULT_ROOT", None)
    return None if root is None else Path(root).expanduser()


def medmnist_info(flag: str) -> MedMNISTInfo:
    """The metadata of the MedMNIST 2-D dataset ``flag`` (the medmnist package's when installed)."""
    if _VOLUME_SET.match(flag):
        raise DataError(
            f"{flag} holds 3-D volumes; intrinsics measures 2-D images: use a 2-D MedMNIST dataset "
            f"({', '.join(sorted(_TABLE))}), or slice the volumes and pass them to from_arrays()"
        )
    if flag not in _TABLE:
        raise DataError(f"{flag!r} is not a MedMNIST 2-D dataset; available: {', '.join(sorted(_TABLE))}")
    task, channels, labels = _TABLE[flag]
    package = _package()
    if package is None or flag not in getattr(package, "INFO", {}):
        return MedMNISTInfo(flag, task, labels, channels)
    row, source = package.INFO[flag], f"medmnist {getattr(package, '__version__', '?')}"
    names = row.get("label", {})
    return MedMNISTInfo(
        flag=flag,
        task=str(row.get("task", task)),
        labels=tuple(str(names[k]) for k in sorted(names, key=int)) if names else labels,
        n_channels=int(row.get("n_channels", channels)),
        n_samples={str(k): int(v) for k, v in row.get("n_samples", {}).items()},
        md5={size: str(row[key]) for size in MEDMNIST_SIZES
             if (key := "MD5" if size == 28 else f"MD5_{size}") in row},
        source=source,
    )
