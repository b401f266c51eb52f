"""The quick demo end to end: real data, training, attacks, d_repr, fits and the report."""

from __future__ import annotations

import io
import json
import re
import time

import pytest

from intrinsics.study.demo import demo_spec_text, run_demo
from intrinsics.study.runner import study_status
from intrinsics.study.store import Store
from intrinsics.study.verdicts import VERDICTS


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    buf = io.StringIO()
    t0 = time.time()
    result = run_demo(out, quick=True, progress=False, stream=buf)
    return out, result, buf.getvalue(), time.time() - t0


def test_quick_demo_leaves_report_store_and_fits(quick_demo):
    out, result, printed, elapsed = quick_demo
    # (its wall time, ~30 s here, is reported by the demo itself; speed is not asserted in tests)
    for name in ("report.html", "study.sqlite", "fits.json"):
        assert (out / name).exists()
    assert f"report: {(out / 'report.html').resolve()}" in printed
    assert result["runs"]["done"] == result["runs"]["total"] == 21 and result["runs"]["failed"] == 0
    status = study_status(out)
    assert (status["total"], status["done"], status["failed"], status["running"]) == (21, 21, 0, 0)
    # The headline names every claim with a verdict.
    verdicts = re.findall(r"^\[([a-z ,]+)\] ", printed, flags=re.M)
    assert len(verdicts) == 5
    assert set(verdicts) <= set(VERDICTS)


def test_quick_demo_measurements_are_sane(quick_demo):
    out, *_ = quick_demo
    with Store(out) as store:
        dd = {m["dataset"]: m for m in store.measurements("d_data")}
        kf = {m["dataset"]: m for m in store.measurements("K_F")}
        runs = store.runs()
        d_repr = store.measurements("d_repr")
    lesions = {f"lesion-b{b}-c{c}" for b in (1, 6) for c in ("0.15", "0.3")}
    assert set(dd) == set(kf) == {"mnist-3v8", "mnist-1v7", "digits-4v9"} | lesions
    for m in dd.values():
        assert 1 < m["value"] < 30 and m["ci_lo"] <= m["value"] <= m["ci_hi"]
        assert m["details"]["preprocessing"]["size"] == [16, 16] or m["details"]["preprocessing"]["size"] == 16
    # The factorial design: contrast sets K_F (fainter lesions, sharper labels; the same K_F to ±10% at
    # either number of background factors), the background factors set d_data (at either contrast).
    for b in (1, 6):
        assert kf[f"lesion-b{b}-c0.3"]["value"] < kf[f"lesion-b{b}-c0.15"]["value"]
    for c in ("0.15", "0.3"):
        k1, k6 = kf[f"lesion-b1-c{c}"]["value"], kf[f"lesion-b6-c{c}"]["value"]
        assert abs(k1 / k6 - 1) < 0.1
        assert dd[f"lesion-b6-c{c}"]["value"] - dd[f"lesion-b1-c{c}"]["value"] > 3
    assert all(kf[d]["details"]["M"] == 250 for d in kf)  # one M for every dataset: comparable K_F
    assert all((out / p["image"]).exists() for m in kf.values() for p in m["details"]["closest_pair_images"])
    for r in runs:
        assert r["status"] == "done" and r["attempts"] == 1
        assert 0 <= r["test_acc"] <= 1 and r["test_loss"] > 0
        assert len(r["curves"]["train_loss"]) == 8  # one entry per epoch
        (att,) = [a for a in r["attacks"]["fgsm"] if a["eps"] == 0.00784]
        assert att["accuracy"] <= r["attacks"]["clean"]["accuracy"] + 1e-9  # an attack never helps
    # Learning works on the easy real task: MNIST 1 vs 7 with 200 images is well above chance.
    easy = [r for r in runs if r["dataset"] == "mnist-1v7" and r["N"] == 200][0]
    assert easy["test_acc"] > 0.85
    assert len(d_repr) == len(runs) and all(m["value"] > 0 for m in d_repr)


def test_quick_demo_fits_json_has_every_fit(quick_demo):
    out, *_ = quick_demo
    fits = json.loads((out / "fits.json").read_text())
    assert set(fits) >= {"loss_vs_d_data", "learning_curves", "exponent_vs_inv_d", "kf_law", "robustness",
                         "repr_vs_data", "datasets", "claims", "meta"}
    assert set(fits["loss_vs_d_data"]) == {"natural", "medical"}
    assert len(fits["learning_curves"]) == 7 and len(fits["datasets"]) == 7
    # The lesion sets make two K_F levels whose d_data spans more than 3 units each.
    med = fits["kf_levels"]["by_domain"]["medical"]
    assert med["status"] == "ok" and [len(lv["datasets"]) for lv in med["levels"]] == [2, 2]
    assert all(lv["d_data_spread"] > 3 for lv in med["levels"])
    assert med["comparison"]["kf_ratio"] > 1.5
    page = (out / "report.html").read_text()
    assert "lesion-b1-c0.15" in page and page.count("data:image/png;base64,") >= 6 + 6


def test_rerunning_the_demo_resumes_instead_of_retraining(quick_demo):
    out, *_ = quick_demo
    with Store(out) as store:
        before = {r["run_key"]: r["finished"] for r in store.runs()}
    result = run_demo(out, quick=True, progress=False, stream=io.StringIO(), n_bootstrap=50)
    assert result["runs"]["new_runs"] == 0 and result["runs"]["done"] == 21
    with Store(out) as store:
        assert {r["run_key"]: r["finished"] for r in store.runs()} == before


def test_full_demo_spec_is_bigger():
    from intrinsics.study.spec import expand_grid, parse_spec
    import tomllib

    quick = expand_grid(parse_spec(tomllib.loads(demo_spec_text(True))))
    full = expand_grid(parse_spec(tomllib.loads(demo_spec_text(False))))
    assert len(full) > 2 * len(quick)


def test_plan_measures_a_new_source_under_the_study_preprocessing(quick_demo):
    from intrinsics.study.plan import plan

    out, *_ = quick_demo
    fits = json.loads((out / "fits.json").read_text())
    if fits["kf_law"]["coefficients"]["beta_N"] is None:
        pytest.skip("the quick demo's K_F law could not be fitted on this run")
    res = plan(out, source="synthetic:lesion?n=300&contrast=0.3&size=32&seed=1", N=[100, 200], rank=True)
    measured = res["measured"]
    assert measured["preprocessing"]["channels"] == 1 and 16 in (measured["preprocessing"]["size"] or [16])
    kf_study = {d["dataset"]: d["K_F"] for d in fits["datasets"]}["lesion-b6-c0.3"]
    # A new draw from the same generator, prepared the same way, has a K_F of the same size.
    assert 0.5 * kf_study < measured["K_F"]["value"] < 2 * kf_study
    assert [p["N"] for p in res["predictions"]] == [100.0, 200.0]
    assert len(res["ranking"]) == 8


# --- the same demo folder through the command line -------------------------------------------------
def test_cli_status_report_plan_export_on_the_demo(quick_demo, tmp_path, capsys):
    import json

    from intrinsics.cli import main

    out = quick_demo[0]
    assert main(["study", "status", str(out), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["total"] == st["done"] > 0 and st["failed"] == 0 and st["running"] == 0
    assert main(["report", str(out), "--bootstrap", "50"]) == 0
    printed = capsys.readouterr().out
    fits = json.loads((out / "fits.json").read_text())
    assert "report.html" in printed and fits["claims"]
    for c in fits["claims"]:  # every verdict is said on screen, next to its claim
        assert f"{c['verdict']:>13}  {c['claim']}" in printed
    plan_json = tmp_path / "plan.json"
    assert main(["plan", "--study", str(out), "--d-data", "10", "--kf", "2", "--n", "500", "2000",
                 "--json", str(plan_json)]) == 0
    preds = json.loads(plan_json.read_text())["predictions"]
    assert [p["N"] for p in preds] == [500, 2000] and all(p["loss"] > 0 for p in preds)
    assert "extrapolating, N=2000" in capsys.readouterr().err  # beyond the study's N is said aloud
    # A binary task of a multi-class source, read like the study's own datasets.
    assert main(["plan", "--study", str(out), "--source", "builtin:digits", "--classes", "4,9", "--n", "100",
                 "--json", str(plan_json)]) == 0
    rec = json.loads(plan_json.read_text())
    assert rec["measured"]["preprocessing"]["classes"] == ["4", "9"]
    assert main(["plan", "--study", str(out), "--classes", "4,9", "--d-data", "5", "--kf", "1"]) == 2
    assert main(["study", "export", str(out), "--to", str(tmp_path / "exp")]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(["study", "status", str(tmp_path / "nothing-here")]) == 2


def _readme_figures():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "readme_figures.py"
    spec = importlib.util.spec_from_file_location("readme_figures", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_demo_records_time_and_machine_and_the_readme_block_comes_from_it(quick_demo):
    out, result, *_ = quick_demo
    run = json.loads((out / "demo_run.json").read_text())
    # (another test in this module reruns the demo on this folder: the record is then the resumed run's)
    assert run["quick"] is True and run["elapsed_s"] > 0 and run["runs"]["done"] == 21
    assert run["runs"]["new_runs"] in (0, 21)
    assert run["machine"]["cores"] >= 1 and run["machine"]["cpu"] and run["machine"]["date"][:2] == "20"
    rf = _readme_figures()
    rec = rf.record_from_demo(out)
    block = rf.render(rec)
    fits = json.loads((out / "fits.json").read_text())
    assert block.startswith(rf.BEGIN) and block.endswith(rf.END)
    assert f"{run['machine']['cpu']}, {run['machine']['cores']} cores" in block and "21/21 runs done" in block
    for c in fits["claims"]:
        assert f"| {c['claim']} | **{c['verdict']}** |" in block
    curves = fits["learning_curves"]
    assert rec["curves_b_with_interval"] == sum(c["b_at_bound"] is not None for c in curves.values())
    bt = fits["plan_backtest_pilot"]
    assert rec["plan_backtest_pilot"]["median_abs_log_error"] == bt["median_abs_log_error"]
    # The block replaces exactly what lies between the markers, and a README without them is refused.
    text = f"intro\n{rf.BEGIN}\nold figures\n{rf.END}\noutro\n"
    assert rf.replace_block(text, block) == f"intro\n{block}\noutro\n"
    with pytest.raises(SystemExit, match="markers"):
        rf.replace_block("no markers here", block)
    # A resumed demo's time is not the demo's time: the README is never written from one.
    resumed = {**rec, "runs": {**rec["runs"], "new_runs": 5, "done": 21}}
    with pytest.raises(SystemExit, match="16 of the demo's 21 runs were done before.*fresh folder"):
        rf.check_fresh(resumed)
    rf.check_fresh({**rec, "runs": {**rec["runs"], "new_runs": 21, "done": 21}})


def test_readme_demo_figures_are_the_recorded_ones():
    """README.md's demo block is exactly what scripts/readme_figures.py renders from docs/demo_figures.json."""
    rf = _readme_figures()
    assert rf.main(["--check"]) == 0


def test_the_speed_block_comes_from_the_benchmark_records_and_judges_each_target(tmp_path, monkeypatch):
    """The README's speed tables are rendered from docs/speed/*.json alone; each target's verdict is the
    comparison of the recorded figures, not a word kept in the README."""
    import copy

    rf = _readme_figures()
    recs = rf.speed_records()
    block = rf.render_speed(recs)
    assert block.startswith(rf.SPEED_BEGIN) and block.endswith(rf.SPEED_END)
    fash = recs["measure-fashion-mnist"]["result"]
    F = fash["floors_s"][fash["floor_backend"]]
    assert f"{fash['measure_s']:.2f} s = {fash['measure_s'] / F:.2f} F" in block
    assert rf.machine_line(recs["neighbors"]["machine"]) in block
    # a run that meets the Fashion-MNIST target is said to meet it, and one that misses it not
    fast, slow = copy.deepcopy(recs), copy.deepcopy(recs)
    fast["measure-fashion-mnist"]["result"]["measure_s"] = 0.3 * F
    slow["measure-fashion-mnist"]["result"]["measure_s"] = 0.4 * F
    line = next(ln for ln in rf.render_speed(fast).splitlines() if "`measure` ≤ 0.35 F" in ln)
    assert line.endswith("| 0.30 F | yes |")
    line = next(ln for ln in rf.render_speed(slow).splitlines() if "`measure` ≤ 0.35 F" in ln)
    assert line.endswith("| 0.40 F | **no** |")
    # a missing record is named, with the command that writes it
    for name in rf.SPEED_COMMANDS:
        if name != "measure-lesion":
            (tmp_path / f"{name}.json").write_text(json.dumps(recs[name]))
    monkeypatch.setattr(rf, "SPEED_DIR", tmp_path)
    with pytest.raises(SystemExit, match="no benchmark record measure-lesion .*bench_measure.py --cli --record"):
        rf.speed_records()


def test_the_out_of_core_figures_come_from_their_record(tmp_path, monkeypatch):
    """README.md's out-of-core lines are rendered from docs/speed/out-of-core.json alone: a changed
    record changes them, and a run whose two results differ is said to differ."""
    import copy

    rf = _readme_figures()
    recs = rf.speed_records()
    rec = recs["out-of-core"]
    block = rf.render_out_of_core(rec)
    assert block.startswith(rf.OOC_BEGIN) and block.endswith(rf.OOC_END)
    assert block in rf.README.read_text(encoding="utf-8")
    mem, mm = rec["result"]["runs"]["memory"], rec["result"]["runs"]["mmap"]
    assert f"{mm['seconds']:.2f} s ({mm['seconds'] / mem['seconds']:.2f}× in memory)" in block
    assert rf.machine_line(rec["machine"]) in block and rec["commit"] in block
    changed = copy.deepcopy(rec)
    changed["result"]["runs"]["mmap"]["seconds"] = 2 * mem["seconds"]
    changed["result"]["identical"] = False
    other = rf.render_out_of_core(changed)
    assert "(2.00× in memory)" in other and other.removesuffix(rf.OOC_END).rstrip().endswith("**no**.")
    _hand_edited_readme_fails_the_check(rf, tmp_path, monkeypatch, block, other)


def _hand_edited_readme_fails_the_check(rf, tmp_path, monkeypatch, block: str, other: str) -> None:
    """README.md with ``block`` replaced by ``other`` fails ``--check``; as it is, it passes."""
    assert other != block
    monkeypatch.setattr(rf, "README", tmp_path / "README.md")
    text = (rf.ROOT / "README.md").read_text(encoding="utf-8")
    (tmp_path / "README.md").write_text(text.replace(block, other), encoding="utf-8")
    assert rf.main(["--check"]) == 1
    (tmp_path / "README.md").write_text(text, encoding="utf-8")
    assert rf.main(["--check"]) == 0


def _rendered_in_readme(rf, render, name: str, begin: str, end: str) -> tuple[dict, str]:
    rec = rf.speed_records()[name]
    block = render(rec)
    assert block.startswith(begin) and block.endswith(end)
    assert block in rf.README.read_text(encoding="utf-8")
    assert rf.machine_line(rec["machine"]) in block and f"(commit `{rec['commit']}`)" in block
    return rec, block


def test_the_executors_table_comes_from_its_record(tmp_path, monkeypatch):
    """README.md's table of what Ray costs is rendered from docs/speed/executors.json alone."""
    import copy

    rf = _readme_figures()
    rec, block = _rendered_in_readme(rf, rf.render_executors, "executors", rf.EXEC_BEGIN, rf.EXEC_END)
    r = rec["result"]
    assert f"`--epochs {r['epochs']}`" in block and f"{r['runs']} runs of `smallcnn`" in block
    for e in r["executors"]:
        assert f"| {e['median_wall_s']:.1f} s | {e['median_run_s']:.2f} s | {e['vs_local_all_cores']:.2f}× |" in block
    changed = copy.deepcopy(rec)
    ray = next(e for e in changed["result"]["executors"] if e["executor"] == "ray")
    ray.update(median_wall_s=123.45, median_run_s=6.789, vs_local_all_cores=3.0)
    changed["result"]["repeats"] = 3
    other = rf.render_executors(changed)
    assert "| 123.5 s | 6.79 s | 3.00× |" in other and "medians of 3 runs of the grid" in other
    _hand_edited_readme_fails_the_check(rf, tmp_path, monkeypatch, block, other)


def test_the_training_throughput_comes_from_its_record(tmp_path, monkeypatch):
    """README.md's training throughput is rendered from docs/speed/training.json alone, GPU rows included
    when the record has them."""
    import copy

    rf = _readme_figures()
    rec, block = _rendered_in_readme(rf, rf.render_training, "training", rf.TRAIN_BEGIN, rf.TRAIN_END)
    r = rec["result"]
    first = r["rows"][0]
    assert f"{first['model']} {first['images_per_s']:,.0f} images/s at {first['size']}×{first['size']}" in block
    assert f"at most {100 * r['largest_data_fraction']:.2f}% of step time" in block
    assert f"the CPU ({r['threads']} threads)" in block
    changed = copy.deepcopy(rec)
    changed["result"]["rows"][0]["images_per_s"] = 12345.6
    changed["result"]["largest_data_fraction"] = 0.0123
    changed["result"]["rows"].append({**first, "model": "resnet18", "size": 224, "device": "cuda",
                                      "images": 2560, "images_per_s": 987.0})
    changed["result"]["gpu"] = "measured"
    other = rf.render_training(changed)
    assert f"{first['model']} 12,346 images/s at" in other and "at most 1.23% of step time" in other
    assert "on cuda, 2,560 random images a run: resnet18 987 images/s at 224×224" in other
    assert "not measured" not in other
    _hand_edited_readme_fails_the_check(rf, tmp_path, monkeypatch, block, other)


def test_the_grid_cost_comes_from_its_record(tmp_path, monkeypatch):
    """README.md's cost of the reference grid is rendered from docs/speed/grid-cost.json alone; a record
    with GPU rows says whether the grid fits in a day."""
    import copy

    rf = _readme_figures()
    rec, block = _rendered_in_readme(rf, rf.render_grid_cost, "grid-cost", rf.GRID_BEGIN, rf.GRID_END)
    r = rec["result"]
    assert f"is {r['total_pflop']:,.0f} PFLOP" in block and f"{r['need_tflops_for_24h']:.1f} TFLOP/s" in block
    assert f"at {r['cpu_resnet18_images_per_s']:.1f} images/s ({r['cpu_gflops']:,.0f} GFLOP/s)" in block
    assert f"the grid's {r['runs']} runs" in block
    days = list(r["wall_by_devices"]["cpu"].values())
    assert f"take {days[0]:,.0f} days on 1 such machine" in block and f"{days[-1]:,.0f} on 8." in block
    if not r["gpu"]:
        assert "**not measured**" in block
    changed = copy.deepcopy(rec)
    g = changed["result"]
    g["wall_by_devices"]["cpu"] = {"1": 100.0, "4": 25.0, "8": 13.0}
    g["gpu"] = [{"model": m["model"], "images_per_s": 500.0, "tflops": 10.0, "grid_hours": 3.0} for m in g["models"]]
    g["gpu_name"] = "NVIDIA H200"
    g["wall_by_devices"]["gpu"] = {"1": 18.0, "4": 4.5, "8": 2.25}
    other = rf.render_grid_cost(changed)
    assert "take 100 days on 1 such machine, 25 on 4 and 13 on 8." in other
    assert "On NVIDIA H200:" in other and "the grid takes 18.0 h of training, so it fits in a day" in other
    assert "not measured" not in other
    g["gpu"][0]["grid_hours"] = 10.0
    assert "25.0 h of training, so it **does not fit** in a day" in rf.render_grid_cost(changed)
    _hand_edited_readme_fails_the_check(rf, tmp_path, monkeypatch, block, other)


def test_a_missing_benchmark_record_is_named_with_the_command_that_writes_it(tmp_path, monkeypatch):
    rf = _readme_figures()
    recs = rf.speed_records()
    monkeypatch.setattr(rf, "SPEED_DIR", tmp_path)
    for gone, command in (("executors", "bench_executors.py --record"), ("training", "bench_training.py --record"),
                          ("grid-cost", "grid_cost.py --record")):
        for p in tmp_path.glob("*.json"):
            p.unlink()
        for name in rf.SPEED_COMMANDS:
            if name != gone:
                (tmp_path / f"{name}.json").write_text(json.dumps(recs[name]))
        with pytest.raises(SystemExit, match=rf"no benchmark record {gone} \(run benchmarks/{command}\)"):
            rf.speed_records()
