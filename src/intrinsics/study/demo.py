"""The demo: a small study end to end on this machine (``intrinsics demo`` / ``make demo``).

Real natural images (MNIST and sklearn digit pairs, Fashion-MNIST pairs when Debian's package is
installed) and synthetic medical-like lesion sets at several sharpness levels; the small CNN at a few N
and seeds; FGSM; d_repr; every fit; the report. ``quick=True`` is a sub-2-minute version for tests.
Both leave ``DIR/report.html``, ``DIR/study.sqlite``, ``DIR/fits.json`` and ``DIR/demo_run.json`` (time,
run counts and the machine); running again on the same folder resumes instead of starting over.
"""

from __future__ import annotations

import json
import os
import sys
import time
import tomllib
from pathlib import Path
from typing import Any, TextIO

from .._version import __version__
from .._machine import describe_machine
from ..data.builtin import FASHION_MNIST_DIR
from .report import write_report
from .runner import run_study
from .presets import dataset_block, preset_text
from .spec import parse_spec

__all__ = ["run_demo", "demo_spec_text", "headline"]


def _fashion_available() -> bool:
    return Path(FASHION_MNIST_DIR).is_dir() and any(Path(FASHION_MNIST_DIR).rglob("*idx3-ubyte*"))


def demo_spec_text(quick: bool = False) -> str:
    """The demo's spec: the ``demo``/``demo-quick`` preset, plus Fashion-MNIST pairs when installed."""
    text = preset_text("demo-quick" if quick else "demo")
    if not quick and _fashion_available():
        text += "\n# --- Fashion-MNIST (Debian's dataset-fashion-mnist is installed) ---"
        for name, pair in (("fashion-tshirt-v-shirt", ("T-shirt/top", "Shirt")),
                           ("fashion-sneaker-v-boot", ("Sneaker", "Ankle boot"))):
            text += dataset_block(name, "builtin:fashion-mnist", "natural", pair, limit=2000)
    return text


def headline(fits: dict[str, Any]) -> list[str]:
    """The few lines the demo prints: each claim's verdict and its first piece of evidence."""
    lines = []
    for c in fits.get("claims", []):
        lines.append(f"[{c['verdict']}] {c['claim']}")
        for e in c["evidence"][:2]:
            lines.append(f"    {e}")
    rising = sorted(k for k, v in (fits.get("curve_checks") or {}).items() if v.get("rises_with_N"))
    lines.append(f"test loss: {fits.get('loss_metric', 'last')}; learning curves rising with N beyond their "
                 f"spread: {', '.join(rising) if rising else 'none'}")
    for key, what in (("plan_backtest", "from the K_F law"), ("plan_backtest_pilot", "from each curve's smaller N")):
        bt = fits.get(key) or {}
        if bt.get("median_abs_log_error") is not None:
            lines.append(f"plan backtest {what}: median |log error| {bt['median_abs_log_error']:.3g}, interval "
                         f"coverage {100 * (bt.get('coverage') or 0):.0f}% over {bt.get('n_predicted')} predicted")
    return lines


def run_demo(
    out_dir: str | os.PathLike[str] = "demo-out",
    quick: bool = False,
    *,
    workers: int | None = None,
    n_bootstrap: int | None = None,
    progress: bool = True,
    stream: TextIO | None = None,
) -> dict[str, Any]:
    """Run the demo study, fit it, write the report, print where it is and the headline numbers.

    Parameters
    ----------
    out_dir : path
        Output folder (resumed if it already holds this demo).
    quick : bool
        The sub-2-minute version (fewer datasets, N, seeds and epochs).
    workers : int, optional
        Worker processes; default 1 for ``quick``, else the number of CPU cores (at most 4), one
        torch thread each.
    n_bootstrap : int, optional
        Resamples for the fits' intervals (default 300 quick, 1000 full).
    progress : bool
        Show progress bars.
    stream : text stream, optional
        Where to print (default stdout).

    Returns
    -------
    dict
        ``report``, ``fits``, ``store`` (paths), ``runs`` (counts), ``elapsed_s``, ``headline`` (lines),
        ``claims``.
    """
    t0 = time.time()
    stream = stream or sys.stdout
    out = Path(out_dir)
    text = demo_spec_text(quick)
    spec = parse_spec(tomllib.loads(text), source_text=text, where="demo-quick" if quick else "demo")
    if workers is None:
        workers = 1 if quick else max(1, min(4, os.cpu_count() or 1))
    result = run_study(spec, out, workers=workers, threads=1, progress=progress)
    if progress:  # fitting with its bootstrap takes tens of seconds; say so rather than sit silent
        print(f"fitting the laws ({n_bootstrap or (300 if quick else 1000)} bootstrap resamples) and writing "
              "the report ...", file=sys.stderr, flush=True)
    report = write_report(out, n_bootstrap=n_bootstrap or (300 if quick else 1000))

    fits = json.loads((out / "fits.json").read_text(encoding="utf-8"))
    lines = headline(fits)
    elapsed = round(time.time() - t0, 1)
    # Where and how long, for the README's figures (scripts/readme_figures.py reads this, never a typed number).
    record = {"quick": quick, "elapsed_s": elapsed, "workers": workers, "runs": result.to_dict(),
              "fashion_mnist": (not quick) and _fashion_available(), "machine": describe_machine(),
              "intrinsics_version": __version__}
    (out / "demo_run.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"intrinsics demo{' (quick)' if quick else ''}: {result.done}/{result.total} runs done "
          f"({result.failed} failed) in {elapsed} s", file=stream)
    print(f"report: {report.resolve()}", file=stream)
    print(f"fits:   {(out / 'fits.json').resolve()}", file=stream)
    print(f"store:  {(out / 'study.sqlite').resolve()}", file=stream)
    print("", file=stream)
    for line in lines:
        print(line, file=stream)
    return {
        "report": str(report),
        "fits": str(out / "fits.json"),
        "store": str(out / "study.sqlite"),
        "runs": result.to_dict(),
        "elapsed_s": elapsed,
        "headline": lines,
        "claims": fits.get("claims", []),
    }
