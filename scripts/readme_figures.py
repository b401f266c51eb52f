"""The README's demo figures, written by a script from a real demo run (never typed by hand).

    python scripts/readme_figures.py                  # run the full demo in a fresh folder, then write
    python scripts/readme_figures.py --demo-dir DIR   # use a finished demo folder (runs it there if not)
    python scripts/readme_figures.py --check          # exit 1 if README's block is not what the record gives

It keeps the record in ``docs/demo_figures.json`` (the verdicts with their numbers, the learning-curve
checks, the K_F levels, both plan backtests, the time, the run counts, the machine and the commit) and
rewrites the block of README.md between the two ``demo-figures`` markers from that record alone, so the
test suite can check that the README says exactly what the record holds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from intrinsics._machine import machine_line

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RECORD = ROOT / "docs" / "demo_figures.json"
BEGIN = "<!-- demo-figures: begin (written by scripts/readme_figures.py from docs/demo_figures.json; do not edit) -->"
END = "<!-- demo-figures: end -->"


def _commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=10", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return out + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def record_from_demo(demo_dir: Path) -> dict[str, Any]:
    """The record of a finished demo folder: its ``fits.json`` and ``demo_run.json``, reduced to what the
    README states."""
    fits = json.loads((demo_dir / "fits.json").read_text(encoding="utf-8"))
    run = json.loads((demo_dir / "demo_run.json").read_text(encoding="utf-8"))
    curves = fits.get("learning_curves") or {}
    with_ci = [k for k, c in curves.items() if c.get("b_at_bound") is not None]
    levels = []
    for domain, block in sorted((fits.get("kf_levels") or {}).get("by_domain", {}).items()):
        for lvl in block.get("levels") or []:
            levels.append({"domain": domain, "name": lvl["name"], "datasets": lvl["datasets"],
                           "K_F_range": lvl["K_F_range"], "d_data_spread": lvl["d_data_spread"]})

    def backtest(key: str) -> dict[str, Any]:
        bt = fits.get(key) or {}
        return {k: bt.get(k) for k in ("median_abs_log_error", "coverage", "run_coverage", "n_predicted",
                                       "n_datasets", "meets_targets", "targets", "note")}

    return {
        "machine": run["machine"],
        "commit": _commit(),
        "elapsed_s": run["elapsed_s"],
        "workers": run["workers"],
        "runs": {k: run["runs"][k] for k in ("total", "done", "failed", "new_runs", "resumed_runs")},
        "fashion_mnist": run["fashion_mnist"],
        "loss_metric": fits.get("loss_metric"),
        "n_bootstrap": (fits.get("meta") or {}).get("n_bootstrap"),
        "claims": [{"claim": c["claim"], "verdict": c["verdict"], "evidence": c["evidence"]}
                   for c in fits.get("claims", [])],
        "curves_rising": sorted(k for k, v in (fits.get("curve_checks") or {}).items() if v.get("rises_with_N")),
        "curves_b_off_bound": sum(1 for k in with_ci if not curves[k]["b_at_bound"]),
        "curves_b_with_interval": len(with_ci),
        "curves_b_at_bound": sorted(k for k in with_ci if curves[k]["b_at_bound"]),
        "kf_levels": levels,
        "plan_backtest": backtest("plan_backtest"),
        "plan_backtest_pilot": backtest("plan_backtest_pilot"),
    }


def check_fresh(rec: dict[str, Any]) -> None:
    """Refuse a record of a resumed demo: its time would be the resumption's, not the demo's."""
    runs = rec["runs"]
    if runs["new_runs"] != runs["done"]:
        raise SystemExit(f"{runs['done'] - runs['new_runs']} of the demo's {runs['done']} runs were done before this "
                         "run of it, so its time is not the demo's; run the script with a fresh folder (or without "
                         "--demo-dir)")


def _num(v: Any) -> str:
    return "n/a" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v)


def _pct(v: Any) -> str:
    return "n/a" if v is None else f"{100 * v:.0f}%"


def _reason(note: str) -> str:
    """A backtest's note without its first clause when that clause only repeats the figures."""
    return note.split("; ", 1)[-1] if note.startswith("targets missed:") else note


def render(rec: dict[str, Any]) -> str:
    """The README block (markers included) from a record: nothing in it comes from anywhere else."""
    m = rec["machine"]
    runs = rec["runs"]
    out = [BEGIN, "",
           f"Measured by `make demo` ({'with' if rec['fashion_mnist'] else 'without'} Fashion-MNIST) on "
           f"{machine_line(m)}, torch {m['torch']}, commit "
           f"`{rec['commit']}`: {runs['done']}/{runs['total']} runs done ({runs['failed']} failed) in "
           f"{rec['elapsed_s']:.0f} s with {rec['workers']} workers; test loss `{rec['loss_metric']}`, "
           f"{rec['n_bootstrap']} bootstrap resamples.", "",
           "| claim | verdict | evidence |", "|---|---|---|"]
    for c in rec["claims"]:
        ev = "<br>".join(e.replace("|", "\\|") for e in c["evidence"])
        out.append(f"| {c['claim']} | **{c['verdict']}** | {ev} |")
    out.append("")
    rising = ", ".join(rec["curves_rising"]) or "none"
    at_bound = ", ".join(rec["curves_b_at_bound"]) or "none"
    out.append(f"- Learning curves rising with N beyond their seed spread and epoch swing: {rising}.")
    out.append(f"- Fitted exponents b whose interval stays clear of the search bound: "
               f"{rec['curves_b_off_bound']} of {rec['curves_b_with_interval']} (at the bound: {at_bound}).")
    for lvl in rec["kf_levels"]:
        lo, hi = lvl["K_F_range"]
        out.append(f"- K_F level {lvl['name']} ({', '.join(lvl['datasets'])}): K_F {lo:.3g}–{hi:.3g}, "
                   f"d_data spread {lvl['d_data_spread']:.2f}.")
    for key, what in (("plan_backtest", "from the K_F law across datasets (`plan`)"),
                      ("plan_backtest_pilot", "from each dataset's own learning curve at its smaller N "
                                              "(`plan --pilot`)")):
        bt = rec[key]
        t = bt.get("targets") or {}
        out.append(f"- Plan backtest {what}: median \\|log error\\| {_num(bt['median_abs_log_error'])} "
                   f"(target ≤ {_num(t.get('median_abs_log_error'))}), coverage {_pct(bt['coverage'])} "
                   f"(target ≥ {_pct(t.get('coverage'))}) over {bt['n_predicted']} of {bt['n_datasets']} predicted"
                   + (f"; {_reason(bt['note'])}" if bt.get("note") else "") + ".")
    out += ["", END]
    return "\n".join(out)


def replace_block(text: str, block: str) -> str:
    """``text`` with the part between the markers (inclusive) replaced by ``block``."""
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise SystemExit(f"README.md must hold the markers once each, in order:\n{BEGIN}\n{END}")
    a, b = text.index(BEGIN), text.index(END) + len(END)
    return text[:a] + block + text[b:]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo-dir", type=Path, help="a demo folder (run there when it holds no finished demo)")
    ap.add_argument("--check", action="store_true", help="only check that README.md matches the record")
    args = ap.parse_args(argv)
    text = README.read_text(encoding="utf-8")
    if args.check:
        rec = json.loads(RECORD.read_text(encoding="utf-8"))
        if replace_block(text, render(rec)) != text:
            print("README.md's demo figures differ from docs/demo_figures.json; run scripts/readme_figures.py",
                  file=sys.stderr)
            return 1
        print("README.md's demo figures match docs/demo_figures.json")
        return 0
    demo_dir = args.demo_dir or Path(tempfile.mkdtemp(prefix="intrinsics-demo-"))
    if not ((demo_dir / "fits.json").exists() and (demo_dir / "demo_run.json").exists()):
        from intrinsics.study.demo import run_demo

        run_demo(demo_dir)
    rec = record_from_demo(demo_dir)
    check_fresh(rec)
    RECORD.parent.mkdir(parents=True, exist_ok=True)
    RECORD.write_text(json.dumps(rec, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    README.write_text(replace_block(text, render(rec)), encoding="utf-8")
    print(f"wrote {RECORD.relative_to(ROOT)} and the demo figures in README.md (from {demo_dir})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
