"""Study specifications: a TOML file naming datasets, models, N, seeds, epochs, attacks and layers.

A spec has one shared ``[preprocessing]`` block because K_F is only comparable between datasets
prepared the same way (method.md §2). :func:`expand_grid` turns a spec into one run per
(dataset, model, N, seed); each run's ``run_key`` also hashes everything else that changes its result,
so editing e.g. the epochs gives new runs instead of silently mixing old and new ones.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError, IntrinsicsError, SettingError, python_spelling, use_spelling

__all__ = [
    "SpecError",
    "DatasetSpec",
    "StudySpec",
    "load_spec",
    "parse_spec",
    "expand_grid",
]

class SpecError(IntrinsicsError):
    """A study spec is malformed; the message names the key and the fix."""


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of a study: where it comes from and which domain it belongs to."""

    name: str
    source: str
    domain: str
    classes: tuple[Any, ...] | None = None
    limit: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    N: tuple[int, ...] | None = None
    test_size: int | None = None

    def load_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``intrinsics.data.load`` (beyond the shared preprocessing)."""
        kw: dict[str, Any] = dict(self.options)
        if self.classes is not None:
            kw["classes"] = list(self.classes)
        if self.limit is not None:
            kw["limit"] = self.limit
        return kw


@dataclass(frozen=True)
class StudySpec:
    """A parsed, validated study spec (see :func:`load_spec`)."""

    name: str
    datasets: tuple[DatasetSpec, ...]
    models: tuple[str, ...]
    N: tuple[int, ...]
    seeds: tuple[int, ...]
    preprocessing: dict[str, Any]
    training: dict[str, Any]
    measure: dict[str, Any]
    attacks: dict[str, Any]
    representation: dict[str, Any]
    source_text: str = ""
    # Where runs execute ([resources]: CPUs and GPUs per run, retries); not what they compute.
    resources: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (without the TOML text)."""
        d = asdict(self)
        d.pop("source_text")
        return d

    def digest(self) -> str:
        """Short hash of the spec's content (not its comments or layout, nor its ``[resources]``: the
        same study may resume on another machine or cluster)."""
        d = self.to_dict()
        d.pop("resources")
        return _hash(d)

    def dataset(self, name: str) -> DatasetSpec:
        """The dataset called ``name``."""
        for ds in self.datasets:
            if ds.name == name:
                return ds
        raise SpecError(f"no dataset named {name!r} in the spec; names are {[d.name for d in self.datasets]}")


_TRAINING_DEFAULTS: dict[str, Any] = {
    "epochs": 10,
    "batch_size": 32,
    "lr": 1e-3,
    "weight_decay": 1e-4,
    "optimizer": "adam",
    "test_size": 200,
    "device": "auto",
    "save_checkpoints": False,
}
_MEASURE_DEFAULTS: dict[str, Any] = {
    "estimator": "mle",
    "k": 20,
    "kf_samples": 1000,
    "n_bootstrap": 50,
    "max_samples": 5000,
}
# kf_pairs ("all" or the published code's "aligned") has no default here: specs without it keep their digest.
_MEASURE_OPTIONAL = ("kf_pairs",)
_ATTACK_DEFAULTS: dict[str, Any] = {"fgsm_eps": [2 / 255], "max_images": 500}
# PGD keys have no defaults here, so specs without them keep their digest and run keys; a run
# without pgd_step_size uses pgd()'s 2.5 * eps / steps, without pgd_steps 10 steps.
# Validation-based selection: absent from a spec, the run is the reference protocol's (last epoch) and
# the spec keeps its digest and run keys.
_TRAINING_OPTIONAL = ("val_size", "loss_at")
_ATTACK_OPTIONAL = ("pgd_eps", "pgd_steps", "pgd_step_size")
_REPR_DEFAULTS: dict[str, Any] = {"layers": ["penultimate"], "estimator": "twonn", "max_images": 1000}
# twonn_discard (0.1 when absent; 0.0 for the reference study's code) has no default here: digests unchanged.
_REPR_OPTIONAL = ("twonn_discard",)
_PREPROCESSING_KEYS = {"size", "channels", "intensity", "seed"}
_TOP_KEYS = {"name", "datasets", "models", "N", "seeds", "preprocessing", "training", "measure",
             "attacks", "representation", "resources"}


def _hash(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


# A grid larger than this is a typo (a range of seeds instead of a list) far more often than a plan: the
# reference study's grid is about 400 runs; 100,000 runs of the smallest model take months here.
MAX_RUNS = 100_000


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate a study spec from a TOML file.

    Raises
    ------
    SpecError
        If the file is missing, is not TOML, or a key is missing or invalid (the message names it).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(
            f"cannot read study spec {str(path)!r} ({exc.strerror}); create one with "
            f"'intrinsics study init --preset demo-quick {path}'"
        ) from None
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise SpecError(f"study spec {str(path)!r} is not UTF-8 text (byte {exc.object[exc.start]:#04x} on line "
                        f"{line}); save it as UTF-8") from None
    if text.startswith("\ufeff"):
        text = text[1:]  # a byte-order mark some editors write: not part of the TOML
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"study spec {str(path)!r} is not valid TOML ({exc}); fix the line it names") from None
    except RecursionError:
        raise SpecError(f"study spec {str(path)!r} nests arrays or tables too deeply to be a study spec; "
                        "fix the file") from None
    return parse_spec(raw, source_text=text, where=str(path))


def parse_spec(raw: dict[str, Any], *, source_text: str = "", where: str = "spec") -> StudySpec:
    """Validate a spec given as a dict (the parsed TOML); see :func:`load_spec`."""
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise SpecError(
            f"{where}: unknown top-level key(s) {sorted(unknown)}; valid keys are {sorted(_TOP_KEYS)}"
        )
    name = raw.get("name", Path(where).stem if where != "spec" else "study")
    if not isinstance(name, str) or not name or not name.isprintable():
        raise SpecError(f"{where}: 'name' must be a non-empty string of printable characters, got {name!r}")
    datasets = _parse_datasets(raw, where)
    models = _parse_models(raw, where)
    N = _int_list(raw, "N", where, minimum=2)
    seeds = _int_list(raw, "seeds", where, minimum=0, default=[0])
    preprocessing = _parse_preprocessing(raw, where, datasets)
    training = _parse_training(raw, where)
    measure = _parse_measure(raw, where)
    attacks = _parse_attacks(raw, where)
    representation = _parse_representation(raw, where)
    resources = _parse_resources(raw, where, training)
    _check_limits(datasets, N, training, where)
    n_runs = sum(len(ds.N or N) for ds in datasets) * len(models) * len(seeds)
    if n_runs > MAX_RUNS:
        raise SpecError(f"{where}: the grid has {n_runs:,} runs (datasets × models × N × seeds), more than "
                        f"{MAX_RUNS:,}; split it into several studies or use fewer N or seeds")
    return StudySpec(
        name=name,
        datasets=datasets,
        models=tuple(models),
        N=tuple(N),
        seeds=tuple(seeds),
        preprocessing=preprocessing,
        training=training,
        measure=measure,
        attacks=attacks,
        representation=representation,
        source_text=source_text,
        resources=resources,
    )


_DATASET_KEYS = ("name", "source", "domain", "classes", "limit", "options", "N", "test_size")


def _parse_datasets(raw: dict[str, Any], where: str) -> tuple[DatasetSpec, ...]:
    datasets = raw.get("datasets")
    if not isinstance(datasets, list) or not datasets:
        raise SpecError(
            f"{where}: no [[datasets]] given; add at least one block like "
            "[[datasets]] name = \"mnist-3v8\" source = \"builtin:mnist\" classes = [3, 8] domain = \"natural\""
        )
    specs: list[DatasetSpec] = []
    for i, d in enumerate(datasets):
        ds = _parse_dataset(d, f"datasets[{i}]", where)
        if any(other.name == ds.name for other in specs):
            raise SpecError(f"{where}: datasets[{i}].name {ds.name!r} is used twice; give each dataset its own name")
        specs.append(ds)
    return tuple(specs)


def _parse_dataset(d: Any, key: str, where: str) -> DatasetSpec:
    if not isinstance(d, dict):
        raise SpecError(f"{where}: {key} must be a table ([[datasets]] block), got {d!r}")
    for req in ("name", "source", "domain"):
        if not isinstance(d.get(req), str) or not d.get(req):
            raise SpecError(f"{where}: {key}.{req} is missing or not a string; add {req} = \"...\"")
    if any(c in d["name"] for c in "/|#") or not d["name"].isprintable():
        raise SpecError(f"{where}: {key}.name {d['name']!r} contains '/', '|', '#' or a control character; use "
                        "letters, digits, '-' or '_'")
    for req in ("source", "domain"):
        if "\0" in d[req]:
            raise SpecError(f"{where}: {key}.{req} {d[req]!r} contains a NUL character; remove it")
    classes = d.get("classes")
    if classes is not None:
        if not isinstance(classes, list) or len(classes) < 2:
            raise SpecError(
                f"{where}: {key}.classes must list at least two classes, got {classes!r}; e.g. classes = [3, 8]"
            )
        classes = tuple(classes)
    limit = d.get("limit")
    if limit is not None and (not isinstance(limit, int) or limit <= 0):
        raise SpecError(f"{where}: {key}.limit must be a positive integer, got {limit!r}")
    options = d.get("options", {})
    if not isinstance(options, dict):
        raise SpecError(f"{where}: {key}.options must be a table of extra load() arguments, got {options!r}")
    extra = set(d) - set(_DATASET_KEYS)
    if extra:
        raise SpecError(f"{where}: {key} has unknown key(s) {sorted(extra)}; valid are {', '.join(_DATASET_KEYS)}")
    if isinstance(options.get("exclude"), str):
        # The ids themselves, not the file's name, belong to the spec: its digest (and so its run keys)
        # changes when the list does, and a study resumes on the images it started with.
        from ..data.options import read_id_list
        from ..errors import SettingError

        try:
            options = {**options, "exclude": list(read_id_list(options["exclude"]))}
        except SettingError as exc:
            raise SpecError(f"{where}: {key}.options.exclude = {options['exclude']!r} {exc.problem}") from None
    ds_N = tuple(_int_list(d, "N", f"{where}: {key}", minimum=2)) if "N" in d else None
    test_size = d.get("test_size")
    if test_size is not None and (not isinstance(test_size, int) or test_size <= 0):
        raise SpecError(f"{where}: {key}.test_size must be a positive integer, got {test_size!r}")
    return DatasetSpec(d["name"], d["source"], d["domain"], classes, limit, dict(options), ds_N, test_size)


def _parse_models(raw: dict[str, Any], where: str) -> list[str]:
    from ..registry import MODELS

    models = _str_list(raw, "models", where, default=["smallcnn"])
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise SpecError(f"{where}: unknown model(s) {unknown}; 'models' may list {', '.join(MODELS)}")
    return models


def _parse_preprocessing(raw: dict[str, Any], where: str, datasets: tuple[DatasetSpec, ...]) -> dict[str, Any]:
    pre = raw.get("preprocessing", {})
    if not isinstance(pre, dict):
        raise SpecError(f"{where}: [preprocessing] must be a table, got {pre!r}")
    bad = set(pre) - _PREPROCESSING_KEYS
    if bad:
        raise SpecError(
            f"{where}: preprocessing has unknown key(s) {sorted(bad)}; valid are {sorted(_PREPROCESSING_KEYS)}"
        )
    pre = {"size": None, "channels": None, "intensity": "unit", **pre}
    _check_data_options(pre, f"{where}: [preprocessing]")
    for i, ds in enumerate(datasets):
        _check_data_options({**pre, **ds.load_kwargs()}, f"{where}: datasets[{i}] ({ds.name!r})")
    return pre


def _parse_training(raw: dict[str, Any], where: str) -> dict[str, Any]:
    from ..learn.train import OPTIMIZERS

    training = _block(raw, "training", _TRAINING_DEFAULTS, where, optional=_TRAINING_OPTIONAL)
    for k in ("epochs", "batch_size", "test_size"):
        if not isinstance(training[k], int) or training[k] <= 0:
            raise SpecError(f"{where}: training.{k} must be a positive integer, got {training[k]!r}")
    for k in ("lr", "weight_decay"):
        if not isinstance(training[k], (int, float)) or training[k] < 0:
            raise SpecError(f"{where}: training.{k} must be a non-negative number, got {training[k]!r}")
    if training["optimizer"] not in OPTIMIZERS:
        raise SpecError(f"{where}: training.optimizer must be one of {', '.join(OPTIMIZERS)}, "
                        f"got {training['optimizer']!r}")
    from ..learn.pipeline import RunSettings

    n_val, loss_at = selection(training)
    try:
        RunSettings(model="smallcnn", N=1, n_test=1, n_val=n_val, loss_at=loss_at)  # its checks, declared once
    except SettingError as exc:
        key = {"n_val": "val_size"}.get(exc.setting, exc.setting)
        raise SpecError(f"{where}: training.{key} {exc.problem}, got {exc.value!r}") from None
    return training


def selection(training: dict[str, Any]) -> tuple[int, str]:
    """(validation images, which test loss a run reports) of a ``[training]`` block: ``loss_at``
    defaults to "best_val" when there is a validation set (``val_size`` > 0), else "last"."""
    n_val = training.get("val_size", 0)
    return n_val, training.get("loss_at") or ("best_val" if n_val else "last")


def _parse_attacks(raw: dict[str, Any], where: str) -> dict[str, Any]:
    from ..learn.pipeline import AttackSettings

    attacks = _block(raw, "attacks", _ATTACK_DEFAULTS, where, optional=_ATTACK_OPTIONAL)
    _typed("attacks", where, AttackSettings, attacks)
    return attacks


def _parse_representation(raw: dict[str, Any], where: str) -> dict[str, Any]:
    from ..learn.pipeline import ReprSettings

    representation = _block(raw, "representation", _REPR_DEFAULTS, where, optional=_REPR_OPTIONAL)
    _typed("representation", where, ReprSettings, representation)
    return representation


def _parse_measure(raw: dict[str, Any], where: str) -> dict[str, Any]:
    from ..measure.pipeline import MeasureSettings

    measure = _block(raw, "measure", _MEASURE_DEFAULTS, where, optional=_MEASURE_OPTIONAL)
    _typed("measure", where, MeasureSettings, measure)
    return measure


def _parse_resources(raw: dict[str, Any], where: str, training: dict[str, Any]) -> dict[str, Any]:
    from .executors import Resources

    block = _block(raw, "resources", {}, where, optional=("cpus_per_run", "gpus_per_run", "max_retries"))
    _typed("resources", where, Resources, block)
    if training["device"] == "cpu" and block.get("gpus_per_run"):
        raise SpecError(f"{where}: resources.gpus_per_run is {block['gpus_per_run']!r} but training.device is "
                        "'cpu'; set device = \"auto\" (or \"cuda\") to train on GPUs, or leave gpus_per_run out")
    return block


def _typed(block: str, where: str, settings_type: Any, values: dict[str, Any]) -> None:
    """Check a spec block by making the typed settings it stands for: one set of checks, declared by
    the settings type, with the message spelt in the spec's own terms (``block.key ..., got value``)."""
    try:
        settings_type(**values)
    except SettingError as exc:
        raise SpecError(f"{where}: {block}.{exc.setting} {exc.problem}, got {exc.value!r}"
                        + (f"; {exc.hint}" if exc.hint else "")) from None


def _check_limits(datasets: tuple[DatasetSpec, ...], N: list[int], training: dict[str, Any], where: str) -> None:
    """A dataset's ``limit`` must leave room for its largest N plus its test set."""
    for ds in datasets:
        test_size = ds.test_size or training["test_size"]
        n_max = max(ds.N or N)
        if ds.limit is not None and ds.limit < n_max + test_size:
            raise SpecError(
                f"{where}: dataset {ds.name!r} has limit = {ds.limit} but the largest N ({n_max}) plus "
                f"its test_size ({test_size}) needs {n_max + test_size} images; raise the limit"
            )


def _check_data_options(settings: dict[str, Any], where: str) -> None:
    """The data settings of a spec, checked as load() checks them, before anything is read or written."""
    from ..data.options import DataOptions

    try:
        with use_spelling(python_spelling):  # a spec names settings as its TOML keys, on any front end
            DataOptions.from_dict({k: v for k, v in settings.items() if k != "seed" or v is not None})
    except DataError as exc:
        raise SpecError(f"{where}: {exc}") from None


def _block(raw: dict[str, Any], name: str, defaults: dict[str, Any], where: str,
           optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """A table merged over its defaults; ``optional`` keys are accepted but only kept when given."""
    block = raw.get(name, {})
    if not isinstance(block, dict):
        raise SpecError(f"{where}: [{name}] must be a table, got {block!r}")
    bad = set(block) - set(defaults) - set(optional)
    if bad:
        raise SpecError(
            f"{where}: {name} has unknown key(s) {sorted(bad)}; valid are {sorted(set(defaults) | set(optional))}"
        )
    return {**defaults, **block}


def _str_list(raw: dict[str, Any], key: str, where: str, default: list[str]) -> list[str]:
    value = raw.get(key, default)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise SpecError(f"{where}: '{key}' must be a non-empty list of names, got {value!r}; e.g. {key} = {default!r}")
    if len(set(value)) != len(value):
        raise SpecError(f"{where}: '{key}' lists a name twice ({value!r}); remove the repeat")
    return value


def _int_list(raw: dict[str, Any], key: str, where: str, minimum: int, default: list[int] | None = None) -> list[int]:
    if key not in raw and default is None:
        raise SpecError(f"{where}: '{key}' is missing; add e.g. {key} = [100, 200, 400]")
    value = raw.get(key, default)
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in value)
    ):
        raise SpecError(
            f"{where}: '{key}' must be a non-empty list of integers >= {minimum}, got {value!r}"
        )
    if len(set(value)) != len(value):
        raise SpecError(f"{where}: '{key}' lists a value twice ({value!r}); remove the repeat")
    return sorted(value)


def expand_grid(spec: StudySpec) -> list[dict[str, Any]]:
    """One run per (dataset, model, N, seed), each with its ``run_key`` and full ``config``.

    Returns
    -------
    list of dict
        Keys run_key, dataset, domain, model, N, seed, config (everything the run needs).
    """
    runs = []
    for ds in spec.datasets:
        for model in spec.models:
            for n in ds.N or spec.N:
                for seed in spec.seeds:
                    config = {
                        "dataset": ds.name,
                        "source": ds.source,
                        "domain": ds.domain,
                        "load": ds.load_kwargs(),
                        "model": model,
                        "N": n,
                        "seed": seed,
                        "preprocessing": spec.preprocessing,
                        "test_size": ds.test_size or spec.training["test_size"],
                        "training": spec.training,
                        "attacks": spec.attacks,
                        "representation": spec.representation,
                    }
                    # The hash covers everything but the identity fields already in the key; it changes
                    # whenever a setting that changes the result changes.
                    rest = {k: v for k, v in config.items() if k not in ("dataset", "model", "N", "seed")}
                    rest["training"] = {k: v for k, v in spec.training.items() if k != "device"}
                    key = f"{ds.name}/{model}/N={n}/seed={seed}/{_hash(rest)}"
                    runs.append(
                        {
                            "run_key": key,
                            "dataset": ds.name,
                            "domain": ds.domain,
                            "model": model,
                            "N": n,
                            "seed": seed,
                            "config": config,
                        }
                    )
    return runs
