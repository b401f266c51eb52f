"""Checkpoints that hold only tensors and plain values, loaded with ``weights_only=True``.

A checkpoint records the model's name and shape, its weights, the data source and options, and
the exact train/test indices, so ``attack`` and ``repr`` can rebuild the model and its own test
set. Loading never unpickles objects: a file from someone else cannot run code here.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError
from ..jsonio import to_jsonable
from .models import ImageClassifier, create_model

__all__ = ["Checkpoint", "save_checkpoint", "load_checkpoint", "images_digest", "checkpoint_records", "FORMAT",
           "DATA_FIELDS", "SPLIT_FIELDS"]

FORMAT = "intrinsics-checkpoint"
_VERSION = 1

#: Fields :func:`save_checkpoint` needs in ``data`` and ``split`` (see :class:`Checkpoint`).
DATA_FIELDS: tuple[str, ...] = ("source", "options", "preprocessing", "n_pool", "shape", "classes", "class_names")
SPLIT_FIELDS: tuple[str, ...] = ("seed", "n_train", "n_test", "train_idx", "test_idx", "test_labels", "test_digest")


def images_digest(images: np.ndarray) -> str:
    """SHA-256 of float32 image bytes: tells whether a reloaded test set is the one trained on."""
    return hashlib.sha256(np.ascontiguousarray(images, dtype=np.float32).tobytes()).hexdigest()


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint.

    Attributes
    ----------
    path : str
    model_spec : dict
        ``name``, ``in_chans``, ``num_classes``, ``image_size`` for :func:`create_model`.
    state_dict : dict of Tensor
    data : dict
        ``source``, ``options`` (the data options given to the loader), ``preprocessing``,
        ``n_pool`` (images in the loaded set), ``shape``, ``classes`` (original class indices,
        in the order of the model's outputs), ``class_names``.
    split : dict
        ``seed``, ``n_train``, ``n_test``, ``balanced``, ``train_idx``, ``test_idx`` (int64 tensors
        into the loaded set), ``test_labels`` (model classes), ``test_digest``.
    train : dict
        The training record (history, test loss, kept epoch, config).
    """

    path: str
    model_spec: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    data: dict[str, Any]
    split: dict[str, Any]
    train: dict[str, Any]

    def build_model(self, device: str | torch.device = "cpu") -> ImageClassifier:
        """The trained model, in eval mode."""
        spec = self.model_spec
        model = create_model(spec["name"], spec["in_chans"], spec["num_classes"], image_size=spec.get("image_size"))
        try:
            model.load_state_dict(self.state_dict)
        except RuntimeError as err:
            raise DataError(
                f"checkpoint {self.path!r} has weights that do not fit a {spec['name']!r} model "
                f"({str(err).splitlines()[0]}); it was written by another version or edited"
            ) from None
        return model.to(device).eval()

    @property
    def train_idx(self) -> np.ndarray:
        return self.split["train_idx"].numpy()

    @property
    def test_idx(self) -> np.ndarray:
        return self.split["test_idx"].numpy()


def checkpoint_records(
    ds: Any, *, source: str | None, options: dict[str, Any], labels: np.ndarray, classes: np.ndarray,
    train_idx: np.ndarray, test_idx: np.ndarray, seed: int, balanced: bool, **split_extra: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``data`` and ``split`` records of :func:`save_checkpoint` for a model trained on ``ds``
    (an ImageSet) with labels re-coded to ``labels``/``classes`` and the given split."""
    names = list(ds.class_names)
    data = {
        "source": source,
        "options": options,
        "preprocessing": ds.preprocessing,
        "n_pool": len(ds),
        "shape": list(ds.shape),
        "classes": classes.tolist(),
        "class_names": [names[c] if 0 <= c < len(names) else str(c) for c in classes.tolist()],
    }
    split = {
        "seed": int(seed),
        **split_extra,
        "n_train": len(train_idx),
        "n_test": len(test_idx),
        "balanced": bool(balanced),
        "train_idx": train_idx,
        "test_idx": test_idx,
        "test_labels": labels[test_idx],
        "test_digest": images_digest(ds.images[test_idx]),
    }
    return data, split


def save_checkpoint(
    path: str | os.PathLike,
    model: ImageClassifier,
    *,
    data: dict[str, Any],
    split: dict[str, Any],
    train: dict[str, Any],
) -> str:
    """Write a checkpoint of plain values and tensors (see :class:`Checkpoint` for the fields).

    ``data`` and ``split`` must hold every field ``attack`` and ``repr`` use to rebuild the checkpoint's
    own test set (:data:`DATA_FIELDS`, :data:`SPLIT_FIELDS`); a missing one is refused before writing.
    """
    for what, record, needed in (("data", data, DATA_FIELDS), ("split", split, SPLIT_FIELDS)):
        missing = [k for k in needed if k not in record]
        if missing:
            raise DataError(
                f"checkpoint {what} record lacks {missing}; pass all of {list(needed)} so that "
                "`intrinsics attack` and `intrinsics repr` can rebuild the checkpoint's test set"
            )
    split = dict(split)
    for key in ("train_idx", "test_idx", "test_labels"):
        split[key] = torch.as_tensor(np.asarray(split[key], dtype=np.int64))
    payload = {
        "format": FORMAT,
        "version": _VERSION,
        "model": to_jsonable(model.spec()),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "data": to_jsonable(data),
        "split": {k: (v if torch.is_tensor(v) else to_jsonable(v)) for k, v in split.items()},
        "train": to_jsonable(train),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)  # never leave a half-written checkpoint under the final name
    return str(path)


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`, refusing anything but plain data.

    Raises
    ------
    DataError
        If the file is missing, is not a torch file, holds pickled objects (refused by
        ``weights_only=True``), or is not an intrinsics checkpoint.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise DataError(f"checkpoint {path!r} not found; give the .pt file written by `intrinsics train --out DIR`")
    if not zipfile.is_zipfile(path):  # torch.save's format since 1.6; anything else is not ours
        raise DataError(
            f"{path!r} is not a readable torch checkpoint (not a torch zip archive); "
            "give the .pt file written by `intrinsics train`"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise DataError(
            f"checkpoint {path!r} contains Python objects other than tensors and plain values, so it "
            "was refused (it could run code when loaded); use a checkpoint written by `intrinsics train`"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise DataError(
            f"{path!r} is not a readable torch checkpoint ({type(err).__name__}); "
            "give the .pt file written by `intrinsics train`"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise DataError(
            f"{path!r} is a torch file but not an intrinsics checkpoint; "
            "give the .pt file written by `intrinsics train`"
        )
    if payload.get("version") != _VERSION:
        raise DataError(
            f"checkpoint {path!r} has format version {payload.get('version')!r}, this intrinsics reads "
            f"version {_VERSION}; retrain with this version"
        )
    return Checkpoint(
        path=path,
        model_spec=payload["model"],
        state_dict=payload["state_dict"],
        data=payload["data"],
        split=payload["split"],
        train=payload["train"],
    )
