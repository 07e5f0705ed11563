"""The search: a tiny grid through Ray Tune and in-process, resume after a kill, tables, and reproduce."""

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from dataclasses import replace

import numpy as np
import pytest

from cifake.data import load_dataset
from cifake.models import Topology
from cifake.report import csv_table, markdown_table
from cifake.search.cost import estimated_cost, training_work, trial_folder
from cifake.search.grid import Budget, SearchSpace
from cifake.search.status import search_status
from cifake.search.status import TrialStatus, seconds_left, union_seconds
from cifake.search.tables import paper_best_accuracy, paper_value, stage1_rows, stage2_rows, within
from cifake.workflows.search import run_search
from cifake.workflows.search import SearchInterrupted
from cifake.workflows.search_trial import TrialPlan, run_trial
from conftest import cli, flat

TINY = SearchSpace(filters=(4, 8), conv_layers=(1,), dense_units=(8,), dense_layers=(1,))
BUDGET = Budget.of(epochs=2, patience=2, limit_per_label=200)


def _search(source, out, *args, **options):
    return run_search(load_dataset(source, progress=False), out, *args, **options)


def _finished(folder):
    """Finished trials (their run.json) and when each was written."""
    return {p.parent.name: p.stat().st_mtime_ns for p in (folder / "trials").glob("*/run.json")}


def _scores(summary):
    return {r["name"]: (r["validation"], r["test"], r["epochs_run"]) for r in summary["stage1"] + summary["stage2"]}


def test_space_sizes_match_the_study():
    space = SearchSpace()
    assert len(space.stage1()) == 12 and all(t.dense == () for t in space.stage1())
    heads = space.stage2(space.stage1()[4])
    assert len(heads) == 24 and {t.filters for t in heads} == {32} and heads[-1].dense == (4096, 4096, 4096)


def test_trials_are_scheduled_longest_first():
    space = SearchSpace()
    stage1 = sorted(space.stage1(), key=estimated_cost, reverse=True)
    # the 128-filter extractors cost the most per step, the 16-filter ones the least (benchmarks/bench_step.py)
    assert [t.name for t in stage1[:3]] == ["f128-c3-dnone", "f128-c2-dnone", "f128-c1-dnone"]
    assert {t.filters for t in stage1[-3:]} == {16}
    heads = sorted(space.stage2(space.stage1()[5]), key=estimated_cost, reverse=True)
    assert heads[0].dense == (4096,) * 3 and heads[-1].dense == (32,)


def test_in_process_and_ray_give_the_same_results(learnable_zip, tmp_path, capsys):
    pytest.importorskip("ray", reason="ray is in the dev extra; CI installs it")
    local = _search(learnable_zip, tmp_path / "local", TINY, BUDGET, use_ray=False, progress=True)
    in_process_log = capsys.readouterr().out
    distributed = _search(learnable_zip, tmp_path / "ray", TINY, BUDGET, use_ray=True, progress=True)
    ray_log = capsys.readouterr().out
    assert _scores(local) == _scores(distributed)
    for result in local["stage1"] + local["stage2"]:  # both paths log each trial as it ends
        line = f"{result['name']}: {result['epochs_run']} epochs (best {result['best_epoch']}), val loss " \
               f"{result['validation']['loss']:.4f}, test acc {result['test']['accuracy']:.4f}"
        assert line in in_process_log and line in ray_log
    assert len(local["stage1"]) == 2 and len(local["stage2"]) == 1
    best = min(local["stage1"], key=lambda r: r["validation"]["loss"])
    assert local["best_extractor"] == best["name"]
    assert local["best"] == min(local["stage1"] + local["stage2"], key=lambda r: r["validation"]["loss"])["name"]
    assert local["stage2"][0]["topology"]["filters"] == best["topology"]["filters"]
    for r in local["stage1"]:
        assert set(r["test"]) >= {"accuracy", "loss", "precision", "recall", "f1", "roc_auc", "per_class_accuracy"}
        assert r["parameters"] > 0 and r["config"]["epochs"] == BUDGET.train.epochs
        assert r["split"]["limit_per_label"] == 200
    assert (tmp_path / "local" / "trials" / f"{local['best']}" / "model.safetensors").is_file()


def test_rerun_skips_finished_trials_and_refuses_other_settings(learnable_zip, tmp_path):
    first = _search(learnable_zip, tmp_path, TINY, BUDGET, use_ray=False, progress=False)
    stamps = _finished(tmp_path)
    again = _search(learnable_zip, tmp_path, TINY, BUDGET, use_ray=False, progress=False)
    assert _scores(first) == _scores(again)
    assert stamps == _finished(tmp_path) and len(stamps) == 3
    with pytest.raises(ValueError, match="other settings"):
        _search(learnable_zip, tmp_path, TINY, Budget.of(epochs=3), use_ray=False, progress=False)
    with pytest.raises(ValueError, match="other settings"):  # the learning rate is part of the budget
        _search(learnable_zip, tmp_path, TINY, replace(BUDGET, train=replace(BUDGET.train, learning_rate=0.01)),
                use_ray=False, progress=False)
    settings = tmp_path / "search_settings.json"  # a folder from before the recipe fields existed still resumes:
    recorded = json.loads(settings.read_text())  # its budget was flat, and held fewer of the training settings
    train, split = recorded["budget"]["train"], recorded["budget"]["split"]
    recorded["budget"] = {key: train[key] for key in ("epochs", "patience", "batch_size", "seed")} | split
    settings.write_text(json.dumps(recorded))
    assert _scores(_search(learnable_zip, tmp_path, TINY, BUDGET, use_ray=False, progress=False)) == _scores(first)


def test_killed_search_resumes_without_retraining_finished_trials(learnable_zip, tmp_path):
    args = [sys.executable, "-m", "cifake", "search", "--data", str(learnable_zip), "--out", str(tmp_path),
            "--filters", "4,8,16", "--conv-layers", "1", "--dense-units", "8", "--dense-layers", "1",
            "--epochs", "6", "--limit", "300", "--no-ray", "-q"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not _finished(tmp_path):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the search ended before it could be killed"
    finished = _finished(tmp_path)
    assert 1 <= len(finished) < 4
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert all(_finished(tmp_path)[name] == stamp for name, stamp in finished.items())
    assert len(json.loads((tmp_path / "search.json").read_text())["stage1"]) == 3


def test_a_resumed_trial_counts_the_epochs_of_earlier_runs(learnable_zip, tmp_path, monkeypatch):
    topology, budget = TINY.stage1()[0], Budget.of(epochs=1, patience=2, limit_per_label=200)
    clock = iter(range(0, 10**9, 100))  # the first run is timed by a clock that makes every step take 100 s
    with monkeypatch.context() as patched:
        patched.setattr(time, "perf_counter", lambda: float(next(clock)))
        first = run_trial(topology, TrialPlan(str(learnable_zip), tmp_path, budget))
    assert first["seconds"] >= 100
    trial_folder(tmp_path, topology).record.unlink()  # unfinished again: the rerun resumes at epoch 2
    second = run_trial(topology, TrialPlan(str(learnable_zip), tmp_path, Budget.of(epochs=2, patience=2,
                                                                                  limit_per_label=200)))
    assert second["epochs_run"] == 2 and second["seconds"] >= 100  # epoch 1's 100+ s, from the checkpoint


def test_ctrl_c_ends_a_search_with_how_to_resume_not_a_traceback(learnable_zip, tmp_path):
    args = [sys.executable, "-m", "cifake", "search", "--data", str(learnable_zip), "--out", str(tmp_path),
            "--filters", "4,8,16", "--conv-layers", "1", "--dense-units", "8", "--dense-layers", "1",
            "--epochs", "30", "--patience", "30", "--limit", "300", "--no-ray", "-q"]  # trials of several seconds
    # A test worker may ignore SIGINT, and a child would inherit that (Python then never raises KeyboardInterrupt)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not _finished(tmp_path):
        time.sleep(0.05)
    assert proc.poll() is None, "the search ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "run the same command again to resume" in stderr and "Traceback" not in stderr


def test_a_stage_runs_longest_first_and_notices_trials_that_did_not_finish(learnable_zip, tmp_path, monkeypatch):
    # Trials that write no result, as when Ray Tune returns normally after a signal stopped it.
    started = []
    monkeypatch.setattr("cifake.workflows.search.run_trial", lambda topology, *args: started.append(topology.filters))
    space = SearchSpace(filters=(4, 16, 8), conv_layers=(1,), dense_units=(8,), dense_layers=(1,))
    with pytest.raises(SearchInterrupted, match="3 trial.s. did not finish .*run the same command again"):
        _search(learnable_zip, tmp_path, space, BUDGET, use_ray=False, progress=False)
    assert started == [16, 8, 4]


@pytest.mark.parametrize("matrix_units, order", [(True, ["f128-c2", "f128-c1", "f64-c2", "f64-c1"]),
                                                  (False, ["f128-c2", "f64-c2", "f128-c1", "f64-c1"])])
def test_longest_first_follows_the_precision_trials_train_in(learnable_zip, tmp_path, monkeypatch, matrix_units,
                                                              order):
    """In fp32 the multiply-adds of a second conv layer outweigh twice the filters of one (estimated_cost)."""
    started = []
    monkeypatch.setattr("cifake.workflows.search.run_trial", lambda topology, *args: started.append(topology.name))
    monkeypatch.setattr("cifake.workflows.search.trains_on_matrix_units", lambda device: matrix_units)
    space = SearchSpace(filters=(64, 128), conv_layers=(1, 2), dense_units=(8,), dense_layers=(1,))
    with pytest.raises(SearchInterrupted):
        _search(learnable_zip, tmp_path, space, BUDGET, use_ray=False, progress=False)
    assert started == [f"{name}-dnone" for name in order]


def test_status_follows_a_search_from_waiting_to_finished(learnable_zip, tmp_path, monkeypatch):
    with monkeypatch.context() as patched:  # a search whose trials never finish: every trial waits
        patched.setattr("cifake.workflows.search.run_trial", lambda *args: None)
        with pytest.raises(SearchInterrupted):
            _search(learnable_zip, tmp_path, TINY, BUDGET, use_ray=False, progress=False)
    status = search_status(tmp_path)
    assert [(t.name, t.state) for t in status.trials] == [("f4-c1-dnone", "waiting"), ("f8-c1-dnone", "waiting")]
    assert status.heads_waiting_for_stage1 == 1 and status.total == 3 and status.seconds_left == 0  # nothing timed

    first = _search(learnable_zip, tmp_path, TINY, BUDGET, use_ray=False, progress=False, stages=1)
    status = search_status(tmp_path)
    assert {t.name: t.best_val_loss for t in status.trials if t.stage == 1} == {
        r["name"]: r["validation"]["loss"] for r in first["stage1"]}
    extractor = min(first["stage1"], key=lambda r: r["validation"]["loss"])
    (head,) = TINY.stage2(Topology.from_dict(extractor["topology"]))
    assert [(t.name, t.state) for t in status.trials if t.stage == 2] == [(head.name, "waiting")]
    assert status.heads_waiting_for_stage1 == 0 and status.seconds_left > 0

    one_epoch = Budget.of(epochs=1, patience=2, limit_per_label=200)
    run_trial(head, TrialPlan(str(learnable_zip), tmp_path, one_epoch))
    trial_folder(tmp_path, head).record.unlink()  # as if killed after its first epoch
    (started,) = [t for t in search_status(tmp_path).trials if t.stage == 2]
    assert started.state == "started" and started.epochs == 1 and started.best_val_loss is not None

    _search(learnable_zip, tmp_path, TINY, BUDGET, use_ray=False, progress=False)
    status = search_status(tmp_path)
    assert status.count("finished") == 3 and status.seconds_left == 0
    (finished,) = [t for t in status.trials if t.stage == 2]
    assert finished.epochs == 2 and finished.test_accuracy is not None  # the started trial was resumed, not redone
    epochs = [seconds for t in status.trials for seconds in t.epoch_seconds]
    assert max(epochs) <= status.wall_seconds <= sum(epochs) + 1e-6
    shown = subprocess.run([sys.executable, "-m", "cifake", "search-status", str(tmp_path)], capture_output=True,
                           text=True, timeout=120)
    assert shown.returncode == 0 and head.name in shown.stdout and "3 of 3 trials finished" in shown.stdout
    assert "Wall time so far:" in shown.stdout and all(len(line) <= 80 for line in shown.stdout.splitlines())
    for trial in status.trials:  # every figure whole at 80 columns (the output is piped)
        assert f"{trial.best_val_loss:.4f}" in shown.stdout and f"{trial.test_accuracy:.4f}" in shown.stdout


def test_the_cost_counts_multiply_adds_where_trials_train_in_fp32():
    """With bf16 matrix units the memory traffic of wide layers dominates; in fp32 the multiply-adds do, so a
    2-layer 64-filter extractor outweighs a 1-layer 128-filter one."""
    wide, deep = Topology(128, 1, ()), Topology(64, 2, ())
    assert estimated_cost(wide) > estimated_cost(deep)
    assert estimated_cost(wide, matrix_units=False) < estimated_cost(deep, matrix_units=False)
    elements, multiply_adds, dense = training_work(deep)
    assert (elements, multiply_adds, dense) == (30 * 30 * 64 + 13 * 13 * 64, 30 * 30 * 64 * 27 + 13 * 13 * 64 * 576,
                                                64 * 6 * 6)


def test_time_left_takes_a_started_trials_own_pace_and_prices_waiting_ones_by_the_nearest_measured_one():
    def trial(state, cost, *seconds):
        return TrialStatus("t", 1, state, len(seconds), None, sum(seconds), cost, epoch_seconds=seconds)

    finished, started = trial("finished", 400, 40, 40, 40), trial("started", 100, 10, 20)
    small, large = trial("waiting", 50), trial("waiting", 1000)
    # every trial is expected to run 4 epochs, the mean of the finished one's 3 and the budget's 5: 2 more for the
    # started one at its own 15 s; the waiting ones at the rate of the measured trial nearest in cost (log scale):
    # 50 is nearest 100 (15 s / 100 = 0.15 s per unit), 1000 nearest 400 (0.1 s per unit)
    budget = Budget.of(epochs=5)
    assert seconds_left([finished, started, small], budget) == pytest.approx(2 * 15 + 4 * 50 * 0.15)
    assert seconds_left([finished, started, large], budget) == pytest.approx(2 * 15 + 4 * 1000 * 0.1)
    assert seconds_left([small, large], budget) == 0  # nothing measured yet: no rate to price them by


def test_status_prices_trials_in_the_precision_their_checkpoints_record(learnable_zip, tmp_path, monkeypatch):
    _search(learnable_zip, tmp_path, TINY, BUDGET, use_ray=False, progress=False, stages=1)
    for precision, matrix_units in (("fp32", False), ("bf16 autocast", True)):
        monkeypatch.setattr("cifake.search.status.checkpoint_precision", lambda folder, kind=precision: kind)
        costs = {t.name: t.cost for t in search_status(tmp_path).trials if t.stage == 1}
        assert costs == {t.name: estimated_cost(t, matrix_units) for t in TINY.stage1()}
    assert estimated_cost(Topology(8, 1, ()), False) != estimated_cost(Topology(8, 1, ()), True)


def test_wall_time_is_the_union_of_epoch_intervals():
    assert union_seconds([]) == 0
    assert union_seconds([(20, 25), (0, 10), (5, 15)]) == 20  # overlap counted once, the gap between runs not at all
    assert union_seconds([(0, 10), (2, 3), (10, 11)]) == 11  # nested and touching intervals


def test_status_of_a_folder_without_a_search_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}: not a search folder"):
        search_status(tmp_path)
    shown = subprocess.run([sys.executable, "-m", "cifake", "search-status", str(tmp_path)], capture_output=True,
                           text=True, timeout=120)
    assert shown.returncode == 2 and "not a search folder" in shown.stderr and "Traceback" not in shown.stderr


def _result(filters, layers, accuracy, dense=()):
    metrics = {"accuracy": accuracy, "loss": 0.2, "precision": 0.9, "recall": 0.9, "f1": 0.9, "roc_auc": 0.95}
    return {"topology": {"filters": filters, "conv_layers": layers, "dense": list(dense)}, "test": metrics,
            "validation": metrics}


def test_tables_show_paper_ours_and_difference():
    assert paper_value("accuracy", 128, 2) == 92.98 and paper_value("loss", 16, 1) == 0.254
    assert paper_best_accuracy() == (92.98, 128, 2)  # the study's best reported accuracy, Table 1
    results = [_result(32, 2, 0.9300), _result(128, 2, 0.9100), _result(16, 1, 0.9006)]
    header, rows = stage1_rows(results, "accuracy")
    assert header[0] == "filters" and header[2].startswith("2 layers")
    assert rows == [["16", "90.06 / 90.06 / +0.00", "-"], ["32", "-", "92.93 / 93.00 / +0.07"],
                    ["128", "-", "92.98 / 91.00 / -1.98"]]
    assert within(results) == (2, 3) and all(type(n) is int for n in within(results))  # JSON-ready
    assert markdown_table(header, rows).splitlines()[2].startswith("| 16 | 90.06 / 90.06 / +0.00 |")
    assert csv_table(header, rows).splitlines()[1] == "16,90.06 / 90.06 / +0.00,-"
    heads = [_result(32, 2, 0.91, (64,)), _result(32, 2, 0.92, (64, 64)), _result(32, 2, 0.93, (128,))]
    header, rows = stage2_rows(heads, "accuracy")
    assert rows == [["64", "91.00", "92.00"], ["128", "93.00", "-"]] and header[1] == "1 dense layer"


@pytest.mark.parametrize("study_model", [False, True], ids=["search-best", "study-model"])
def test_reproduce_writes_one_report_with_every_table_and_figure(learnable_zip, tmp_path, monkeypatch, study_model):
    """The headline model is the search's best, or (quick) the study's topology trained on the whole train split;
    a profile may search no dense heads."""
    from cifake.search import grid

    space = replace(TINY, dense_units=()) if study_model else TINY
    monkeypatch.setitem(grid.PROFILES, "quick", grid.Profile(space, BUDGET, study_model, scope="What it shows."))
    recipe = tmp_path / "vit.json"  # with the study's model, a small transformer beside it (--with-vit)
    recipe.write_text(json.dumps({"topology": "vit-p8-d1-w32", "epochs": 1, "schedule": "cosine"}))
    with_vit = ["--with-vit", "--vit-recipe", recipe] if study_model else []
    printed = cli("reproduce", "--data", learnable_zip, "--out", tmp_path, "--profile", "quick", "--no-ray",
                  "-q", *with_vit).stdout
    result = json.loads((tmp_path / "reproduce.json").read_text())
    model = "f32-c2-d64" if study_model else result["best"]
    assert result["model"]["name"] == model and result["model"]["source"] == ("study" if study_model else "search")
    assert f"{model}: test accuracy {result['test']['accuracy']:.4f}" in flat(printed)
    assert result["test"]["n"] == 200 and result["within_1_point"][1] == 0  # tiny filters: no paper cell to compare
    page = (tmp_path / "report.html").read_text()
    markdown = (tmp_path / "report.md").read_text()
    assert "src='http" not in page and page.count("data:image/png;base64,") >= (5 if study_model else 10)
    for title in ("Data audit", "Stage 1", "Stage 2", "Every trial", "official test split", "Grad-CAM",
                  "What it shows."):
        assert title in markdown, title
    tables = 6 if study_model else 11  # stage 1's five metrics (and stage 2's), and the list of trials
    assert len(list((tmp_path / "tables").glob("*.csv"))) == tables
    assert len(list((tmp_path / "tables").glob("*.png"))) == tables
    for png in (tmp_path / "tables").glob("*.png"):  # every heatmap and plot is in the report, not only on disk
        assert f"](tables/{png.name})" in markdown, png.name
    trials = (tmp_path / "tables" / "trials.csv").read_text().splitlines()
    searched = json.loads((tmp_path / "search" / "search.json").read_text())
    assert len(trials) == 1 + (2 if study_model else 3) and trials[1].startswith(f"{searched['stage1'][0]['name']},1,")
    assert f"| {result['best']} |" in markdown  # the best trial is among the listed ones
    assert f"epochs ran for {result['search_wall_seconds']:,.0f} s" in markdown
    assert 0 < result["search_wall_seconds"] <= result["seconds"]  # one run: the search is part of the command
    assert f"test accuracy {100 * result['test']['accuracy']:.2f} %" in markdown
    behind = 100 * result["test"]["accuracy"] - 92.98  # the headline's distance from the study's best, signed
    assert f"{behind:+.2f} points from the study's best reported accuracy" in markdown
    assert "the study's best reported accuracy, 92.98 % (its Tables 1-5: 128 filters, 2 conv layers)" in markdown
    assert np.isclose(result["test_without_leaked"]["accuracy"], result["test"]["accuracy"])  # no leaks in tiny data
    if study_model:  # trained with the study's recipe (TrainConfig's defaults) on every train image
        record = json.loads((tmp_path / "study-model" / "run.json").read_text())
        assert record["config"]["epochs"] == 5 and record["config"]["schedule"] == "constant"
        assert record["split"]["train"] + record["split"]["validation"] == 600  # the zip's whole train split
        assert "searches no dense heads" in markdown and "the study's chosen topology" in markdown
        transformer = result["transformer"]
        assert transformer["name"] == "vit-p8-d1-w32" and transformer["test"]["n"] == 200
        compared = transformer["compare"]
        assert [Path(m["run"]).name for m in compared["models"]] == ["study-model", "vit"]
        assert compared["images"] == 200 and "a vision transformer beside the headline model" in markdown
        assert "](compare/side_by_side.png)" in markdown
    else:
        assert result["transformer"] is None and not (tmp_path / "vit").exists()


def test_reproduce_restores_the_thread_count_when_the_search_fails(learnable_zip, tmp_path, monkeypatch):
    """The study's model trains on one thread beside the search; a failed search gives the caller its threads back."""
    import torch

    from cifake.search import grid
    from cifake.workflows import reproduce as module

    monkeypatch.setitem(grid.PROFILES, "quick", grid.Profile(replace(TINY, dense_units=()), BUDGET, True))

    def failing_search(*args, **kwargs):
        assert torch.get_num_threads() == 1  # the study's model holds one thread meanwhile
        raise RuntimeError("a trial failed")

    monkeypatch.setattr(module, "run_search", failing_search)
    threads = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="a trial failed"):
        module.reproduce(load_dataset(learnable_zip, progress=False), tmp_path, "quick", use_ray=False, progress=False)
    for thread in threading.enumerate():  # let the model's thread end here, not in the interpreter's shutdown
        if thread.name == "cifake-study-model":
            thread.join()
    assert torch.get_num_threads() == threads


def test_search_options_stages_and_status_from_the_command_line(learnable_zip, tmp_path, monkeypatch):
    """The profile's grid and budget can be overridden one option at a time; --stages 1 stops after the extractors
    and a later --stages 2 run adds the heads (here through a Ray instance named by --ray-address)."""
    pytest.importorskip("ray", reason="ray is in the dev extra; CI installs it")
    from cifake.search import grid

    space = SearchSpace(filters=(4,), conv_layers=(1,), dense_units=(8,), dense_layers=(1,))
    monkeypatch.setitem(grid.PROFILES, "quick", grid.Profile(space, Budget.of(epochs=2, limit_per_label=50)))
    out = tmp_path / "search"
    overrides = ["--filters", "4,8", "--conv-layers", "1", "--dense-units", "8", "--dense-layers", "1", "--epochs", "2",
                 "--patience", "2", "--limit", "200", "--optimizer", "adamw", "--lr", "0.002"]
    printed = cli("search", "--data", learnable_zip, "--out", out, "--profile", "quick", *overrides, "--stages", "1",
                  "--no-ray", "-q").stdout
    assert "Best extractor" in printed
    status = json.loads(cli("search-status", out, "--json").stdout)
    states = {t["name"]: t["state"] for t in status["trials"]}
    assert status["total"] == 3 and sorted(states.values()) == ["finished", "finished", "waiting"]
    assert states["f4-c1-dnone"] == states["f8-c1-dnone"] == "finished"  # the head waits for a --stages 2 run
    settings = json.loads((out / "search.json").read_text())["budget"]
    assert settings["train"]["epochs"] == 2 and settings["train"]["patience"] == 2
    assert settings["split"]["limit_per_label"] == 200
    trial = json.loads((out / "trials" / "f4-c1-dnone" / "run.json").read_text())  # every training setting reaches
    assert trial["config"]["optimizer"] == "adamw" and trial["config"]["learning_rate"] == 0.002  # each trial
    cli("search", "--data", learnable_zip, "--out", out, "--profile", "quick", *overrides, "--stages", "2",
        "--ray-address", "local", "-q")
    status = json.loads(cli("search-status", out, "--json").stdout)
    assert status["total"] == 3 and [t["state"] for t in status["trials"]] == ["finished"] * 3
    assert status["wall_seconds"] > 0
    table = cli("search-status", out).stdout
    assert "3 of 3 trials finished" in table
    unknown = cli("search", "--data", learnable_zip, "--out", tmp_path / "x", "--profile", "huge", check=False)
    assert unknown.returncode == 2 and "'huge' is not one of 'quick', 'paper'" in flat(unknown.stderr)
