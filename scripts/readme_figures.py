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
targets of the neighbour engine's issue beside what was measured; so do the out-of-core figures
(``benchmarks/bench_out_of_core.py --record``), the executors' table (``benchmarks/bench_executors.py
--record``), the training throughput (``benchmarks/bench_training.py --record``) and the grid's cost
(``benchmarks/grid_cost.py --record``), each between its own pair of markers.
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
EXEC = "executors"
EXEC_BEGIN = ("<!-- executors-figures: begin (written by scripts/readme_figures.py from docs/speed/executors.json; "
              "do not edit) -->")
EXEC_END = "<!-- executors-figures: end -->"
TRAIN = "training"
TRAIN_BEGIN = ("<!-- training-figures: begin (written by scripts/readme_figures.py from docs/speed/training.json; "
               "do not edit) -->")
TRAIN_END = "<!-- training-figures: end -->"
GRID = "grid-cost"
GRID_BEGIN = ("<!-- grid-cost-figures: begin (written by scripts/readme_figures.py from docs/speed/grid-cost.json; "
              "do not edit) -->")
GRID_END = "<!-- grid-cost-figures: end -->"
# Every record the README's speed figures are rendered from, with the command that writes it.
SPEED_COMMANDS = {
    "measure-fashion-mnist": "benchmarks/bench_measure.py --cli --record measure-fashion-mnist",
    "measure-lesion": "benchmarks/bench_measure.py --cli --record measure-lesion "
                      "--source 'synthetic:lesion?n=20000&size=64'",
    SPEED_NEIGHBORS: "benchmarks/bench_neighbors.py --record",
    OOC: "benchmarks/bench_out_of_core.py --record",
    EXEC: "benchmarks/bench_executors.py --record",
    TRAIN: "benchmarks/bench_training.py --record",
    GRID: "benchmarks/grid_cost.py --record",
}


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
    machines: dict[str, list[str]] = {}
    for r in (*meas, nb):
        commits = machines.setdefault(machine_line(r["machine"]), [])
        if r["commit"] not in commits:
            commits.append(r["commit"])
    out = [SPEED_BEGIN, ""]
    out.append("Measured on " + "; ".join(f"{m} (commit{'s' if len(c) > 1 else ''} " + ", ".join(f"`{x}`" for x in c)
                                          + ")" for m, c in sorted(machines.items()))
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
    row("how it was pruned (every row's nearest other label)", [_pruning(r["search"]) for r in res])
    row("how `measure` pruned it (only the 20 rows closest to another label to the end)",
        [_pruning(r["measure_search"]) if r.get("measure_search") else "not recorded" for r in res])
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
                   f"faster, \\|Δ\\| = {n['value_difference']:.1e} |")
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
                        f"{n['speedup_vs_peer']:.1f}×, \\|Δ\\| = {n['value_difference']:.1e}",
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


def _and(parts: list[str]) -> str:
    return ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else "".join(parts)


def render_executors(rec: dict[str, Any]) -> str:
    """The README's table of what Ray costs (markers included) from bench_executors.py's record alone."""
    r = rec["result"]
    cores = r["cores"]
    runs = [t for e in r["executors"] for rep in e["run_s"] for t in rep]
    each = "one run of the grid per executor" if r["repeats"] == 1 else f"medians of {r['repeats']} runs of the grid"

    def label(e: dict[str, Any]) -> str:
        if e["executor"] == "ray":
            return f"Ray, a local instance with {cores} CPUs (`cpus_per_run = {r['cpus_per_run']}`)"
        return f"local, {e['workers']} worker{'s' if e['workers'] != 1 else ''}"

    out = [EXEC_BEGIN, "",
           f"On {machine_line(rec['machine'])} (commit `{rec['commit']}`), `python benchmarks/bench_executors.py "
           f"--record` (`--epochs {r['epochs']}`) ran the {r['grid']} grid: {r['runs']} runs of "
           f"{_and([f'`{m}`' for m in r['models']])}, {min(runs):.1f} to {max(runs):.1f} s each, "
           f"{'one' if r['threads_per_run'] == 1 else r['threads_per_run']} torch thread per run, {each}:", "",
           f"| executor | wall | median run | vs local, {cores} workers |", "|---|---|---|---|"]
    out += [f"| {label(e)} | {e['median_wall_s']:.1f} s | {_s(e['median_run_s'])} | {e['vs_local_all_cores']:.2f}× |"
            for e in r["executors"]]
    return "\n".join([*out, "", EXEC_END])


def _throughput(rows: list[dict[str, Any]]) -> str:
    """``smallcnn 2,052 images/s at 28×28 and 565 at 64×64; resnet18 ...``: each model's rows in order."""
    models: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        models.setdefault(row["model"], []).append(row)
    return "; ".join(f"{m} " + " and ".join(f"{row['images_per_s']:,.0f}{' images/s' if i == 0 else ''} at "
                                            f"{row['size']}×{row['size']}" for i, row in enumerate(rs))
                     for m, rs in models.items())


def render_training(rec: dict[str, Any]) -> str:
    """The README's training throughput (markers included) from bench_training.py's record alone."""
    r = rec["result"]
    by_device: dict[str, list[dict[str, Any]]] = {}
    for row in r["rows"]:
        by_device.setdefault(row["device"], []).append(row)
    parts = []
    for device, rows in by_device.items():
        where = f"on the CPU ({r['threads']} threads)" if device == "cpu" else f"on {device}"
        parts.append(f"{where}, {rows[0]['images']:,} random images a run: {_throughput(rows)}")
    gpu = "" if r["gpu"] == "measured" else f" {r['gpu']}."
    return "\n".join([
        TRAIN_BEGIN, "",
        f"On {machine_line(rec['machine'])} (commit `{rec['commit']}`), torch {r['torch']}, "
        f"`python benchmarks/bench_training.py --record` (the fastest of {rec['args']['repeats']} runs of "
        f"{rec['args']['epochs']} epoch{'s' if rec['args']['epochs'] != 1 else ''} per case) measured "
        + "; ".join(parts) + f". Data handling took at most {100 * r['largest_data_fraction']:.2f}% of step time "
        f"(target: under 5%).{gpu}",
        "", TRAIN_END])


def _days(walls: dict[str, float], unit: str, what: str) -> str:
    """``255 days on 1 such machine, 64 on 4 and 33 on 8``: the predicted wall time by device count."""
    fmt = "{:,.0f}" if unit == "days" else "{:,.1f}"
    parts = [fmt.format(v) + (f" {unit} on {d} {what}{'s' if int(d) != 1 else ''}" if i == 0 else f" on {d}")
             for i, (d, v) in enumerate(walls.items())]
    return _and(parts)


def render_grid_cost(rec: dict[str, Any]) -> str:
    """The README's cost of the reference grid (markers included) from grid_cost.py's record alone."""
    r, a = rec["result"], rec["args"]
    sizes = [int(n) for n in a["sizes"].split(",")]
    big = max(r["models"], key=lambda m: m["grid_pflop"])
    timed = r["models"][0]["model"]
    walls = r["wall_by_devices"]
    out = [f"On {machine_line(rec['machine'])} (commit `{rec['commit']}`), `python benchmarks/grid_cost.py --record`: "
           f"the grid of {a['datasets']} datasets × {len(r['models'])} models × N = {min(sizes):,}..{max(sizes):,} × "
           f"{a['epochs']} epochs at {r['image_size']}×{r['image_size']}, the {a['n_test']}-image test set evaluated "
           f"every epoch, is {r['total_pflop']:,.0f} PFLOP ({big['model']} alone {big['grid_pflop']:,.0f}), so "
           f"finishing in 24 h needs a device that sustains {r['need_tflops_for_24h']:.1f} TFLOP/s while training. "
           f"This machine ({r['cpu_threads']} CPU threads) trained {timed} at {r['image_size']}×{r['image_size']} at "
           f"{r['cpu_resnet18_images_per_s']:.1f} images/s ({r['cpu_gflops']:,.0f} GFLOP/s); at that rate for every "
           f"model, the grid's {r['runs']} runs handed out in grid order take "
           f"{_days(walls['cpu'], 'days', 'such machine')}."]
    if not r["gpu"]:
        out.append("No CUDA device was visible to this run, so whether the grid fits in a day on a GPU is "
                   "**not measured**.")
    else:
        hours = sum(g["grid_hours"] for g in r["gpu"])
        out.append(f"On {r['gpu_name']}: " + ", ".join(f"{g['model']} {g['images_per_s']:,.0f} images/s "
                                                        f"({g['tflops']:.1f} TFLOP/s)" for g in r["gpu"])
                   + f"; the grid takes {hours:.1f} h of training, so it {'fits' if hours <= 24 else '**does not fit**'}"
                   f" in a day; one run per GPU, {_days(walls['gpu'], 'h', 'GPU')}.")
        if r.get("packed"):
            p = r["packed"]
            out.append(f"{p['runs_per_gpu']} {timed} runs at once on one GPU train {p['images_per_s_packed']:,.0f} "
                       f"images/s in all ({p['gain']:.2f}× one run's {p['images_per_s_one']:,.0f}); with "
                       f"{p['runs_per_gpu']} runs per GPU, {_days(walls['gpu_packed'], 'h', 'GPU')}.")
    return "\n".join([GRID_BEGIN, "", " ".join(out), "", GRID_END])


def speed_records() -> dict[str, dict[str, Any]]:
    """Every benchmark record in docs/speed; a missing one the README needs is named with its command."""
    missing = [n for n in SPEED_COMMANDS if not (SPEED_DIR / f"{n}.json").exists()]
    if missing:
        raise SystemExit(f"no benchmark record {'; '.join(f'{n} (run {SPEED_COMMANDS[n]})' for n in missing)} "
                         f"in {SPEED_DIR}")
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(SPEED_DIR.glob("*.json"))}


def replace_block(text: str, block: str, begin: str = BEGIN, end: str = END) -> str:
    """``text`` with the part between the markers (inclusive) replaced by ``block``."""
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise SystemExit(f"README.md must hold the markers once each, in order:\n{begin}\n{end}")
    a, b = text.index(begin), text.index(end) + len(end)
    return text[:a] + block + text[b:]


def _with_speed(text: str) -> str:
    """``text`` with its speed block, its out-of-core figures, the executors' table, the training throughput
    and the grid's cost rendered from docs/speed/*.json."""
    recs = speed_records()
    text = replace_block(text, render_speed(recs), SPEED_BEGIN, SPEED_END)
    for render_one, name, begin, end in ((render_out_of_core, OOC, OOC_BEGIN, OOC_END),
                                         (render_executors, EXEC, EXEC_BEGIN, EXEC_END),
                                         (render_training, TRAIN, TRAIN_BEGIN, TRAIN_END),
                                         (render_grid_cost, GRID, GRID_BEGIN, GRID_END)):
        text = replace_block(text, render_one(recs[name]), begin, end)
    return text


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
