"""The README's demo figures, written by a script from a real demo run (never typed by hand).

    python scripts/readme_figures.py                  # run the full demo in a fresh folder, then write
    python scripts/readme_figures.py --demo-dir DIR   # use a finished demo folder (runs it there if not)
    python scripts/readme_figures.py --check          # exit 1 if README's blocks are not what the records give
    python scripts/readme_figures.py --speed          # rewrite only the speed blocks, from docs/speed/*.json

It keeps the record in ``docs/demo_figures.json`` (the verdicts with their numbers, the learning-curve
checks, the K_F levels, both plan backtests, the time, the run counts, the machine and the commit) and
rewrites the block of README.md between the two ``demo-figures`` markers from that record alone, so the
test suite can check that the README says exactly what the record holds.

The speed tables come the same way from the benchmarks' own records (``docs/speed/*.json``, written by
``benchmarks/bench_neighbors.py --record`` and ``benchmarks/bench_measure.py --record NAME``), with the
targets of the neighbour engine's issue beside what was measured, and the out-of-core figures from
``benchmarks/bench_out_of_core.py --record``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from intrinsics._machine import checkout_commit, machine_line

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RECORD = ROOT / "docs" / "demo_figures.json"
BEGIN = "<!-- demo-figures: begin (written by scripts/readme_figures.py from docs/demo_figures.json; do not edit) -->"
END = "<!-- demo-figures: end -->"
SPEED_DIR = ROOT / "docs" / "speed"
SPEED_BEGIN = ("<!-- speed-figures: begin (written by scripts/readme_figures.py from docs/speed/*.json; "
               "do not edit) -->")
SPEED_END = "<!-- speed-figures: end -->"
# The benchmarks the speed block shows: the README's record names, in column order.
SPEED_MEASURE = ("measure-fashion-mnist", "measure-lesion")
SPEED_NEIGHBORS = "neighbors"
OOC = "out-of-core"
OOC_BEGIN = ("<!-- out-of-core-figures: begin (written by scripts/readme_figures.py from docs/speed/out-of-core.json; "
             "do not edit) -->")
OOC_END = "<!-- out-of-core-figures: end -->"


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
        "commit": checkout_commit(ROOT),
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


def _s(v: float) -> str:
    return f"{v:.2f} s"


def _pruning(search: dict[str, Any]) -> str:
    """How a search was pruned, in words, from its provenance."""
    declined = search.get("bound_declined")
    if search.get("bound") == "pairs":
        return f"pair by pair: {search['candidates_per_row']:,} candidates per row (m = {search['m']})"
    if search.get("pruned"):
        why = f" (the pair bound declined: {declined['candidates_per_row']:,} candidates per row)" if declined else ""
        return f"block by block: {100 * search['share_of_products']:.1f}% of the products{why}"
    return "not pruned" + (f" (the pair bound declined: {declined['candidates_per_row']:,} candidates per row)"
                           if declined else "")


def _floors(floors: dict[str, float], fastest: str) -> str:
    """Every backend's X·Xᵀ seconds, the fastest (the floor F) in bold."""
    return " / ".join(f"**{floors[n]:.2f}**" if n == fastest else f"{floors[n]:.2f}" for n in sorted(floors)) + " s"


def _title(r: dict[str, Any]) -> str:
    name = r["source"].split(":", 1)[-1].split("?", 1)[0]
    return f"{name} {r['N']:,} × {r['D']:,}"


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def render_speed(recs: dict[str, dict[str, Any]]) -> str:
    """The README's speed block (markers included) from the benchmark records alone."""
    meas = [recs[n] for n in SPEED_MEASURE]
    nb = recs[SPEED_NEIGHBORS]
    machines = {(machine_line(r["machine"]), r["commit"]) for r in (*meas, nb)}
    out = [SPEED_BEGIN, ""]
    out.append("Measured on " + "; ".join(f"{m} (commit `{c}`)" for m, c in sorted(machines, key=str))
               + ", one run each unless said; every row of a table from the same run. F is the machine's "
               "matrix-multiply floor: one float32 X·Xᵀ (its symmetric half, by blocks) on the *fastest* "
               "backend installed, each backend timed (`benchmarks/_floor.py`).")
    out += ["", "`python benchmarks/bench_measure.py --cli` (the `measure` pipeline: MLE k = 20 with its bootstrap "
            "interval, sampled K_F with M = 1,000 and 20 draws, exact K_F; the second column with "
            f"`--source '{meas[1]['result']['source']}'`):", ""]
    res = [r["result"] for r in meas]
    out.append("| | " + " | ".join(_title(r) for r in res) + " |")
    out.append("|---|" + "---|" * len(res))

    def row(label: str, cells: list[str]) -> None:
        out.append(f"| {label} | " + " | ".join(cells) + " |")

    def F(r: dict[str, Any]) -> float:
        return r["floors_s"][r["floor_backend"]]

    row("F: " + " / ".join(sorted(res[0]["floors_s"])) + " X·Xᵀ",
        [_floors(r["floors_s"], r["floor_backend"]) for r in res])
    row("`measure` (graph and nearest other label in one pass, pruned)",
        [f"{_s(r['measure_s'])} = {r['measure_s'] / F(r):.2f} F" for r in res])
    row("the same by two passes (graph, then K_F's own search)",
        [f"{_s(r['two_passes_s'])} = {r['two_passes_s'] / F(r):.2f} F" for r in res])
    row("the one-pass search without / with pruning",
        [f"{r['search_brute_s']:.2f} / {_s(r['search_pruned_s'])} ({r['search_pruned_s'] / r['search_brute_s']:.2f}×, "
         f"{r['search_pruned_s'] / F(r):.2f} F)" for r in res])
    row("how it was pruned", [_pruning(r["search"]) for r in res])
    row("sampled K_F alone (20 draws), full products / bound",
        [f"{r['kf_sampled_full_s']:.2f} / {_s(r['kf_sampled_bound_s'])}" for r in res])
    row("`intrinsics measure SOURCE --json ...` end to end (files read), peak resident memory",
        [f"{_s(r['cli_s'])}, {r['cli_peak_rss_mb'] / 1024:.2f} GB" if "cli_s" in r else "not run" for r in res])
    n = nb["result"]
    Fn = n["gram_floor_s"]
    out += ["", f"`python benchmarks/bench_neighbors.py` (N = {nb['args']['n']:,} points in D = {nb['args']['d']:,}, "
            f"a 20-dimensional Gaussian subspace plus noise; medians of {nb['args']['repeats']}):", "",
            "| | time | ratio |", "|---|---|---|"]
    names = sorted(n["gram_by_backend_s"])
    out.append("| F: " + " / ".join(names) + " X·Xᵀ | " + _floors(n["gram_by_backend_s"], n["gram_floor_backend"])
               + f" | 1 ({n['gram_floor_backend']}) |")
    out.append(f"| k = 20 graph, engine without pruning | {_s(n['brute_force_graph_s'])} | {n['brute_force_graph_s'] / Fn:.2f} F |")
    out.append(f"| ours, MLE k = 20 ({_pruning(n['search'])}) | {_s(n['ours_mle_s'])} | {n['ours_mle_s'] / Fn:.2f} F |")
    if "peer_mle_s" in n:
        out.append(f"| scikit-dimension `MLE(unbiased=True)` | {_s(n['peer_mle_s'])} | ours {n['speedup_vs_peer']:.1f}× "
                   f"faster, \|Δ\| = {n['value_difference']:.1e} |")
    out.append(f"| ours, MLE + TwoNN + k-sweep 5..50 from one graph (k = 50) | {_s(n['all_three_s'])} | "
               f"{n['ratio_all_three_vs_mle']:.2f}× MLE alone |")
    out.append(f"| iid Gaussian noise, engine without pruning / ours | {n['noise_brute_s']:.2f} / {_s(n['noise_ours_s'])} | "
               f"{n['noise_ours_s'] / n['noise_brute_s']:.2f}× |")
    out.append(f"| peak memory of a process fitting the MLE | {n['peak_rss_mb']:.0f} MB | the fit itself adds "
               f"{n['fit_extra_mb']:.0f} MB |")
    fash, les = res
    out += ["", "Against the neighbour engine's targets:", "", "| target | measured | met |", "|---|---|---|"]
    targets = [
        (f"{_title(fash)}: `measure` ≤ 0.35 F", f"{fash['measure_s'] / F(fash):.2f} F", fash["measure_s"] <= 0.35 * F(fash)),
        (f"{_title(les)}: `measure` ≤ 0.15 F", f"{les['measure_s'] / F(les):.2f} F", les["measure_s"] <= 0.15 * F(les)),
        ("10,000 × 3,072: MLE ≤ 0.1 F", f"{n['ours_mle_s'] / Fn:.2f} F", n["ours_mle_s"] <= 0.1 * Fn),
        ("10,000 × 3,072 noise: ≤ 1.1× the engine without pruning", f"{n['noise_ours_s'] / n['noise_brute_s']:.2f}×",
         n["noise_ours_s"] <= 1.1 * n["noise_brute_s"]),
    ]
    if "peer_mle_s" in n:
        targets.append(("≥ 5× scikit-dimension's MLE, the same value (±1e-6)",
                        f"{n['speedup_vs_peer']:.1f}×, \|Δ\| = {n['value_difference']:.1e}",
                        n["speedup_vs_peer"] >= 5 and n["value_difference"] <= 1e-6))
    if "cli_peak_rss_mb" in fash:
        targets.append((f"{_title(fash)}: peak memory < 1.5 GB", f"{fash['cli_peak_rss_mb'] / 1024:.2f} GB",
                        fash["cli_peak_rss_mb"] < 1.5 * 1024))
    out += [f"| {t} | {m} | {_met(ok)} |" for t, m, ok in targets]
    out += ["", SPEED_END]
    return "\n".join(out)


def render_out_of_core(rec: dict[str, Any]) -> str:
    """The README's out-of-core figures (markers included) from bench_out_of_core.py's record alone."""
    r = rec["result"]
    mem, mm = r["runs"]["memory"], r["runs"]["mmap"]
    grown, mib = r["peak_growth_mib"], r["file_bytes"] / 2**20
    search = mem["engine"].get("search", {})
    how = f"; pruned {_pruning(search)}" if search else ""
    return "\n".join([
        OOC_BEGIN, "",
        f"On {machine_line(rec['machine'])} (commit `{rec['commit']}`), `python benchmarks/bench_out_of_core.py "
        f"--record` on {r['dataset']}, float32 (a {mib:,.0f} MiB file), k = 20 and the nearest other label:",
        f"- in memory: {_s(mem['seconds'])}, peak memory +{grown['memory']:,.0f} MiB above the process "
        f"before the call{how};",
        f"- memory-mapped: {_s(mm['seconds'])} ({mm['seconds'] / mem['seconds']:.2f}× in memory), peak memory "
        f"+{grown['mmap']:,.0f} MiB ({grown['mmap'] / mib:.2f}× the file);",
        "- identical results (the same neighbour indices and distances, bit for bit): "
        + ("yes." if r["identical"] else "**no**."),
        "", OOC_END])


def speed_records() -> dict[str, dict[str, Any]]:
    missing = [n for n in (*SPEED_MEASURE, SPEED_NEIGHBORS, OOC) if not (SPEED_DIR / f"{n}.json").exists()]
    if missing:
        raise SystemExit(f"no benchmark record {', '.join(missing)} in {SPEED_DIR}; run benchmarks/bench_neighbors.py "
                         "--record, benchmarks/bench_measure.py --cli --record NAME and "
                         "benchmarks/bench_out_of_core.py --record")
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(SPEED_DIR.glob("*.json"))}


def replace_block(text: str, block: str, begin: str = BEGIN, end: str = END) -> str:
    """``text`` with the part between the markers (inclusive) replaced by ``block``."""
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise SystemExit(f"README.md must hold the markers once each, in order:\n{begin}\n{end}")
    a, b = text.index(begin), text.index(end) + len(end)
    return text[:a] + block + text[b:]


def _with_speed(text: str) -> str:
    """``text`` with its speed block and its out-of-core figures rendered from docs/speed/*.json."""
    recs = speed_records()
    text = replace_block(text, render_speed(recs), SPEED_BEGIN, SPEED_END)
    return replace_block(text, render_out_of_core(recs[OOC]), OOC_BEGIN, OOC_END)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo-dir", type=Path, help="a demo folder (run there when it holds no finished demo)")
    ap.add_argument("--check", action="store_true", help="only check that README.md matches the records")
    ap.add_argument("--speed", action="store_true", help="only rewrite the speed block from docs/speed/*.json")
    args = ap.parse_args(argv)
    text = README.read_text(encoding="utf-8")
    if args.check:
        rec = json.loads(RECORD.read_text(encoding="utf-8"))
        if replace_block(text, render(rec)) != text:
            print("README.md's demo figures differ from docs/demo_figures.json; run scripts/readme_figures.py",
                  file=sys.stderr)
            return 1
        if _with_speed(text) != text:
            print("README.md's speed figures differ from docs/speed/*.json; run scripts/readme_figures.py --speed",
                  file=sys.stderr)
            return 1
        print("README.md's demo and speed figures match docs/demo_figures.json and docs/speed/*.json")
        return 0
    if args.speed:
        README.write_text(_with_speed(text), encoding="utf-8")
        print("wrote the speed figures in README.md (from docs/speed/*.json)")
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
