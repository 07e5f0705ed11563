import numpy as np
import pytest
import torch

from cifake.data import load_dataset, train_val_split
from cifake.metrics import compute_metrics
from cifake.models import build_model
from cifake.models.inference import predict_logits
from cifake.training import CHECKPOINT, TrainConfig, fit, seed_everything


@pytest.fixture(scope="module")
def splits(learnable_zip, tmp_path_factory):
    data = load_dataset(learnable_zip, cache_root=tmp_path_factory.mktemp("c"), progress=False)
    train, val = train_val_split(data["train"].in_memory(), 0.2, seed=1)
    return train, val, data["test"]


def _fit(splits, epochs=3, run_dir=None, resume=False, **overrides):
    seed_everything(1)
    model = build_model("paper")
    config = TrainConfig(epochs=epochs, batch_size=32, patience=5, **overrides)
    result = fit(model, splits[0], splits[1], config, run_dir, resume=resume, progress=False)
    return model, result


def test_training_learns_the_synthetic_task(splits):
    model, result = _fit(splits)
    test = splits[2]
    metrics = compute_metrics(predict_logits(model, test.images), test.labels)
    assert metrics["accuracy"] > 0.9
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert set(result.history[0]) >= {"epoch", "train_loss", "val_loss", "val_accuracy", "images_per_second"}


def test_same_seed_gives_identical_results(splits):
    model_a, result_a = _fit(splits, epochs=2)
    model_b, result_b = _fit(splits, epochs=2)
    timing = ("seconds", "wall_seconds", "images_per_second", "ended_at")
    drop = lambda h: [{k: v for k, v in row.items() if k not in timing} for row in h]
    assert drop(result_a.history) == drop(result_b.history)
    for a, b in zip(model_a.state_dict().values(), model_b.state_dict().values()):
        assert torch.equal(a, b)


def test_fp32_nchw_path_also_trains(splits):
    _, result = _fit(splits, epochs=1, bf16=False, channels_last=False)
    assert result.history[0]["val_accuracy"] > 0.6


def test_resume_continues_exactly_where_the_checkpoint_left(splits, tmp_path):
    whole, whole_result = _fit(splits, epochs=3)
    _fit(splits, epochs=1, run_dir=tmp_path)  # "killed" after its first epoch
    assert (tmp_path / CHECKPOINT).is_file()
    resumed, resumed_result = _fit(splits, epochs=3, run_dir=tmp_path, resume=True)
    assert resumed_result.resumed_from_epoch == 1 and len(resumed_result.history) == 3
    assert [r["val_loss"] for r in resumed_result.history] == [r["val_loss"] for r in whole_result.history]
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_a_finished_run_can_be_extended_with_more_epochs_and_patience(splits, tmp_path):
    train, val, _ = splits
    flipped = type(val)(val.images, 1 - val.labels, val.classes, val.names, val.sha256)  # stops early at patience 1
    def run(epochs, patience):
        seed_everything(1)
        return fit(build_model("paper"), train, flipped, TrainConfig(epochs=epochs, patience=patience), tmp_path,
                   resume=True, progress=False)
    first = run(epochs=4, patience=1)
    assert first.stopped_early and len(first.history) == 2
    extended = run(epochs=4, patience=3)  # the larger patience lets the stopped run go on from epoch 3
    assert extended.resumed_from_epoch == 2 and len(extended.history) == 4 and not extended.stopped_early


def test_resume_refuses_changed_settings(splits, tmp_path):
    _fit(splits, epochs=1, run_dir=tmp_path)
    with pytest.raises(ValueError, match="batch_size"):
        seed_everything(1)
        fit(build_model("paper"), splits[0], splits[1], TrainConfig(epochs=2, batch_size=64), tmp_path, resume=True,
            progress=False)
    with pytest.raises(ValueError, match="fused_adam"):
        _fit(splits, epochs=2, run_dir=tmp_path, resume=True, fused_adam=False)


def test_early_stopping_restores_the_best_weights(splits):
    train, val, _ = splits
    flipped = type(val)(val.images, 1 - val.labels, val.classes, val.names, val.sha256)  # learning hurts it
    seed_everything(1)
    model = build_model("paper")
    result = fit(model, train, flipped, TrainConfig(epochs=10, patience=2), progress=False)
    assert result.stopped_early and len(result.history) < 10
    best = min(result.history, key=lambda row: row["val_loss"])
    assert result.best_epoch == best["epoch"] and len(result.history) == best["epoch"] + 2
    logits = torch.from_numpy(predict_logits(model, flipped.images))
    targets = torch.from_numpy(flipped.labels.astype(np.float32))
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
    assert loss.item() == pytest.approx(best["val_loss"], rel=1e-5)


def test_onecycle_rises_then_falls_to_zero():
    from cifake.training.trainer import _learning_rate

    config = TrainConfig(epochs=4, learning_rate=0.01, schedule="onecycle", warmup_epochs=1)
    rates = [_learning_rate(config, step, 10) for step in range(40)]
    assert rates[0] == pytest.approx(0.001) and rates[9] == pytest.approx(0.01) and max(rates) == pytest.approx(0.01)
    assert all(a >= b for a, b in zip(rates[9:], rates[10:])) and rates[-1] == pytest.approx(0.01 / 30)
    assert _learning_rate(TrainConfig(learning_rate=0.01), 7, 10) == 0.01


class _Killed(Exception):
    pass


def test_full_recipe_resumes_exactly(splits, tmp_path, monkeypatch):
    """SGD, one-cycle, label smoothing, weight averaging, flips and degradations: a run killed after its first
    epoch and resumed ends exactly where an unbroken run does."""
    from cifake.models import ResNetTopology
    from cifake.training import trainer

    recipe = TrainConfig(epochs=3, batch_size=32, patience=5, optimizer="sgd", learning_rate=0.02, weight_decay=5e-4,
                         schedule="onecycle", warmup_epochs=0.5, label_smoothing=0.1, ema=0.9, flip=True, degrade=0.2)

    def run(run_dir=None, resume=False, config=recipe):
        seed_everything(1)
        model = build_model(ResNetTopology(widths=(8, 16), blocks=1))
        return model, fit(model, splits[0], splits[1], config, run_dir, resume=resume, progress=False)

    whole, whole_result = run()
    assert whole_result.history[-1]["val_accuracy"] > 0.8
    save = trainer._save_checkpoint

    def save_then_die(*args, **kwargs):
        save(*args, **kwargs)
        raise _Killed

    monkeypatch.setattr(trainer, "_save_checkpoint", save_then_die)
    with pytest.raises(_Killed):
        run(tmp_path)
    monkeypatch.setattr(trainer, "_save_checkpoint", save)
    resumed, resumed_result = run(tmp_path, resume=True)
    assert resumed_result.resumed_from_epoch == 1
    assert [r["val_loss"] for r in resumed_result.history] == [r["val_loss"] for r in whole_result.history]
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="ema"):
        run(tmp_path, resume=True, config=TrainConfig(**{**recipe.__dict__, "ema": 0.5}))
