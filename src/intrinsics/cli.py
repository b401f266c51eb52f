"""Command-line interface: parsing and printing only; the work happens in the library layers."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence

from ._version import __version__
from .data.options import SETTINGS
from .registry import DEFAULT_MODEL, model_help
from .errors import IntrinsicsError, Placeholder, describe_failure, python_spelling, use_spelling
from .jsonio import dumps, write_json

__all__ = ["main", "build_parser"]

# Exit codes a script can rely on (the README's table): 0 all done; 1 a bug (a traceback); 2 bad input or an
# environment failure, one line; 3 a refused comparison; 4 a study that finished with failed runs.
EXIT_ERROR = 2
EXIT_NOT_COMPARABLE = 3
EXIT_RUNS_FAILED = 4
# Bootstrap resamples of the study fits behind `report` and the verdicts that end `study run`.
REPORT_BOOTSTRAP = 1000


# --------------------------------------------------------------------------------------------------
# shared options
def _add_data_options(p: argparse.ArgumentParser, *, from_checkpoint: bool = False) -> None:
    """Dataset options shared by every command; with ``from_checkpoint`` unset ones keep the checkpoint's."""
    g = p.add_argument_group("data options" + (" (default: as recorded in the checkpoint)" if from_checkpoint else ""))
    g.add_argument("--split", help="split of an .npz / builtin dataset (train, val, test), a folder's subfolder, "
                   "or a datalist's list (training, validation, test)")
    g.add_argument("--labels", metavar="CSV", help="CSV with columns path,label for a folder of images")
    g.add_argument("--no-labels", action="store_true",
                   help="read a folder unlabelled (its subfolders are series or studies, not classes), or a "
                        "datalist whose labels are segmentation masks")
    g.add_argument("--label-key", default="path", help="CSV column that identifies an image (path, SOPInstanceUID, PatientID, ...)")
    g.add_argument("--size", metavar="S|H,W", help="resize to S×S or H×W (also HxW)")
    g.add_argument("--channels", type=int, choices=(1, 3), help="convert to 1 or 3 channels")
    g.add_argument("--intensity", default=None if from_checkpoint else "unit", choices=("unit", "per_image_max", "minmax"),
                   help="unit: by the dtype's range (or the reader's, e.g. a DICOM window); per_image_max: x/max(x) "
                        "per image (the reference study); minmax: by the dataset's own range (default: unit)")
    g.add_argument("--value-range", metavar="LO,HI", help="intensity range that maps to [0, 1] for float data")
    g.add_argument("--label-column", help="CSV column, MedMNIST finding or datalist key to use as the label")
    g.add_argument("--unmatched", choices=("error", "skip"), help="CSV rows without files / files without rows: "
                   "error (default) or skip with a counted warning")
    g.add_argument("--classes", type=_classes, help="keep these classes, relabelled 0.. in this order (e.g. 3,5)")
    g.add_argument("--limit", type=int, help="keep at most this many images (stratified, reproducible with --seed)")
    g.add_argument("--seed", type=int, default=None if from_checkpoint else 0,
                   help="seed for every random choice: subsets, splits, weights, attack starts (default 0)")
    g.add_argument("--window", help="DICOM window: center,width or a preset (brain, lung, bone, ...)")
    g.add_argument("--axis", help="NIfTI slicing axis: 0/1/2 or sagittal/coronal/axial (default axial)")
    g.add_argument("--slices", metavar="START:STOP", help="NIfTI slice range along the axis")
    g.add_argument("--skip-empty", action="store_true", help="NIfTI: drop constant (empty) slices")
    g.add_argument("--volume", type=int, help="NIfTI: index of the volume in a 4-D file")
    g.add_argument("--max-pixels", metavar="N", help="refuse an image whose header declares more than N pixels "
                   "(rows × columns), before decoding it (default 89478485, Pillow's)")
    g.add_argument("--no-follow-links", action="store_true",
                   help="skip symbolic links in a folder (with a warning naming them) instead of reading them")
    g.add_argument("--exclude", metavar="FILE", help="leave out the images whose ids FILE lists (one per line, or "
                   "a CSV with an id column, such as rows of an audit's images.csv); every id must be found")


def _twonn_discard(text: str) -> float:
    """A TwoNN discard share: a number, or a convention's name (see ReprSettings)."""
    from .learn.pipeline import TWONN_DISCARD_NAMES, ReprSettings

    value = TWONN_DISCARD_NAMES.get(text.strip().lower()) if not text[:1].isdigit() else None
    try:
        return ReprSettings(twonn_discard=value if value is not None else _fraction(text)).twonn_discard
    except Exception as exc:  # noqa: BLE001 - argparse turns this into a one-line usage error
        raise argparse.ArgumentTypeError(str(exc)) from None


def _fraction(text: str) -> float:
    """A number such as 0.01 or 2/255."""
    from .learn.attacks import parse_eps

    try:
        (value,) = parse_eps(text)
    except Exception:  # noqa: BLE001 - argparse turns this into a one-line usage error
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or fraction such as 2/255") from None
    return value


def _classes(text: str) -> tuple[Any, ...]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("--classes needs at least one class, e.g. 3,5")
    return tuple(int(t) if t.lstrip("-").isdigit() else t for t in items)


# The one table from setting names to flags: library messages name a setting through
# intrinsics.errors.spell, and on the command line it is spelt as the flag that sets it.
_FLAGS = {
    "split": "--split", "labels": "--labels", "label_key": "--label-key", "label_column": "--label-column",
    "unmatched": "--unmatched", "window": "--window", "axis": "--axis", "slices": "--slices",
    "skip_empty": "--skip-empty", "volume": "--volume", "size": "--size", "channels": "--channels",
    "intensity": "--intensity", "value_range": "--value-range", "classes": "--classes", "limit": "--limit",
    "seed": "--seed", "exclude": "--exclude", "group_key": "--group-key", "n_bootstrap": "--bootstrap",
    "kf_samples": "--kf-samples", "near_duplicate": "--near-duplicate", "near_duplicate_factor": "--near-duplicate-factor",
    "n_conflicts": "--conflicts", "k": "--k", "max_pixels": "--max-pixels", "follow_links": "--no-follow-links", "n_train": "--n-train",
    "n_test": "--n-test", "n_val": "--n-val", "device": "--device",
}


def _flag_value(value: Any) -> str:
    if isinstance(value, Placeholder):
        return ",".join(value.parts)
    if isinstance(value, (tuple, list)):
        return ",".join(_flag_value(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def flag_spelling(name: str, *value: Any) -> str:
    """A setting as the user gives it on the command line: ``--size 64,64``, ``no --channels``."""
    flag = _FLAGS.get(name)
    if flag is None:
        return python_spelling(name, *value)
    if not value:
        return flag
    v = value[0]
    if v is False and name in ("labels", "follow_links"):
        return _FLAGS[name] if name == "follow_links" else "--no-labels"
    if v is None or v is False:
        return f"no {flag}"
    return flag if v is True else f"{flag} {_flag_value(v)}"


def data_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The data settings given on the command line (those left unset are absent)."""
    if getattr(args, "no_labels", False) and args.labels:
        raise IntrinsicsError("--labels and --no-labels contradict each other; keep one")
    kw = {name: getattr(args, name, None) for name in SETTINGS}
    kw["labels"] = False if getattr(args, "no_labels", False) else args.labels
    kw["skip_empty"] = True if args.skip_empty else None  # a flag left off keeps the default (or the checkpoint's)
    kw["follow_links"] = False if getattr(args, "no_follow_links", False) else None
    if not args.labels:
        kw["label_key"] = None  # only a labels CSV has a key column
    return {k: v for k, v in kw.items() if v is not None}


def _load(args: argparse.Namespace, notes: list[str] | None = None):
    """Load the command's dataset; warnings raised while reading go to ``notes`` (when given)."""
    from .data import load

    if notes is None:
        return load(args.source, **data_kwargs(args))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load(args.source, **data_kwargs(args))
    notes.extend(str(w.message) for w in caught)
    return ds


def _write_json(path: str | None, payload: dict[str, Any]) -> None:
    if path:
        write_json(path, payload)


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.{digits}g}" if abs(x) < 1e-2 or abs(x) >= 1e4 else f"{x:.{digits}f}".rstrip("0").rstrip(".")
    return str(x)


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


# --------------------------------------------------------------------------------------------------
# measure / compare
def _measure_row(rec: dict[str, Any]) -> list[str]:
    ds, d, kf = rec["dataset"], rec["d_data"], rec.get("K_F") or {}
    lo, hi = d.get("ci95") or (None, None)
    kf_ci = kf.get("ci95") or [None, None]
    return [
        str(ds["source"]),
        str(ds["N"]),
        "×".join(map(str, ds["shape"])),
        f"{_fmt(d['value'])} [{_fmt(lo)}, {_fmt(hi)}]",
        _fmt(kf.get("value")) + (f" [{_fmt(kf_ci[0])}, {_fmt(kf_ci[1])}]" if kf else "")
        + (" (most draws held one class: not a measurement; use a larger --kf-samples)" if kf.get("value") == 0 else ""),
        str(kf.get("M", "—")),
        _fmt(kf.get("exact")),
    ]


def _measure_header(rec: dict[str, Any]) -> list[str]:
    d = rec["d_data"]
    est = d["estimator"] + (f" k={d['k']}" if d.get("k") else "")
    return ["dataset", "N", "shape", f"d_data ({est}) [95% CI]", "K_F [95% CI]", "M", "K_F exact"]


def _prep_line(rec: dict[str, Any]) -> str:
    from .data.preprocess import comparison_key

    key = comparison_key(rec["dataset"].get("preprocessing") or {}, rec["dataset"].get("reader"))
    return ", ".join(f"{k}={v}" for k, v in key.items())


def _ground_truth_line(rec: dict[str, Any]) -> str | None:
    """For synthetic sources: the true d and K_F by construction next to the estimates."""
    reader = rec["dataset"].get("reader") or {}
    if "true_d" not in reader and reader.get("theoretical_K_F") is None:
        return None
    parts = []
    if reader.get("true_d") is not None:
        parts.append(f"d = {reader['true_d']} (estimated {_fmt(rec['d_data']['value'])})")
    if reader.get("theoretical_K_F") is not None:
        kf = rec.get("K_F") or {}
        parts.append(f"K_F = {_fmt(float(reader['theoretical_K_F']))} (exact here {_fmt(kf.get('exact'))})")
    return "ground truth by construction: " + "; ".join(parts)


def _exclusion(args: argparse.Namespace, after: Any, settings: Any) -> dict[str, Any]:
    """The same measurement with every image (no --exclude), compared with ``after``."""
    from .data import load
    from .measure.pipeline import exclusion_change, measure_dataset

    full = {k: v for k, v in data_kwargs(args).items() if k != "exclude"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the excluded run's warnings are the ones reported
        before = measure_dataset(load(args.source, **full), settings, device=args.device)
    return exclusion_change(before, after)


def _exclusion_line(ex: dict[str, Any], path: str) -> str:
    def part(name: str, block: dict[str, Any]) -> str:
        if block["before"] is None:
            return f"{name} —"
        return f"{name} {_fmt(block['before'])} → {_fmt(block['after'])} ({block['change']:+.3g})"

    return (f"without the {ex['n_excluded']} images listed in {path} (N {ex['N_before']} → {ex['N_after']}): "
            + ", ".join(part(n, ex[key]) for n, key in (("d_data", "d_data"), ("K_F", "K_F"), ("K_F exact", "K_F_exact"))))


def cmd_audit(args: argparse.Namespace) -> int:
    from .data import load
    from .measure import engine_device
    from .measure.audit import AuditSettings, audit_dataset, options_for_test_set
    from .measure.audit_files import write_audit
    from .measure.pipeline import MeasureSettings

    settings = AuditSettings(k=args.k, near_duplicate=args.near_duplicate,
                             near_duplicate_factor=args.near_duplicate_factor, n_conflicts=args.conflicts)
    measure = MeasureSettings(kf_samples=args.kf_samples, n_bootstrap=args.bootstrap, seed=args.seed or 0)
    if args.test and args.test_split:
        raise IntrinsicsError("--test and --test-split both name a test set; keep one")
    engine_device(args.device)  # a device that is not there fails here, before any image is read
    load_notes: list[str] = []
    ds = _load(args, load_notes)
    test = None
    if args.test or args.test_split:
        test_labels = args.test_labels
        if test_labels is None and args.labels and args.test:
            # the test folder's own labels CSV of the same name, if it has one
            beside = Path(args.test) / Path(args.labels).name
            test_labels = str(beside) if beside.is_file() else None
        if test_labels is None and getattr(args, "no_labels", False):
            test_labels = False
        kwargs = options_for_test_set(data_kwargs(args), test_labels)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            test = (load(args.test, **kwargs) if args.test
                    else load(args.source, **kwargs, split=args.test_split))
        load_notes.extend(f"test set: {w.message}" for w in caught)
    audit = audit_dataset(ds, settings, measure=measure, test=test, group_key=args.group_key,
                          load_warnings=load_notes, device=args.device)
    if args.exclude:
        from dataclasses import replace

        audit = replace(audit, exclusion=_exclusion(args, audit.measurement, measure))
    page = write_audit(audit, ds.images, args.out, test_images=None if test is None else test.images,
                       n_show=args.show, version=__version__)
    if not args.quiet:
        rec = audit.to_dict()
        a = rec["audit"]
        counts = ", ".join(f"{v} {k.replace('_', ' ')}{'s' if v != 1 else ''}" for k, v in a["pairs"].items())
        t = rec["seconds"]
        print(f"audited {a['N']} images" + (f" and {a['n_test']} test images" if a["n_test"] else "")
              + f": {counts} (measure {t['measure']:.3g} s, findings {t['findings']:.3g} s)")
        print(f"near-duplicate threshold {_fmt(a['near_duplicate_threshold'])} ({a['threshold_rule']})")
        if a["groups_on_both_sides"] is not None:
            g = a["groups_on_both_sides"]
            print(f"{g['n']} {a['group_key']} values have images on both sides of the split"
                  + (f": {', '.join(map(str, g['groups'][:5]))}" + (" ..." if g["n"] > 5 else "") if g["n"] else ""))
        near = a["label_conflicts_identical_or_near"]
        print(f"label conflicts: {near} identical or closer than the threshold; the others are the closest "
              "differently-labelled pairs (those that set K_F)")
        top = [r for r in audit.result.image_rows()[:3] if (r["disagreement"] or 0) > 0]
        if audit.result.labels is not None and top:
            print("most suspect labels: " + "; ".join(
                f"{r['id']} ({r['label']}, {r['disagreement']:.0%} of neighbours disagree)" for r in top))
        if audit.exclusion is not None:
            print(_exclusion_line(audit.exclusion, args.exclude))
        print(f"wrote {page} and images.csv, pairs.csv, audit.json, knn_graph.npz in {args.out}")
        for w in rec["warnings"]:
            print(f"warning: {w}", file=sys.stderr)
    return 0


def cmd_measure(args: argparse.Namespace) -> int:
    from .measure import engine_device
    from .measure.pipeline import MeasureSettings, measure_dataset

    settings = MeasureSettings(estimator=args.estimator, k=args.k, kf_samples=args.kf_samples, seed=args.seed,
                               exact=not args.no_exact, k_sweep=args.k_sweep, n_bootstrap=args.bootstrap,
                               kf_pairs=args.kf_pairs)
    engine_device(args.device)  # a device that is not there fails here, before any image is read
    load_notes: list[str] = []
    ds = _load(args, load_notes)
    m = measure_dataset(ds, settings, load_warnings=load_notes, device=args.device)
    rec = m.to_dict(version=__version__)
    if args.exclude:
        rec["exclusion"] = _exclusion(args, m, settings)
    _write_json(args.json, rec)
    if not args.quiet:
        print(_table([_measure_row(rec)], _measure_header(rec)))
        if args.exclude:
            print(_exclusion_line(rec["exclusion"], args.exclude))
        print(f"preprocessing: {_prep_line(rec)}  (K_F is only comparable under identical preprocessing)")
        truth = _ground_truth_line(rec)
        if truth:
            print(truth)
        sweep = rec["d_data"].get("k_sweep")
        if sweep:
            shown = [(k, v) for k, v in zip(sweep["ks"], sweep["values"]) if k % 5 == 0]
            print(f"k-sweep (mle): every k from {sweep['ks'][0]} to {sweep['ks'][-1]} is in the JSON")
            print(_table([["d_data"] + [_fmt(v) for _, v in shown]], ["k"] + [str(k) for k, _ in shown]))
        kf = rec.get("K_F")
        if kf and kf.get("params", {}).get("pairs") == "aligned":
            print(f"K_F over aligned pairs (the reference study's code, for parity): {kf['pairs']:,} of "
                  f"{kf['M'] * (kf['M'] - 1) // 2:,} pairs per draw of M={kf['M']}; the exact K_F is over all pairs")
        if kf and kf.get("closest_pairs"):
            p = kf["closest_pairs"][0]
            names = rec["dataset"]["classes"] or []
            li, lj = (names[p[k]] if p[k] < len(names) else p[k] for k in ("label_i", "label_j"))
            print(f"closest differently-labelled pair: {p['id_i']} and {p['id_j']} (images {p['i']} and {p['j']}, "
                  f"classes {li!s}/{lj!s}), "
                  f"distance {_fmt(p['distance'])} — worth a look for label errors")
        for w in rec["warnings"]:
            print(f"warning: {w}", file=sys.stderr)
        if args.json:
            print(f"wrote {args.json}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    records = []
    for path in args.files:
        try:
            rec = json.loads(Path(path).read_text())
            rec["dataset"], rec["d_data"]  # noqa: B018 - validates the contract
        except FileNotFoundError:
            raise IntrinsicsError(f"{path}: no such file; create it with `intrinsics measure SOURCE --json {path}`") from None
        except (json.JSONDecodeError, KeyError, TypeError):
            raise IntrinsicsError(f"{path} is not a JSON file written by `intrinsics measure --json`") from None
        records.append(rec)
    from .measure.pipeline import kf_comparable

    problems = kf_comparable(records)
    rows = [_measure_row(r) for r in records]
    header = _measure_header(records[0])
    if problems and not args.force:
        # each row against the first: its K_F is shown where the two compare, and marked where they do not
        for r, rec in zip(rows[1:], records[1:]):
            against_first = kf_comparable([records[0], rec])
            if against_first:
                r[4:7] = ["not comparable with row 1: " + against_first[0].split(" (")[0], "", ""]
    print(_table(rows, header))
    for r in records:
        print(f"{r['dataset']['source']}: {_prep_line(r)}")
    if problems:
        msg = "K_F is not comparable across these files: " + "; ".join(problems)
        if args.force:
            print(f"warning: {msg} (shown anyway because of --force)", file=sys.stderr)
            return 0
        print(f"intrinsics: {msg}. Re-measure with identical --size/--channels/--intensity/--value-range/--window/--kf-samples "
              "(or pass --force to show the values anyway)", file=sys.stderr)
        return EXIT_NOT_COMPARABLE
    return 0


# --------------------------------------------------------------------------------------------------
# train / attack / repr
def cmd_train(args: argparse.Namespace) -> int:
    from .learn.runs import run_train

    rec = run_train(args.source, data_options=data_kwargs(args), model=args.model, n_train=args.n_train,
                    n_test=args.n_test, epochs=args.epochs, seed=args.seed, out=args.out,
                    batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, keep=args.keep,
                    balanced=not args.unbalanced, device=args.device, parity_head=args.parity_head,
                    quiet=args.quiet, n_val=args.n_val)
    _write_json(args.json, rec)
    if not args.quiet:
        t = rec["timing"]
        print(f"{args.model} on {rec['dataset']['source']}: N={rec['split']['n_train']}, test n={rec['split']['n_test']}, "
              f"{rec['train']['epochs']} epochs ({rec['kept']} epoch kept)")
        print(f"test loss {_fmt(rec['test_loss'], 4)}  test accuracy {_fmt(rec['test_accuracy'], 4)}  "
              f"{t['images_per_s']:.0f} images/s  {_fmt(t['wall_s'], 3)} s")
        if rec["best_val_epoch"]:
            print(f"at the best validation epoch ({rec['best_val_epoch']}): test loss "
                  f"{_fmt(rec['test_loss_at_best_val'], 4)}  test accuracy {_fmt(rec['test_accuracy_at_best_val'], 4)}")
        print(f"checkpoint: {rec['checkpoint']}")
    return 0


def cmd_attack(args: argparse.Namespace) -> int:
    from .learn.runs import run_attack

    rec = run_attack(args.checkpoint, args.source, data_options=data_kwargs(args), attack=args.attack,
                     eps=args.eps, steps=args.steps, step_size=args.step_size,
                     random_start=not args.no_random_start, seed=args.seed or 0, batch_size=args.batch_size,
                     device=args.device)
    _write_json(args.json, rec)
    rows = [["clean", _fmt(rec["clean"]["accuracy"], 4), _fmt(rec["clean"]["loss"], 4), "", ""]]
    for a in rec["attacks"]:
        rows.append([f"{rec['attack']} eps={_fmt(a['eps'], 4)}", _fmt(a["accuracy"], 4), _fmt(a["loss"], 4),
                     _fmt(a.get("accuracy_drop"), 4), _fmt(a.get("loss_increase"), 4)])
    print(_table(rows, ["", "accuracy", "loss", "accuracy drop", "loss increase"]))
    return 0


def cmd_repr(args: argparse.Namespace) -> int:
    from .learn.runs import run_repr

    rec = run_repr(args.checkpoint, args.source, data_options=data_kwargs(args), layer=args.layer,
                   estimator=args.estimator, k=args.k, twonn_discard=args.twonn_discard, split=args.images,
                   n_bootstrap=args.bootstrap,
                   seed=args.seed or 0, batch_size=args.batch_size, device=args.device)
    _write_json(args.json, rec)
    d = rec["d_repr"]
    k = f" k={d['k']}" if d.get("k") else ""
    print(f"d_repr of layer {rec['layer']} ({rec['n_features']} features, {rec['split']} images): "
          f"{_fmt(d['value'])} {_fmt_ci(d.get('ci95'))} ({d['estimator']}{k}, n={d['n_samples']})")
    for w in d.get("warnings", []):
        print(f"warning: {w}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------------------------------
# study / report / plan / demo
def cmd_study_run(args: argparse.Namespace) -> int:
    from .study import run_study

    res = run_study(args.spec, args.out, workers=args.workers, threads=args.threads,
                    retry_failed=args.retry_failed, progress=not args.no_progress,
                    executor=args.executor, address=args.address)
    rec = res.to_dict()
    print(dumps(rec, indent=2))
    if res.total - res.failed > 0:
        from .study.report import compute_fits

        # The same fits as the report's (its default resamples), so the verdicts here are the report's.
        _print_claims(compute_fits(args.out, n_bootstrap=REPORT_BOOTSTRAP)["claims"])
    if res.failed:
        print(f"intrinsics: {res.failed} of {res.total} runs failed; see their errors with 'intrinsics study status "
              f"{args.out}', fix the cause and rerun with --retry-failed", file=sys.stderr)
        return EXIT_RUNS_FAILED
    print(f"next: intrinsics report {args.out}")
    return 0


def cmd_study_init(args: argparse.Namespace) -> int:
    from .study.presets import run_command, write_preset

    path = write_preset(args.preset, args.file, overwrite=args.force)
    print(f"wrote {path} (preset {args.preset}); run it with: {run_command(path)}")
    return 0


def cmd_study_status(args: argparse.Namespace) -> int:
    from .study import study_status

    st = study_status(args.dir)
    if args.json:
        print(dumps(st, indent=2))
        return 0
    keys = [k for k in ("total", "done", "failed", "running", "stale", "pending") if k in st]
    print(_table([[str(st[k]) for k in keys]], keys))
    ex = st.get("executor") or {}
    if ex.get("executor") == "ray":
        print(f"executor: ray at {ex.get('address')} ({ex.get('nodes')} node(s), {ex.get('cpus', 0):g} CPUs, "
              f"{ex.get('gpus', 0):g} GPUs; {ex.get('slots')} runs at once; driver pid {ex.get('driver_pid')})")
    elif ex:
        print(f"executor: local ({ex.get('workers')} worker(s); driver pid {ex.get('driver_pid')})")
    for f in st.get("failures", [])[:10]:
        print(f"failed: {f}", file=sys.stderr)
    return 0


def cmd_study_export(args: argparse.Namespace) -> int:
    from .study import export_study

    for path in export_study(args.dir, args.to):
        print(f"wrote {path}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .study import write_report

    path = write_report(args.dir, n_bootstrap=args.bootstrap, to=args.to)
    fits = json.loads((path.parent / "fits.json").read_text(encoding="utf-8"))
    _print_claims(fits.get("claims", []))
    print(f"report: {path}")
    return 0


def _print_claims(claims: list[dict[str, Any]]) -> None:
    """The verdict summary that ends `study run` and `report`."""
    print("the method's claims on this study (evidence in the report):")
    for c in claims:
        print(f"  {c['verdict']:>26}  {c['claim']}")


def cmd_plan(args: argparse.Namespace) -> int:
    from .study import plan

    options = {k: v for k, v in (("split", args.split), ("labels", args.labels), ("classes", args.classes),
                                 ("limit", args.limit), ("window", args.window)) if v is not None}
    if args.classes is not None:
        options["classes"] = list(args.classes)
    if options and not args.source:
        raise IntrinsicsError("--split/--labels/--classes/--limit/--window describe a --source; give one")
    if args.pilot:
        if args.source or args.d_data is not None or args.kf is not None or args.rank:
            raise IntrinsicsError("--pilot predicts from one dataset's own learning curve; drop "
                                  "--source/--d-data/--kf/--rank, or drop --pilot to use the K_F law")
        from .study.plan import plan_from_pilot

        rec = plan_from_pilot(args.study, args.pilot, N=args.n, target_loss=args.target_loss)
    else:
        rec = plan(args.study, d_data=args.d_data, K_F=args.kf, source=args.source, N=args.n,
                   target_loss=args.target_loss, rank=args.rank, source_options=options)
    _write_json(args.json, rec)
    from .study.plan import format_count
    from .study.plan import format_count_interval as count_ci

    header = ["dataset", "d_data", "K_F", "N", "predicted test loss", "95% interval", "N for target", "95% interval"]

    def rows(preds: list[dict[str, Any]]) -> list[list[str]]:
        return [[str(p.get("dataset", "")), _fmt(p.get("d_data")), _fmt(p.get("K_F")), format_count(p.get("N")),
                 _fmt(p.get("loss")), _fmt_ci(p.get("loss_ci95")), format_count(p.get("N_needed")),
                 count_ci(p.get("N_needed_ci95"))] for p in preds]

    preds, ranking = rec.get("predictions", []), rec.get("ranking", [])
    if preds:
        print(_table(rows(preds), header))
    if ranking:
        print(("\n" if preds else "") + f"ranked by predicted test loss at N = {format_count(ranking[0].get('N'))}, "
              "hardest first:")
        print(_table(rows(ranking), header))
    if rec.get("fit"):
        print(rec["fit"]["summary"])
    advice: dict[tuple[str, str], list[str]] = {}
    for p in preds:
        if p.get("advice"):
            advice.setdefault((str(p.get("dataset")), p["advice"]), []).append(format_count(p.get("N")))
    for (name, text), Ns in advice.items():
        print(f"{name} at N = {', '.join(Ns)}: {text}")
    notes = []
    for p in preds + ranking:
        notes += [f"{p.get('dataset')}: extrapolating, {e}" for e in p.get("extrapolation") or []]
        if p.get("note"):
            notes.append(f"{p.get('dataset')}: {p['note']}")
    for n in dict.fromkeys(notes):
        print(f"note: {n}", file=sys.stderr)
    return 0


def _fmt_ci(ci: Any) -> str:
    return "—" if not ci else f"[{_fmt(ci[0])}, {_fmt(ci[1])}]"


def cmd_demo(args: argparse.Namespace) -> int:
    from .study import run_demo

    run_demo(args.out, quick=args.quick, workers=args.workers)
    return 0


# --------------------------------------------------------------------------------------------------
def _add_checkpoint_command(
    sub: Any,
    name: str,
    help: str,
    func: Callable[[argparse.Namespace], int],
    own_options: Callable[[argparse.ArgumentParser], None],
) -> argparse.ArgumentParser:
    """A subcommand that evaluates a checkpoint: ``CHECKPOINT [SOURCE]``, the data options, the
    command's own options (added by ``own_options``), then ``--batch-size``, ``--device``, ``--json``."""
    p = sub.add_parser(name, help=help)
    p.add_argument("checkpoint", help="a checkpoint written by `intrinsics train` (.pt)")
    p.add_argument("source", nargs="?", help="dataset source (default: the one recorded in the checkpoint)")
    _add_data_options(p, from_checkpoint=True)
    own_options(p)
    p.add_argument("--batch-size", type=int, default=256, help="images per forward pass (default 256)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    p.add_argument("--json", metavar="FILE", help="write the full result as JSON")
    p.set_defaults(func=func)
    return p


class _Parser(argparse.ArgumentParser):
    """argparse with the toolkit's error contract: a usage error is one line naming the problem and
    where the options are listed, exit 2 (argparse's default prints the whole usage block first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"intrinsics: error: {self.prog}: {_one_line(message)} (see '{self.prog} --help')\n")


_ENGINE_DEVICE_HELP = ("where the neighbour search runs: auto (CUDA when a GPU is visible, default), cpu, cuda, "
                       "cuda:1, ...; the values agree to about 1e-13")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="intrinsics",
        description="Measure d_data and K_F of image datasets and predict how networks learn from them.",
    )
    parser.add_argument("--version", action="version", version=f"intrinsics {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error instead of its one-line "
                        "message (also: INTRINSICS_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("measure", help="measure d_data and K_F of a dataset")
    p.add_argument("source", help="builtin:NAME[?size=64&split=test], synthetic:NAME?k=v, a folder, "
                   ".npz, IDX, DICOM, NIfTI or a .json datalist (Decathlon dataset.json)")
    _add_data_options(p)
    p.add_argument("--estimator", default="mle", choices=("mle", "twonn"),
                   help="d_data estimator: mle (Levina-Bickel, MacKay-Ghahramani averaging; default) or twonn")
    p.add_argument("--k", type=int, default=20, help="neighbours for MLE (default 20)")
    p.add_argument("--kf-samples", type=int, default=1000, metavar="M", help="images per K_F draw (default 1000)")
    p.add_argument("--no-exact", action="store_true", help="skip the exact full-dataset K_F")
    p.add_argument("--kf-pairs", choices=("all", "aligned"), default="all",
                   help="pairs compared in each K_F draw: all M(M-1)/2 (default, the paper's definition) or "
                        "aligned (the reference study's published code: ~2M pairs; for parity only)")
    p.add_argument("--k-sweep", action="store_true", help="also report the MLE for k = 5..50")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples for the d_data CI")
    p.add_argument("--device", default="auto", help=_ENGINE_DEVICE_HELP)
    p.add_argument("--json", metavar="FILE", help="write the full result as JSON")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=cmd_measure)

    p = sub.add_parser("audit", help="label conflicts, duplicates and leaks behind K_F, with a gallery",
                       description="From one exact neighbour graph: per-image label suspicion (images.csv), "
                                   "label conflicts, exact and near duplicates and leaks (pairs.csv), a gallery "
                                   "(audit.html), counts (audit.json) and the graph for cleanlab (knn_graph.npz).")
    p.add_argument("source", help="builtin:NAME[?size=64&split=test], synthetic:NAME?k=v, a folder, "
                   ".npz, IDX, DICOM, NIfTI or a .json datalist (Decathlon dataset.json)")
    _add_data_options(p)
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the audit's files")
    p.add_argument("--test", metavar="SOURCE", help="a test set (same data options): its images identical or "
                   "nearly identical to a training image are leaks")
    p.add_argument("--test-split", metavar="NAME", help="the test set is this split of the same source "
                   "(e.g. test for an .npz or Fashion-MNIST)")
    p.add_argument("--test-labels", metavar="CSV", help="the test folder's labels CSV (default: a file of the "
                   "--labels name inside the --test folder, if there is one)")
    p.add_argument("--group-key", metavar="KEY", help="with a test set: list the groups (e.g. PatientID of "
                   "DICOM files) that have images on both sides of the split")
    p.add_argument("--k", type=int, default=10, help="neighbours behind each image's disagreement (default 10)")
    p.add_argument("--near-duplicate", type=float, metavar="D", help="near-duplicate distance in pixel units "
                   "(default: --near-duplicate-factor × the median nearest-neighbour distance)")
    p.add_argument("--near-duplicate-factor", type=float, default=0.1, metavar="F",
                   help="the derived near-duplicate threshold's share of the median nearest-neighbour distance "
                        "(default 0.1)")
    p.add_argument("--conflicts", type=int, default=50, metavar="N",
                   help="closest differently-labelled pairs listed as label conflicts (default 50)")
    p.add_argument("--show", type=int, default=24, metavar="N", help="pictures per section of audit.html (default 24)")
    p.add_argument("--kf-samples", type=int, default=1000, metavar="M", help="images per K_F draw (default 1000)")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples for the d_data CI (default 200)")
    p.add_argument("--device", default="auto", help=_ENGINE_DEVICE_HELP)
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("compare", help="side-by-side table of `measure --json` files")
    p.add_argument("files", nargs="+", metavar="JSON", help="files written by `intrinsics measure --json`")
    p.add_argument("--force", action="store_true", help="show K_F even when preprocessing differs")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("train", help="train a model on N images of a dataset and test it")
    p.add_argument("source", help="dataset source, as for `measure`")
    _add_data_options(p)
    p.add_argument("--model", default=DEFAULT_MODEL, help=model_help())
    p.add_argument("--n-train", type=int, required=True, metavar="N", help="training images (exact, class-balanced)")
    p.add_argument("--n-test", type=int, default=750, metavar="M", help="test images, disjoint (default 750)")
    p.add_argument("--n-val", type=int, default=0, metavar="V",
                   help="validation images, disjoint from both: also report the test loss at the best validation epoch")
    p.add_argument("--epochs", type=int, default=100, help="training epochs (default 100, the reference recipe)")
    p.add_argument("--batch-size", type=int, help="default: the reference recipe's for the model")
    p.add_argument("--lr", type=float, help="default: the reference recipe of the model")
    p.add_argument("--weight-decay", type=float, default=1e-4, help="L2 weight decay (default 1e-4)")
    p.add_argument("--keep", choices=("last", "best"), default="last", help="model kept: last epoch or best test loss")
    p.add_argument("--unbalanced", action="store_true", help="do not balance classes in the split")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    p.add_argument("--parity-head", action="store_true", help="the reference code's 1000-logit head")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the checkpoint and run JSON")
    p.add_argument("--json", metavar="FILE", help="also write the run record to FILE")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=cmd_train)

    def attack_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--attack", choices=("fgsm", "pgd"), default="fgsm", help="fgsm (default) or pgd")
        p.add_argument("--eps", default="0,2/255,8/255", help="L∞ sizes on the [0,1] scale, fractions allowed")
        p.add_argument("--steps", type=int, default=10, help="PGD steps")
        p.add_argument("--step-size", type=_fraction, help="PGD step size, fractions allowed (default 2.5·eps/steps)")
        p.add_argument("--no-random-start", action="store_true", help="PGD without the random start")

    _add_checkpoint_command(sub, "attack", "FGSM/PGD robustness of a checkpoint on its own test set",
                            cmd_attack, attack_options)

    def repr_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--layer", default="penultimate", help="penultimate, layer4, avgpool, features.28, ...")
        p.add_argument("--estimator", choices=("twonn", "mle"), default="twonn",
                       help="twonn (default, as the reference study) or mle")
        p.add_argument("--k", type=int, default=20, help="neighbours for MLE (default 20)")
        p.add_argument("--twonn-discard", type=_twonn_discard, default=0.1, metavar="F",
                       help="share of the largest TwoNN ratios left out: a number in [0, 1) or a name, facco "
                            "(0.1, the default) or reference (0: the reference study's code fits all but the "
                            "last point)")
        p.add_argument("--images", choices=("train", "test"), default="train",
                       help="the checkpoint's training (default) or test images")
        p.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples of the d_repr CI (default 200)")

    _add_checkpoint_command(sub, "repr", "d_repr: intrinsic dimension of a layer's activations", cmd_repr,
                            repr_options)

    p = sub.add_parser("study", help="resumable experiment grids: run, init, status, export")
    ssub = p.add_subparsers(dest="study_command", required=True, metavar="ACTION")
    q = ssub.add_parser("run", help="run (or resume) a study spec")
    q.add_argument("spec", help="study TOML (see `intrinsics study init`)")
    q.add_argument("--out", required=True, metavar="DIR", help="the study folder (study.sqlite, runs, checkpoints)")
    q.add_argument("--workers", type=int, default=1,
                   help="local worker processes (one GPU each, round-robin, where the machine has GPUs)")
    q.add_argument("--threads", type=int, help="torch threads per worker (default: 1 when sharing cores)")
    q.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local processes, or Ray workers on a cluster (pip install 'intrinsics[ray]'); "
                        "[resources] in the spec says what each run needs")
    q.add_argument("--address", metavar="auto|HOST:PORT",
                   help="with --executor ray: the cluster to join (default: a local Ray instance for this study)")
    q.add_argument("--retry-failed", action="store_true", help="run failed runs again")
    q.add_argument("--no-progress", action="store_true", help="no progress bar (logs and CI)")
    q.set_defaults(func=cmd_study_run)
    q = ssub.add_parser("init", help="write a commented study spec from a preset")
    q.add_argument("file", help="the spec file to write")
    q.add_argument("--preset", default="demo-quick", choices=("demo-quick", "demo", "reference"),
                   help="demo-quick (default), demo, or reference (the reference study's grid)")
    q.add_argument("--force", action="store_true", help="overwrite an existing file")
    q.set_defaults(func=cmd_study_init)
    q = ssub.add_parser("status", help="progress of a study folder")
    q.add_argument("dir", help="a study folder")
    q.add_argument("--json", action="store_true", help="print the counts as JSON")
    q.set_defaults(func=cmd_study_status)
    q = ssub.add_parser("export", help="export runs (one wide row per finished run), runs and measurements to CSV and Parquet")
    q.add_argument("dir", help="a study folder")
    q.add_argument("--to", metavar="DEST", help="folder for the CSV and Parquet files (default: DIR/export)")
    q.set_defaults(func=cmd_study_export)

    p = sub.add_parser("report", help="fits, figures and a self-contained HTML report of a study")
    p.add_argument("dir", help="a study folder")
    p.add_argument("--bootstrap", type=int, default=REPORT_BOOTSTRAP,
                   help=f"bootstrap resamples of every fit (default {REPORT_BOOTSTRAP})")
    p.add_argument("--to", metavar="DEST", help="write fits.json, figures/ and report.html here instead of into "
                   "the study folder, which is then only read")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("plan", help="predict test loss at N, or the N for a target loss, from a fitted study")
    p.add_argument("--study", required=True, metavar="DIR", help="a study folder (with fits.json) or fits.json")
    p.add_argument("--d-data", type=float, help="d_data of the dataset to plan for (or give --source)")
    p.add_argument("--kf", type=float, help="K_F, under the study's preprocessing")
    p.add_argument("--source", help="measure this dataset under the study's preprocessing instead")
    p.add_argument("--pilot", metavar="DATASET[/MODEL]",
                   help="predict from this study dataset's own learning curve (a pilot study at small N)")
    p.add_argument("--split", help="the --source's split (npz/MedMNIST)")
    p.add_argument("--labels", metavar="CSV", help="labels of a --source folder")
    p.add_argument("--classes", type=_classes, metavar="A,B", help="the --source's task, e.g. 3,5")
    p.add_argument("--limit", type=int, help="measure at most this many images of the --source")
    p.add_argument("--window", help="DICOM window of the --source (center,width or a preset)")
    p.add_argument("--n", type=float, nargs="+", metavar="N",
                   help="training sizes to predict at, in whole images (1000 or 1e3)")
    p.add_argument("--target-loss", type=float, help="the N that reaches this test loss, instead of the loss at --n")
    p.add_argument("--rank", action="store_true", help="rank the study's datasets (and this one) by difficulty")
    p.add_argument("--json", metavar="FILE", help="write the full result as JSON")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("demo", help="the embedded default study end to end: data, training, fits, report")
    p.add_argument("--quick", action="store_true", help="the sub-2-minute version")
    p.add_argument("--out", default="demo-out", metavar="DIR", help="the demo's study folder (default demo-out)")
    p.add_argument("--workers", type=int, help="worker processes (default: 1 with --quick, else one per core, at most 4)")
    p.set_defaults(func=cmd_demo)
    return parser


def _debug(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "debug", False)) or os.environ.get("INTRINSICS_DEBUG", "") not in ("", "0")


def _one_line(message: str) -> str:
    """A message as one printable line: control characters (a newline in a file name) escaped."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in message)


def _encodable_output() -> None:
    """Whatever the terminal's encoding (ASCII, Latin-1), ``×`` and ``—`` cannot end the program:
    characters the stream cannot encode are written as escapes."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure") and (getattr(stream, "encoding", "") or "").lower().replace("-", "") != "utf8":
            try:
                stream.reconfigure(errors="backslashreplace")
            except (ValueError, OSError):  # a detached or closed stream: leave it be
                pass


def main(argv: Sequence[str] | None = None) -> int:
    _encodable_output()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with use_spelling(flag_spelling):
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("intrinsics: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    except Exception as e:  # noqa: BLE001 - the one error boundary: expected failures get one line
        with use_spelling(flag_spelling):
            message = describe_failure(e)
        if message is None or _debug(args):
            raise  # a bug (or --debug): the traceback is what helps
        print(f"intrinsics: error: {_one_line(message)}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
