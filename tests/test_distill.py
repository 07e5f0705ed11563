"""Distillation: the targets mix each label with a teacher's calibrated probability, and training pulls towards them."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import cli
from safetensors.numpy import load_file

from cifake.data import load_dataset
from cifake.models import Topology, create_model, load_model, save_model
from cifake.models.export import weights_digest
from cifake.models.inference import predict_logits, sigmoid
from cifake.training.checkpoint import checkpoint_progress
from cifake.training.config import TrainConfig
from cifake.training.distill import distilled_targets
from cifake.training.split import Split
from cifake.workflows.experiment import train_run

SPLIT, SEED = Split(0.2, 100), 3
TINY = Topology(4, 1, ())


@pytest.fixture
def data(learnable_zip, tmp_path):
    return load_dataset(learnable_zip, cache_root=tmp_path / "cache", progress=False)


def _silent_teacher(folder):
    """A teacher with every weight zero: logit 0, P(REAL) = 0.5, for every image."""
    model = create_model(TINY)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
    record = {"split": SPLIT.to_dict(), "config": {"seed": SEED}}
    return save_model(model, folder, record)


def test_targets_mix_each_label_with_the_teachers_probability_at_its_calibrated_temperature(data, tmp_path):
    teacher = tmp_path / "teacher"
    train_run(data, teacher, TINY, TrainConfig(epochs=2, seed=SEED, learning_rate=0.01), SPLIT, progress=False,
              plots=False)
    config = json.loads((teacher / "config.json").read_text())
    (teacher / "config.json").write_text(json.dumps(config | {"calibration": {"temperature": 2.0}}))
    train = SPLIT.carve(data, SEED)[0].in_memory()

    targets, record = distilled_targets(train, TrainConfig(teacher=str(teacher), distill=0.25, seed=SEED),
                                        (0.2, 100, SEED), torch.device("cpu"))

    logits = predict_logits(load_model(teacher)[0], train.images)
    assert np.abs(logits).max() > 0.1  # a teacher with opinions, so the temperature and the share both show
    np.testing.assert_allclose(targets, 0.75 * train.labels + 0.25 * sigmoid(logits / 2.0), atol=1e-6)
    assert record["temperature"] == 2.0 and record["weights_sha256"] == weights_digest(teacher)
    assert record["agreement_with_labels"] == pytest.approx(float(((logits > 0) == (train.labels == 1)).mean()))


def test_a_student_of_a_teacher_without_an_opinion_learns_to_have_none(data, tmp_path):
    """Taught only by a teacher that says 0.5 everywhere, the student's logits stay at 0; taught by the labels, the
    same student learns them. Distillation that ignored the teacher would make the two alike."""
    teacher = _silent_teacher(tmp_path / "silent")
    taught = {}
    for name, settings in (("teacher", {"teacher": str(teacher), "distill": 1.0}), ("labels", {})):
        config = TrainConfig(epochs=4, seed=SEED, learning_rate=0.01, patience=4, **settings)
        record = train_run(data, tmp_path / name, TINY, config, SPLIT, progress=False, plots=False)
        logits = predict_logits(load_model(tmp_path / name)[0], data["test"].images)
        taught[name] = (record, np.abs(logits).mean())
    record, spread = taught["teacher"]
    assert spread < 0.05 and record["validation"]["loss"] == pytest.approx(np.log(2), abs=0.01)
    assert record["teacher"]["weights_sha256"] == weights_digest(teacher)
    assert record["config"]["teacher"] == str(teacher) and record["config"]["distill"] == 1.0
    record, spread = taught["labels"]
    assert spread > 0.5 and record["validation"]["accuracy"] > 0.8 and "teacher" not in record


def test_a_teacher_that_trained_on_the_students_validation_images_is_refused(data, tmp_path):
    teacher = _silent_teacher(tmp_path / "silent")
    config = TrainConfig(epochs=1, seed=SEED, teacher=str(teacher), distill=0.5)
    with pytest.raises(ValueError, match=r"held out \(0.2, 100, 3\).*the student \(0.1, 100, 3\); a teacher must"):
        train_run(data, tmp_path / "student", TINY, config, Split(0.1, 100), progress=False, plots=False)
    save_model(create_model(TINY), tmp_path / "unrecorded")
    config = TrainConfig(epochs=1, seed=SEED, teacher=str(tmp_path / "unrecorded"), distill=0.5)
    with pytest.raises(ValueError, match="does not record which images it held out"):
        train_run(data, tmp_path / "student", TINY, config, SPLIT, progress=False, plots=False)


@pytest.mark.parametrize("settings", [{"teacher": "bundled"}, {"distill": 0.5}])
def test_teacher_and_distill_share_go_together(settings):
    with pytest.raises(ValueError, match="teacher and distill go together"):
        TrainConfig(**settings)


def test_a_distilled_run_resumed_from_the_command_line_ends_where_an_unbroken_one_does(data, learnable_zip, tmp_path):
    """The teacher's targets are computed again on resume, to the bit; extending the epochs continues the run, but
    not once the teacher's weights have changed under the same folder."""
    teacher = tmp_path / "teacher"
    train_run(data, teacher, TINY, TrainConfig(epochs=1, seed=SEED, learning_rate=0.01), SPLIT, progress=False,
              plots=False)
    common = ["train", "--data", learnable_zip, "--filters", "4", "--conv-layers", "1", "--dense", "none",
              "--limit", "100", "--val-fraction", "0.2", "--seed", str(SEED), "--lr", "0.01", "--patience", "5",
              "--teacher", teacher, "--distill", "0.5", "-q"]
    cli(*common, "--out", tmp_path / "whole", "--epochs", "2")
    cli(*common, "--out", tmp_path / "broken", "--epochs", "1")
    cli(*common, "--out", tmp_path / "broken", "--epochs", "2", "--resume")
    whole, resumed = (load_file(tmp_path / name / "model.safetensors") for name in ("whole", "broken"))
    assert all(np.array_equal(whole[k], resumed[k]) for k in whole)
    record = json.loads((tmp_path / "broken" / "run.json").read_text())
    assert record["resumed_from_epoch"] == 1 and record["teacher"]["folder"] == str(teacher)
    assert record["teacher"]["targets_sha256"] == json.loads((tmp_path / "whole" / "run.json").read_text())[
        "teacher"]["targets_sha256"] != "labels"

    train_run(data, tmp_path / "other", TINY, TrainConfig(epochs=1, seed=SEED, learning_rate=0.02), SPLIT,
              progress=False, plots=False)
    shutil.copy(tmp_path / "other" / "model.safetensors", teacher)  # the same folder and split, other weights
    refused = cli(*common, "--out", tmp_path / "broken", "--epochs", "3", "--resume", check=False)
    assert refused.returncode != 0 and "would continue towards targets" in refused.stderr
    assert len(checkpoint_progress(tmp_path / "broken").history) == 2  # the refused resume trained nothing


def test_a_resume_towards_other_targets_names_both_and_what_to_do(data, tmp_path):
    """The same teacher folder with other weights gives other targets: the refusal names both (by the start of
    their digests) and the way out. `fit`, which takes targets without a teacher setting, is refused between the
    labels and targets alike."""
    from cifake.training.loop import fit

    teacher = tmp_path / "teacher"
    digests = []
    for rate in (0.01, 0.02):
        train_run(data, tmp_path / f"teacher-{rate}", TINY, TrainConfig(epochs=1, seed=SEED, learning_rate=rate),
                  SPLIT, progress=False, plots=False)
        shutil.copytree(tmp_path / f"teacher-{rate}", teacher, dirs_exist_ok=True)  # the same folder, new weights
        config = TrainConfig(epochs=1, seed=SEED, learning_rate=0.01, teacher=str(teacher), distill=0.5)
        record = train_run(data, tmp_path / f"student-{rate}", TINY, config, SPLIT, progress=False, plots=False)
        digests.append(record["teacher"]["targets_sha256"])
    assert digests[0] != digests[1]
    with pytest.raises(ValueError) as refused:  # student-0.01 trained towards the first teacher's targets
        train_run(data, tmp_path / "student-0.01", TINY, replace(config, epochs=2), SPLIT, resume=True,
                  progress=False, plots=False)
    way_out = ("; resume it with the teacher it began with (its record names the teacher's weights), or start a new "
               "run in another --out")
    assert str(refused.value) == (f"{tmp_path / 'student-0.01' / 'checkpoint.safetensors'}: this run trained "
                                  f"towards targets {digests[0][:12]}... and would continue towards targets "
                                  f"{digests[1][:12]}...{way_out}")
    train, val = data["train"].limit(20).in_memory(), data["test"].limit(10).in_memory()
    soft = np.full(len(train), 0.5, np.float32)
    fit(create_model(TINY), train, val, TrainConfig(epochs=1), tmp_path / "fit", progress=False)
    checkpoint = re.escape(str(tmp_path / "fit" / "checkpoint.safetensors"))
    with pytest.raises(ValueError, match=rf"^{checkpoint}: this run trained towards the labels and would continue "
                                         r"towards targets [0-9a-f]{12}\.\.\.; resume"):
        fit(create_model(TINY), train, val, TrainConfig(epochs=2), tmp_path / "fit", resume=True, progress=False,
            targets=soft)
    resumed = fit(create_model(TINY), train, val, TrainConfig(epochs=2), tmp_path / "fit", resume=True,
                  progress=False)  # towards the labels again: it continues
    assert resumed.resumed_from_epoch == 1 and len(resumed.history) == 2
