"""The report of `cifake study`: study.md and a self-contained study.html, from study.json's content."""

from __future__ import annotations

from pathlib import Path

from cifake.report import Report
from cifake.runfolder import RunFolder


def study_report(result: dict, folder: Path) -> Report:
    size, mode = result["size"], result["preprocess"]
    report = Report(f"Study of {Path(result['source']).name} at {size} px ({mode})")
    model = result["model"]
    test = result["test"]
    report.paragraph(
        f"The study's method on `{result['source']}`, every image brought to {size} x {size} pixels by `{mode}` "
        f"(profile `{result['profile']}`). The chosen model, `{model['name']}`, trained for {model['epochs_run']} "
        f"epochs (best on validation: epoch {model['best_epoch']}), scores test accuracy {test['accuracy']:.4f}, "
        f"ROC-AUC {_figure(test['roc_auc'])} on {test['n']:,} test images. The whole study took "
        f"{result['seconds']:,.0f} s of wall time.")
    _data_section(report, result)
    _search_section(report, result)
    _test_section(report, result, folder)
    _leave_one_out_section(report, result)
    _crop_section(report, result)
    _explain_section(report, result, folder)
    _robustness_section(report, result, folder)
    return report


def _data_section(report: Report, result: dict) -> None:
    report.heading("Data")
    rows = [[split, label, name, count] for split, labels in result["sources"].items()
            for label, counts in labels.items() for name, count in counts.items()]
    report.table(["split", "label", "source", "images"], rows)
    leaked = result["audit"]["leaked"]
    report.paragraph(f"Audit: {sum(result['audit']['pairs'].values()):,} byte-identical pairs; {leaked:,} test images "
                     "pixel-identical to a training image (audit/audit.html).")


def _search_section(report: Report, result: dict) -> None:
    report.heading("Search")
    report.paragraph("Every trial trains with one short recipe on the same split; the chosen topology is the one of "
                     "lowest validation loss. Test accuracy is shown, never used to choose.")
    rows = [[t["name"], f"{t['parameters']:,}", t["epochs_run"], t["val_loss"], t["val_accuracy"], t["test_accuracy"],
             f"{t['seconds']:,.0f}"] for t in sorted(result["trials"], key=lambda t: t["val_loss"])]
    report.table(["trial", "parameters", "epochs", "val loss", "val acc", "test acc", "seconds"], rows)


def _test_section(report: Report, result: dict, folder: Path) -> None:
    test = result["test"]
    report.heading("The chosen model on test")
    shown = ("accuracy", "loss", "precision", "recall", "f1", "roc_auc", "fake_recall")
    report.table(["n", *shown], [[test["n"], *(test[k] for k in shown)]])
    if test.get("per_source"):
        report.paragraph("Per source: accuracy is the share given its own label; ROC-AUC tells the source from every "
                         "test image of the other label.")
        report.table(["source", "label", "n", "accuracy", "mean P(REAL)", "ROC-AUC"],
                     [[name, row["label"], row["n"], row["accuracy"], row["mean_prob_real"], row["roc_auc"]]
                      for name, row in test["per_source"].items()])
    stem = folder / "model" / RunFolder.evaluation_stem("test")
    report.image(stem.with_name(f"{stem.name}_roc.png"), "ROC curve on the test images (REAL positive).")


def _leave_one_out_section(report: Report, result: dict) -> None:
    rows = result["leave_one_source_out"]
    if not rows:
        return
    report.heading("Leave one source out")
    report.paragraph("For each FAKE source, the chosen topology trained with the same recipe on every other source, "
                     "then scored on the held-out source's test images: how well it finds a generator it never saw.")
    report.table(["held-out source", "n", "accuracy (trained with it)", "accuracy (held out)",
                  "ROC-AUC (with)", "ROC-AUC (held out)"],
                 [[r["source"], r["n"], r["accuracy_trained_with"], r["accuracy_held_out"], r["roc_auc_trained_with"],
                   r["roc_auc_held_out"]] for r in rows])


def _crop_section(report: Report, result: dict) -> None:
    crops = result.get("crops")
    if not crops:
        return
    report.heading("One crop or five")
    report.paragraph("Evaluation scores the central crop of each image's stored window; prediction averages the "
                     "logits of five crops (the centre and the four corners of the window).")
    report.table(["scored on", "accuracy", "ROC-AUC", "loss"],
                 [[name.replace("_", " "), row["accuracy"], row["roc_auc"], row["loss"]]
                  for name, row in crops.items()])


def _explain_section(report: Report, result: dict, folder: Path) -> None:
    explained = result["explain"]
    shares = explained["centre_share"]
    report.heading("Grad-CAM: where the model looks")
    per_source = shares.get("per_source") or {}
    by_source = "; ".join(f"{name} {_figure(value)}" for name, value in per_source.items())
    size = result["size"]
    report.paragraph(
        f"{explained['images']:,} test images. Share of map mass in the central {size // 2} x {size // 2} square (an "
        f"even spread gives 0.25): REAL {_figure(shares['REAL']['all'])}, FAKE {_figure(shares['FAKE']['all'])}"
        + (f"; per source: {by_source}" if by_source else "") + ". Deletion AUC "
        f"{explained['faithfulness']['deletion_map']['auc']:.3f} (random order "
        f"{explained['faithfulness']['deletion_random']['auc']:.3f}); randomisation check: mean Spearman rho "
        f"{explained['randomisation']['full']['mean']:.3f}. The full analysis: explain/explain.html.")
    report.image(folder / "explain" / "gradcam_grid.png", "Grad-CAM examples.")
    report.image(folder / "explain" / "mean_maps.png", "Mean Grad-CAM of REAL and of FAKE images.")


def _robustness_section(report: Report, result: dict, folder: Path) -> None:
    rows = result["robustness"]["rows"]
    report.heading("Robustness")
    report.paragraph(f"Each condition applied to {result['robustness']['images']:,} test images.")
    report.table(["condition", "accuracy", "ROC-AUC", "REAL recall", "FAKE recall"],
                 [[r["condition"], r["accuracy"], r["roc_auc"], r["recall_real"], r["recall_fake"]] for r in rows])
    report.image(folder / "robustness" / "robustness.png", "Accuracy per condition.")


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
