"""`cifake reproduce`: the study's whole experiment as one command, reported next to the paper's tables.

Data audit -> two-stage search (the quick profile: the extractors, and beside them the study's model on the whole
train split) -> the headline model (the search's lowest validation loss, or the study's model) on the official
test split with and without the leaked duplicates -> Grad-CAM analysis -> report.md + a self-contained report.html.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import torch

from cifake.cluster import check_reachable
from cifake.data import CifakeData
from cifake.data.audit import audit, write_audit
from cifake.files import write_json
from cifake.models import resolve_topology
from cifake.report import Report
from cifake.runfolder import RunFolder
from cifake.search.grid import PROFILES, Budget
from cifake.search.status import search_status
from cifake.workflows.experiment import evaluate_run, train_run
from cifake.workflows.explain_report import explain_dataset
from cifake.workflows.search import run_search
from cifake.search.tables import (METRICS, TITLES, paper_best_accuracy, stage1_rows, stage2_rows, trial_rows,
                                  within, write_tables)
from cifake.training.config import TrainConfig, read_recipe
from cifake.workflows.explain_compare import compare_explanations


def reproduce(data: CifakeData, out: str | os.PathLike, profile: str = "quick", *, use_ray: bool = True,
              ray_address: str | None = None, progress: bool = True, device: str = "auto",
              gpus_per_trial: float | None = None, vit_recipe: str | os.PathLike | None = None) -> dict:
    """Audit, search, evaluate the headline model with and without leaks, explain it, report (report.md/.html).
    The headline model is the search's best, or with the profile's `study_model` the study's topology trained on the
    whole train split. Trials run as `run_search` places them (device, GPUs per trial); the rest runs on `device`.
    With `vit_recipe`, a vision transformer trained by that recipe too, and its maps beside the headline model's."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    chosen = PROFILES[profile]
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if use_ray and ray_address not in (None, "auto", "local"):  # before the study model's thread starts: a
        check_reachable(ray_address)  # process that exits while it runs torch code aborts instead of saying why
    audit_report = audit(data)
    write_audit(audit_report, folder / "audit")
    study = _StudyModel(data, folder / "study-model", device) if chosen.study_model else None
    try:
        summary = run_search(data, folder / "search", chosen.space, chosen.budget, use_ray=use_ray,
                             ray_address=ray_address, progress=progress, device=device, gpus_per_trial=gpus_per_trial)
    except BaseException:
        if study:  # its daemon thread ends with the process; a rerun resumes it from its last epoch
            torch.set_num_threads(study.threads)
        raise
    model_dir = study.result() if study else folder / "search" / "trials" / summary["best"]
    evaluations = {leaked: evaluate_run(model_dir, data, "test", leaked, folder / "best", device)
                   for leaked in (False, True)}
    sample = 1000 if profile == "paper" else 250
    # the study's CNN maps 2,000 images in seconds: its checks cover the whole sample, as the study's figures do
    explained = explain_dataset(model_dir, data, folder / "explain", "test", sample_per_label=sample, device=device,
                                checks=2 * sample)
    transformer = _transformer(data, folder, model_dir, vit_recipe, device, progress, sample) if vit_recipe else None
    tables = write_tables(summary, folder / "tables")
    status = search_status(folder / "search")
    record = RunFolder(model_dir).read_record()
    result = {"profile": profile, "scope": chosen.scope, "best": summary["best"],
              "best_extractor": summary["best_extractor"],
              "model": {"name": record["name"], "source": "study" if chosen.study_model else "search",
                        "epochs_run": record["epochs_run"], "config": record["config"]},
              "test": evaluations[False], "test_without_leaked": evaluations[True],
              "within_1_point": within(summary["stage1"], 1.0), "within_2_points": within(summary["stage1"], 2.0),
              "seconds": round(time.perf_counter() - started, 1), "search_wall_seconds": round(status.wall_seconds, 1),
              "device": evaluations[False]["device"], "transformer": transformer}
    write_json(folder / "reproduce.json", result, indent=1)
    _report(result, summary, audit_report, explained, folder, tables).write(folder, "report")
    return result


def _transformer(data: CifakeData, folder: Path, model_dir: Path, recipe: str | os.PathLike, device: str,
                 progress: bool, sample: int) -> dict:
    """A vision transformer trained by `recipe` (resumed, or kept once finished), its test metrics, and every
    method's maps of it beside the headline model's Grad-CAM and Integrated Gradients (folder/compare)."""
    topology, settings = read_recipe(recipe)
    vit_dir = folder / "vit"
    if not RunFolder(vit_dir).is_finished():
        config = TrainConfig.from_dict(settings | {"device": device})
        train_run(data, vit_dir, resolve_topology(topology or "vit"), config, resume=True, progress=progress)
    record = RunFolder(vit_dir).read_record()  # its test metrics, as train_run scored them
    compared = compare_explanations([model_dir, vit_dir], data, folder / "compare", "test", sample, device=device)
    return {"name": record["name"], "test": record["test"], "compare": compared}


class _StudyModel:
    """The study's chosen topology trained on the whole train split with the study's recipe (TrainConfig's defaults),
    on one thread beside the search: the search's trials keep both cores busy, and the three threads finish
    sooner together than the search and then this model one after the other (the quick profile's 10 minutes).

    A daemon thread, so that Ctrl-C during the search is not held up by it; its epoch checkpoints make a rerun
    resume it, and a finished one is kept.
    """

    def __init__(self, data: CifakeData, out: Path, device: str):
        self.out, self.error = out, None
        self.threads = torch.get_num_threads()
        torch.set_num_threads(1)  # process-wide: the search's driver loop computes nothing meanwhile
        self.thread = threading.Thread(target=self._train, args=(data, device), name="cifake-study-model", daemon=True)
        self.thread.start()

    def _train(self, data: CifakeData, device: str) -> None:
        try:
            if not RunFolder(self.out).is_finished():
                train_run(data, self.out, resolve_topology("paper"), TrainConfig(device=device), resume=True,
                          progress=False)
        except BaseException as error:  # re-raised in the caller's thread by result()
            self.error = error

    def result(self) -> Path:
        """Wait for the model; its run folder. Restores the thread count for what follows."""
        self.thread.join()
        torch.set_num_threads(self.threads)
        if self.error:
            raise self.error
        return self.out


def _report(result: dict, summary: dict, audit_report: dict, explained: dict, folder: Path, tables: dict) -> Report:
    report = Report("CIFAKE reproduction: the study's search, next to the paper")
    report.paragraph(_setting(result, summary) + " " + result["scope"])
    report.heading("Data audit")
    pairs = audit_report["bytes"]["pairs"]
    report.table(["byte-identical pairs", "count"], [[k, v] for k, v in pairs.items()])
    leaked = len(audit_report.get("leaked_test_pixels", []))
    report.paragraph(f"Leaked test images (pixel-identical to a train image): {leaked:,}.")
    report.heading("Stage 1: feature extractors (the paper's Tables 1-5)")
    (one, compared), (two, _) = result["within_1_point"], result["within_2_points"]
    report.paragraph(f"Each cell: the paper's value / ours / our minus the paper's. Test accuracy within 1.0 point of "
                     f"the paper's in {one} of {compared} cells, within 2.0 points in {two}.")
    for metric in METRICS:
        report.heading(TITLES[metric].capitalize(), 3)
        report.table(*stage1_rows(summary["stage1"], metric))
        report.image(folder / "tables" / f"stage1_{metric}.png", f"Stage 1 test {TITLES[metric]} (paper in brackets).")
    report.heading("Stage 2: dense layers on the best extractor")
    if not summary["stage2"]:
        report.paragraph("This profile searches no dense heads; `--profile paper` searches all 24.")
    for metric in METRICS if summary["stage2"] else ():
        report.heading(TITLES[metric].capitalize(), 3)
        report.table(*stage2_rows(summary["stage2"], metric))
        report.image(folder / "tables" / f"stage2_{metric}.png", f"Stage 2 test {TITLES[metric]}.")
    report.heading("Every trial")
    report.paragraph("Minutes are wall time including validation after each epoch, summed over the runs that "
                     "resumed the trial; trials ran side by side, so they share the machine.")
    report.table(*trial_rows(summary))
    report.image(folder / "tables" / "trial_cost.png", "Minutes per epoch against parameters.")
    _best_model_sections(report, result, explained, folder)
    if result["transformer"]:
        _transformer_section(report, result["transformer"], folder)
    return report


OPTIMIZER_NAMES = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD with Nesterov momentum"}


def _setting(result: dict, summary: dict) -> str:
    budget = Budget.from_dict(summary["budget"])
    train, split = budget.train, budget.split
    extractor = f"the extractor of lowest validation loss (`{summary['best_extractor']}`)"
    heads = (f"then {len(summary['stage2'])} dense heads on {extractor}" if summary["stage2"]
             else f"and no dense heads; {extractor} would carry them")
    recipe = ("a constant learning rate of" if train.schedule == "constant"
              else f"a {train.schedule} learning rate peaking at")
    return (f"Profile `{result['profile']}`: {len(summary['stage1'])} feature extractors, {heads}. Each trial: at most "
            f"{train.epochs} epochs, "
            f"early stopping on validation loss (patience {train.patience}), batch {train.batch_size}, "
            f"{OPTIMIZER_NAMES[train.optimizer]} with {recipe} {train.learning_rate:g}, seed {train.seed}, "
            + (f"{split.limit_per_label:,} images per label" if split.limit_per_label else "the whole train split")
            + f" ({split.val_fraction:.0%} of it for validation). Models are chosen on validation only; the "
            f"tables show test metrics, as the paper's do. This run of the command took {result['seconds']:,.0f} s "
            "of wall time. " + _search_time(result, summary))


def _best_model_sections(report: Report, result: dict, explained: dict, folder: Path) -> None:
    report.heading("The headline model on the official test split")
    rows = []
    shown = ("accuracy", "loss", "precision", "recall", "f1", "roc_auc")
    for label, metrics in (("all test images", result["test"]),
                           ("without leaked duplicates", result["test_without_leaked"])):
        rows.append([label, f"{metrics['n']:,}", *(metrics[k] for k in shown)])
    paper_best, filters, conv_layers = paper_best_accuracy()
    accuracy = 100 * result["test"]["accuracy"]
    model = result["model"]
    if model["source"] == "study":
        config = model["config"]
        which = (f"`{model['name']}`, the study's chosen topology, trained on the whole train split with the study's "
                 f"recipe (at most {config['epochs']} epochs, patience {config['patience']}, batch "
                 f"{config['batch_size']}, Adam at {config['learning_rate']:g}; it ran {model['epochs_run']})")
    else:
        which = f"`{model['name']}`, the trial of lowest validation loss over both stages"
    report.paragraph(f"{which}: test accuracy {accuracy:.2f} %, {accuracy - paper_best:+.2f} points from the study's "
                     f"best reported accuracy, {paper_best:.2f} % (its Tables 1-5: {filters} filters, {conv_layers} "
                     "conv layers).")
    report.table(["", "n", "accuracy", "loss", "precision", "recall", "F1", "ROC-AUC"], rows)
    stem = folder / "best" / RunFolder.evaluation_stem("test")
    report.image(stem.with_name(f"{stem.name}_confusion_matrix.png"), "Confusion matrix on the test split.")
    report.image(stem.with_name(f"{stem.name}_per_class.png"), "Accuracy per CIFAR-10 class, REAL and FAKE.")
    report.heading("Grad-CAM: where the headline model looks")
    shares = explained["centre_share"]
    faith = explained["faithfulness"]
    report.paragraph(
        f"{explained['images']:,} test images. Share of map mass in the centre 16x16 square (an even spread gives "
        f"0.25): REAL {shares['REAL']['all']:.3f}, FAKE {shares['FAKE']['all']:.3f}. Deletion AUC "
        f"{faith['deletion_map']['auc']:.3f} (random order {faith['deletion_random']['auc']:.3f}); insertion AUC "
        f"{faith['insertion_map']['auc']:.3f} (random {faith['insertion_random']['auc']:.3f}); randomisation check: "
        "mean Spearman rho "
        f"{explained['randomisation']['full']['mean']:.3f}. The full analysis is in explain/explain.html.")
    report.image(folder / "explain" / "gradcam_grid.png", "Grad-CAM per class, REAL and FAKE examples.")
    report.image(folder / "explain" / "mean_maps.png", "Mean Grad-CAM of REAL and of FAKE images.")


def _transformer_section(report: Report, transformer: dict, folder: Path) -> None:
    report.heading("Attention: a vision transformer beside the headline model")
    test = transformer["test"]
    report.paragraph(f"`{transformer['name']}` trained from scratch: test accuracy {100 * test['accuracy']:.2f} %, "
                     f"ROC-AUC {test['roc_auc']:.4f} ({test['n']:,} images). Its maps, by every method, beside the "
                     "headline model's on the same images; the full comparison is in compare/compare.html.")
    report.image(folder / "compare" / "side_by_side.png", "The same test images under each model's maps.")
    report.table(["map", "against", "mean rho"],
                 [[r["a"], r["b"], r["mean"]] for r in transformer["compare"]["agreement"]])


def _search_time(result: dict, summary: dict) -> str:
    measured = (f"Over every run of the search, its epochs ran for {result['search_wall_seconds']:,.0f} s of wall "
                "time (the union of their clock intervals, several trials at once); "
                if result["search_wall_seconds"] else "")
    trials = f"the trials' own times add up to {summary['trial_seconds']:,.0f} s."
    return measured + trials if measured else trials.capitalize()
