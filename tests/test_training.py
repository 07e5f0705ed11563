import time

import numpy as np
import pytest
import torch

from cifake.data import load_dataset, train_val_split
from cifake.metrics import compute_metrics
from cifake.models import create_model
from cifake.models.inference import predict_logits
from cifake.runfolder import RunFolder
from cifake.training.config import TrainConfig
from cifake.training.config import RESUME_KEYS
from cifake.training.loop import fit, seed_everything


@pytest.fixture(scope="module")
def splits(learnable_zip, tmp_path_factory):
    data = load_dataset(learnable_zip, cache_root=tmp_path_factory.mktemp("c"), progress=False)
    train, val = train_val_split(data["train"].in_memory(), 0.2, seed=1)
    return train, val, data["test"]


def _fit(splits, epochs=3, run_dir=None, resume=False, **overrides):
    seed_everything(1)
    model = create_model("paper")
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
    assert RunFolder(tmp_path).checkpoint.is_file()
    resumed, resumed_result = _fit(splits, epochs=3, run_dir=tmp_path, resume=True)
    assert resumed_result.resumed_from_epoch == 1 and len(resumed_result.history) == 3
    assert [r["val_loss"] for r in resumed_result.history] == [r["val_loss"] for r in whole_result.history]
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_a_finished_run_can_be_extended_with_more_epochs_and_patience(splits, tmp_path):
    train, val, _ = splits
    # stops early at patience 1
    flipped = type(val)(val.images, 1 - val.labels, val.classes, val.names, val.sha256, val.sources)
    def run(epochs, patience):
        seed_everything(1)
        return fit(create_model("paper"), train, flipped, TrainConfig(epochs=epochs, patience=patience), tmp_path,
                   resume=True, progress=False)
    first = run(epochs=4, patience=1)
    assert first.stopped_early and len(first.history) == 2
    again = run(epochs=4, patience=1)  # resumed under the same settings, a run that stopped early stays stopped
    assert again.resumed_from_epoch == 2 and len(again.history) == 2 and again.stopped_early is True
    shortened = run(epochs=2, patience=1)  # its 2 epochs all run: finished, not stopped early
    assert len(shortened.history) == 2 and shortened.stopped_early is False
    extended = run(epochs=4, patience=3)  # the larger patience lets the stopped run go on from epoch 3
    assert extended.resumed_from_epoch == 2 and len(extended.history) == 4 and not extended.stopped_early


def test_resume_refuses_changed_settings(splits, tmp_path):
    _fit(splits, epochs=1, run_dir=tmp_path)
    with pytest.raises(ValueError, match="batch_size"):
        seed_everything(1)
        fit(create_model("paper"), splits[0], splits[1], TrainConfig(epochs=2, batch_size=64), tmp_path, resume=True,
            progress=False)
    with pytest.raises(ValueError, match="flip"):
        _fit(splits, epochs=2, run_dir=tmp_path, resume=True, flip=True)


def test_early_stopping_restores_the_best_weights(splits):
    train, val, _ = splits
    # learning hurts it
    flipped = type(val)(val.images, 1 - val.labels, val.classes, val.names, val.sha256, val.sources)
    seed_everything(1)
    model = create_model("paper")
    result = fit(model, train, flipped, TrainConfig(epochs=10, patience=2), progress=False)
    assert result.stopped_early and len(result.history) < 10
    best = min(result.history, key=lambda row: row["val_loss"])
    assert result.best_epoch == best["epoch"] and len(result.history) == best["epoch"] + 2
    logits = torch.from_numpy(predict_logits(model, flipped.images))
    targets = torch.from_numpy(flipped.labels.astype(np.float32))
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
    assert loss.item() == pytest.approx(best["val_loss"], rel=1e-5)


def test_onecycle_rises_then_falls_to_zero():
    from cifake.training.loop import learning_rate

    config = TrainConfig(epochs=4, learning_rate=0.01, schedule="onecycle", warmup_epochs=1)
    rates = [learning_rate(config, step, 10) for step in range(40)]
    assert rates[0] == pytest.approx(0.001) and rates[9] == pytest.approx(0.01) and max(rates) == pytest.approx(0.01)
    assert all(a >= b for a, b in zip(rates[9:], rates[10:])) and rates[-1] == pytest.approx(0.01 / 30)
    assert learning_rate(TrainConfig(learning_rate=0.01), 7, 10) == 0.01


@pytest.mark.parametrize(("epochs", "per_epoch", "warmup", "expected"), [
    (2, 3, 0, [1, 1, 4 / 5, 3 / 5, 2 / 5, 1 / 5]),  # no warm-up: the peak at once, then a fifth less each step
    (2, 1, 1, [1, 1]),  # a warm-up of all steps but one: the last step still gets the peak, not a share of it
    (1, 4, 0.5, [1 / 2, 1, 1, 1 / 2])])  # warm-up 2 of 4 steps, then the decay over the other two
def test_onecycle_at_the_edges_of_its_warm_up_by_hand(epochs, per_epoch, warmup, expected):
    from cifake.training.loop import learning_rate

    config = TrainConfig(epochs=epochs, learning_rate=0.01, schedule="onecycle", warmup_epochs=warmup)
    rates = [learning_rate(config, step, per_epoch) for step in range(epochs * per_epoch)]
    assert rates == pytest.approx([0.01 * share for share in expected], abs=1e-15)


class _Killed(Exception):
    pass


def _killed_after_epoch(epochs: int, monkeypatch, run) -> None:
    """`run()` killed right after its checkpoint of epoch `epochs` is written, as a SIGKILL would leave it."""
    from cifake.training.checkpoint import TrainState

    save = TrainState.save

    def save_then_die(self, *args, **kwargs):
        save(self, *args, **kwargs)
        if len(self.result.history) == epochs:
            raise _Killed

    monkeypatch.setattr(TrainState, "save", save_then_die)
    with pytest.raises(_Killed):
        run()
    monkeypatch.setattr(TrainState, "save", save)


def test_full_recipe_resumes_exactly(splits, tmp_path, monkeypatch):
    """SGD, one-cycle, label smoothing, weight averaging, flips and degradations: a run killed after its first
    epoch and resumed ends exactly where an unbroken run does."""
    from cifake.models import ResNetTopology

    recipe = TrainConfig(epochs=3, batch_size=32, patience=5, optimizer="sgd", learning_rate=0.02, weight_decay=5e-4,
                         schedule="onecycle", warmup_epochs=0.5, label_smoothing=0.1, ema=0.9, flip=True, degrade=0.2)

    def run(run_dir=None, resume=False, config=recipe):
        seed_everything(1)
        model = create_model(ResNetTopology(widths=(8, 16), blocks=1))
        return model, fit(model, splits[0], splits[1], config, run_dir, resume=resume, progress=False)

    whole, whole_result = run()
    assert whole_result.history[-1]["val_accuracy"] > 0.8
    assert whole_result.optimizer_kernel == "default"  # SGD has no fused kernel here (Adam's is "fused")
    _killed_after_epoch(1, monkeypatch, lambda: run(tmp_path))
    resumed, resumed_result = run(tmp_path, resume=True)
    assert resumed_result.resumed_from_epoch == 1
    assert [r["val_loss"] for r in resumed_result.history] == [r["val_loss"] for r in whole_result.history]
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="ema"):
        run(tmp_path, resume=True, config=TrainConfig(**{**recipe.__dict__, "ema": 0.5}))


# --- the wiring a planted bug would break: shuffling, degradations, the weights kept with EMA --------------

def test_every_epoch_has_a_shuffle_of_its_own():
    from cifake.training.augment import epoch_order

    first = epoch_order(500, seed=1, epoch=1)
    assert sorted(first.tolist()) == list(range(500))
    assert not torch.equal(first, epoch_order(500, seed=1, epoch=2))
    assert not torch.equal(first, epoch_order(500, seed=2, epoch=1))
    assert torch.equal(first, epoch_order(500, seed=1, epoch=1))  # what a resumed run relies on


def _uint8_batch(n=16):
    from conftest import synthetic_image

    return torch.from_numpy(np.stack([synthetic_image(i % 2, i) for i in range(n)]))


def test_training_input_without_options_is_the_pixels_as_floats():
    from cifake.training.augment import training_input

    batch = _uint8_batch()
    x = training_input(batch, TrainConfig(), epoch=1, batch_number=0)
    assert x.dtype == torch.float32 and x.shape == (16, 3, 32, 32)
    assert torch.equal(x, batch.permute(0, 3, 1, 2).float())


def test_degradations_change_the_images_and_are_drawn_afresh_every_epoch():
    from cifake.training.augment import training_input

    batch, config = _uint8_batch(), TrainConfig(degrade=1.0)
    plain = batch.permute(0, 3, 1, 2).float()
    degraded = training_input(batch, config, epoch=1, batch_number=0)
    assert (degraded != plain).flatten(1).any(1).all()  # probability 1: every image is degraded
    assert torch.equal(degraded, training_input(batch, config, epoch=1, batch_number=0))  # seeded: resumable
    assert not torch.equal(degraded, training_input(batch, config, epoch=2, batch_number=0))
    assert not torch.equal(degraded, training_input(batch, config, epoch=1, batch_number=1))
    half = training_input(batch, TrainConfig(degrade=0.5), epoch=1, batch_number=0)
    assert 0 < (half != plain).flatten(1).any(1).sum() < 16


def test_shifts_move_each_image_by_whole_pixels_with_a_reflected_border_drawn_afresh_every_epoch():
    from cifake.training.augment import training_input

    batch, config = _uint8_batch(64), TrainConfig(translate=2)
    padded = np.pad(batch.numpy(), ((0, 0), (2, 2), (2, 2), (0, 0)), mode="reflect")
    x = training_input(batch, config, epoch=1, batch_number=0).permute(0, 2, 3, 1).numpy()
    offsets = [next(((down, right) for down in range(5) for right in range(5)
                     if np.array_equal(x[i], padded[i, down:down + 32, right:right + 32])), None) for i in range(64)]
    assert None not in offsets  # every image is a 32x32 window of its padded self: exact values, no blending
    # the offsets are the (rows, columns) draws of the batch's own stream: a shipped recipe's images stay as trained
    drawn = np.random.default_rng([config.seed, 1, 0, 1]).integers(0, 5, size=(2, 64))
    assert offsets == list(zip(drawn[0].tolist(), drawn[1].tolist()))
    assert len(set(offsets)) > 15  # the offsets vary from image to image (25 possible)
    assert np.array_equal(x, training_input(batch, config, epoch=1, batch_number=0).permute(0, 2, 3, 1).numpy())
    assert not torch.equal(training_input(batch, config, epoch=1, batch_number=0),
                           training_input(batch, config, epoch=2, batch_number=0))
    with pytest.raises(ValueError, match="translate must be in"):
        TrainConfig(translate=9)


def test_flips_mirror_a_seeded_half_that_changes_every_epoch():
    from cifake.training.augment import training_input

    batch, config = _uint8_batch(64), TrainConfig(flip=True)
    plain = batch.permute(0, 3, 1, 2).float()
    x = training_input(batch, config, epoch=1, batch_number=0)
    mirrored = (x == plain.flip(3)).flatten(1).all(1) & (x != plain).flatten(1).any(1)
    kept = (x == plain).flatten(1).all(1)
    assert (mirrored | kept).all() and 16 < mirrored.sum() < 48
    assert not torch.equal(x, training_input(batch, config, epoch=2, batch_number=0))


def test_with_ema_the_kept_weights_are_the_averaged_ones_that_were_validated(splits):
    """The model returned (and saved) is the one whose validation loss picked the best epoch: with EMA, the average."""
    train, val, _ = splits
    seed_everything(1)
    model = create_model("paper")
    result = fit(model, train, val, TrainConfig(epochs=2, batch_size=32, patience=5, ema=0.9), progress=False)
    logits = torch.from_numpy(predict_logits(model, val.images))
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.from_numpy(val.labels.astype(np.float32)))
    assert loss.item() == pytest.approx(result.best_val_loss, rel=1e-6)


def test_history_rows_record_losses_and_times_that_add_up(splits):
    import time

    started = time.time()
    _, result = _fit(splits, epochs=2)
    train, val, _ = splits
    assert [row["epoch"] for row in result.history] == [1, 2]
    for row in result.history:
        assert set(row) == {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds",
                            "images_per_second", "wall_seconds", "ended_at"}
        assert 0 < row["seconds"] <= row["wall_seconds"] and started <= row["ended_at"] <= time.time()
        assert row["images_per_second"] == pytest.approx(len(train) / row["seconds"], rel=0.01)
        assert 0 <= row["train_accuracy"] <= 1 and 0 <= row["val_accuracy"] <= 1 and row["train_loss"] > 0
    assert result.history[0]["ended_at"] <= result.history[1]["ended_at"]
    assert result.best_val_loss == min(row["val_loss"] for row in result.history) and not result.stopped_early


def test_weight_average_starts_with_a_short_memory_and_copies_counters():
    from cifake.training.ema import Ema

    model = torch.nn.Sequential(torch.nn.Linear(1, 1, bias=False), torch.nn.BatchNorm1d(1))
    torch.nn.init.constant_(model[0].weight, 0.0)
    average = Ema(model, decay=0.9)
    assert not any(p.requires_grad for p in average.model.parameters()) and not average.model.training
    with torch.no_grad():
        model[0].weight.fill_(1.0)
    model[1].num_batches_tracked.fill_(7)
    average.update(model)  # decay min(0.9, 2/11): the first updates follow the model closely
    assert average.model[0].weight.item() == pytest.approx(1 - 2 / 11)
    assert average.model[1].num_batches_tracked.item() == 7
    for _ in range(100):
        average.update(model)
    assert average.updates == 101 and average.model[0].weight.item() == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize(("field", "bad", "edge"), [
    ("epochs", 0, 1), ("batch_size", 0, 1), ("patience", 0, 1), ("learning_rate", 0.0, 1e-9),
    ("degrade", 1.01, 1.0), ("degrade", -0.01, 0.0), ("optimizer", "rmsprop", "sgd"),
    ("schedule", "linear", "cosine"),
    ("weight_decay", -1e-6, 0.0), ("warmup_epochs", -0.5, 0.0), ("label_smoothing", 1.0, 0.0),
    ("label_smoothing", -0.1, 0.99), ("ema", 1.0, 0.0), ("ema", -0.1, 0.999)])
def test_each_training_setting_is_checked_at_its_edge(field, bad, edge):
    TrainConfig(**{field: edge})  # the edge itself is allowed
    with pytest.raises(ValueError, match=f"^training setting {field} must be .*, not {bad!r}$"):
        TrainConfig(**{field: bad})


def test_errors_name_the_allowed_values():
    with pytest.raises(ValueError, match=r"ema must be in \[0, 1\), not 1.0"):
        TrainConfig(ema=1.0)
    with pytest.raises(ValueError, match="optimizer must be one of adam, adamw, sgd, not 'rmsprop'"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match=r"learning_rate must be > 0, not 0"):
        TrainConfig(learning_rate=0)
    with pytest.raises(ValueError, match="unknown training setting.s. lr; known: image_size, preprocess, epochs"):
        TrainConfig.from_dict({"lr": 0.1})
    assert "epochs" not in RESUME_KEYS and "patience" not in RESUME_KEYS and "flip" in RESUME_KEYS


def test_optimizers_are_built_as_configured():
    from cifake.models import Topology
    from cifake.training.loop import make_optimizer

    model, cpu = create_model(Topology(4, 1, ())), torch.device("cpu")
    sgd = make_optimizer(model, TrainConfig(optimizer="sgd", learning_rate=0.1, weight_decay=0.01), cpu)
    assert type(sgd) is torch.optim.SGD and sgd.defaults["nesterov"] and sgd.defaults["momentum"] == 0.9
    assert sgd.defaults["lr"] == 0.1 and sgd.defaults["weight_decay"] == 0.01
    adamw = make_optimizer(model, TrainConfig(optimizer="adamw", learning_rate=0.003, weight_decay=0.05), cpu)
    assert type(adamw) is torch.optim.AdamW and adamw.defaults["fused"] is True
    assert adamw.defaults["lr"] == 0.003 and adamw.defaults["weight_decay"] == 0.05
    adam = make_optimizer(model, TrainConfig(), cpu)
    assert type(adam) is torch.optim.Adam and adam.defaults["fused"] and adam.defaults["lr"] == 1e-3


def test_resumed_moments_keep_their_parameters_memory_layout(splits, tmp_path):
    from cifake.training.checkpoint import TrainResult, TrainState
    from cifake.training.loop import Step

    _fit(splits, epochs=1, run_dir=tmp_path)
    config = TrainConfig(epochs=2, batch_size=32, patience=5)
    model = create_model("paper").to(memory_format=torch.channels_last)
    step = Step(model, config, torch.device("cpu"))
    optimizer = step.optimizer
    state = TrainState(model, optimizer, step.scaler, None, TrainResult())
    state.restore(RunFolder(tmp_path), config, torch.device("cpu"), "labels")
    assert len(state.result.history) == 1 and state.result.resumed_from_epoch == 1 and state.since_best == 0
    assert state.best_state
    conv = model.features[0].weight
    assert not conv.is_contiguous() and conv.is_contiguous(memory_format=torch.channels_last)
    for param, state in optimizer.state.items():
        assert state["exp_avg"].stride() == param.stride() == state["exp_avg_sq"].stride()


def test_a_run_folder_with_a_checkpoint_starts_afresh_unless_resumed(splits, tmp_path):
    from cifake.training.checkpoint import checkpoint_progress

    nested = tmp_path / "a" / "b"  # folders are made as needed
    assert checkpoint_progress(nested) is None
    _fit(splits, epochs=1, run_dir=nested)
    saved = checkpoint_progress(nested)
    assert len(saved.history) == 1 and saved.best_epoch == 1 and saved.history[0]["epoch"] == 1
    seed_everything(1)
    fresh = fit(create_model("paper"), splits[0], splits[1], TrainConfig(epochs=2, batch_size=32), nested,
                progress=False)  # resume not asked for: a new run, not a continuation
    assert fresh.resumed_from_epoch == 0 and len(fresh.history) == 2


def test_weight_averaging_and_label_smoothing_change_training(splits):
    import math

    _, plain = _fit(splits, epochs=1)
    _, averaged = _fit(splits, epochs=1, ema=0.9)
    assert averaged.history[0]["val_loss"] != plain.history[0]["val_loss"]
    assert averaged.history[0]["train_loss"] == plain.history[0]["train_loss"]  # the raw model trains alike
    _, smoothed = _fit(splits, epochs=3, label_smoothing=0.2)
    floor = -(0.1 * math.log(0.1) + 0.9 * math.log(0.9))  # cross-entropy against targets 0.1 / 0.9 is at least this
    assert all(row["train_loss"] > floor for row in smoothed.history)


def test_torch_schedulers_and_averaging_would_train_other_weights_so_ours_stay():
    """Why cifake.training keeps its own one-cycle rate and moving average: torch's give other numbers."""
    from cifake.training.ema import Ema
    from cifake.training.loop import learning_rate

    config = TrainConfig(epochs=32, learning_rate=0.003, schedule="onecycle", warmup_epochs=1)
    steps_per_epoch = 704  # the bundled recipe on CIFAKE: 90,000 training images in batches of 128
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=config.learning_rate)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: learning_rate(config, step, steps_per_epoch) / config.learning_rate)
    differ = 0
    for step in range(steps_per_epoch):
        differ += optimizer.param_groups[0]["lr"] != learning_rate(config, step, steps_per_epoch)
        optimizer.step()
        scheduler.step()
    assert differ > 0  # LambdaLR's base rate times a factor rounds some warm-up rates otherwise

    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.constant_(model.weight, 0.0)
    ours = Ema(model, decay=0.9)
    theirs = torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(0.9))
    with torch.no_grad():
        model.weight.fill_(1.0)
    ours.update(model)
    theirs.update_parameters(model)
    assert theirs.module.weight.item() == 1.0  # its first update copies the weights
    assert ours.model.weight.item() == pytest.approx(1 - 2 / 11)  # ours blends them with the starting ones


def test_a_resumed_run_keeps_its_early_stopping_count_and_stops_where_an_unbroken_run_does(splits, tmp_path,
                                                                                            monkeypatch):
    """Validation against flipped labels gets worse every epoch after the first: patience 2 stops after epoch 3.
    Killed after epoch 2 (one epoch since the best) and resumed, the run must stop after epoch 3 as well."""

    train, val, _ = splits
    flipped = type(val)(val.images, 1 - val.labels, val.classes, val.names, val.sha256, val.sources)
    config = TrainConfig(epochs=6, patience=2, batch_size=32)

    def run(run_dir=None, resume=False):
        seed_everything(1)
        model = create_model("paper")
        return model, fit(model, train, flipped, config, run_dir, resume=resume, progress=False)

    whole, unbroken = run()
    assert [row["epoch"] for row in unbroken.history] == [1, 2, 3] and unbroken.stopped_early
    assert unbroken.best_epoch == 1
    _killed_after_epoch(2, monkeypatch, lambda: run(tmp_path))
    resumed_model, resumed = run(tmp_path, resume=True)
    assert resumed.resumed_from_epoch == 2 and resumed.stopped_early
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3] and resumed.best_epoch == 1
    assert [row["val_loss"] for row in resumed.history] == [row["val_loss"] for row in unbroken.history]
    for a, b in zip(whole.state_dict().values(), resumed_model.state_dict().values()):
        assert torch.equal(a, b)


def test_the_one_cycle_rate_of_every_step_of_every_epoch_is_the_hand_computed_one(splits, monkeypatch):
    """The rate each optimisation step used, recorded during a real run, against the schedule written out by
    hand: linear warm-up over 1.5 epochs to the peak, then linear decay that reaches zero after the last step."""
    from fractions import Fraction

    from cifake.training.loop import Step

    train, val, _ = splits
    steps_per_epoch = -(-len(train) // 64)
    config = TrainConfig(epochs=3, batch_size=64, patience=5, schedule="onecycle", warmup_epochs=1.5,
                         learning_rate=0.004, optimizer="sgd")
    used = []
    step_call = Step.__call__

    def recording(self, x, y, settings):
        used.append(self.optimizer.param_groups[0]["lr"])
        return step_call(self, x, y, settings)

    monkeypatch.setattr(Step, "__call__", recording)
    seed_everything(1)
    fit(create_model("paper"), train, val, config, progress=False)
    total, warm = 3 * steps_per_epoch, Fraction(3, 2) * steps_per_epoch
    peak = Fraction(4, 1000)
    expected = [peak * (s + 1) / warm if s < warm else peak * (total - s) / (total - warm) for s in range(total)]
    assert len(used) == total
    assert used == pytest.approx([float(rate) for rate in expected], rel=1e-12)
    assert max(used) == pytest.approx(0.004) and used[-1] == pytest.approx(float(peak / (total - warm)))


def test_the_epochs_flips_are_drawn_ahead_only_for_an_accelerator():
    """On the CPU each batch draws its own flips (nothing to wait for); on another device the epoch's draws come
    as one tensor on it, batch after batch, the last batch short (the meta device holds shapes only)."""
    from cifake.training.augment import epoch_flips, flip_choice

    config = TrainConfig(flip=True, batch_size=4)
    assert epoch_flips(config, 0, 10, torch.device("cpu")) is None
    assert epoch_flips(TrainConfig(flip=False), 0, 10, torch.device("meta")) is None
    ahead = epoch_flips(config, 3, 10, torch.device("meta"))  # meta: a device with shapes but no data
    assert ahead.device.type == "meta" and ahead.shape == torch.cat(
        [flip_choice(config, 3, b, n) for b, n in enumerate((4, 4, 2))]).shape


def test_a_one_pixel_translation_moves_some_images_by_one_pixel():
    """translate 1: each image moves by -1, 0 or 1 pixels each way; over 16 images some move, and any moved one
    matches its own pixels shifted by one (the interior, away from the reflected border)."""
    from cifake.training.augment import training_input

    batch = _uint8_batch()
    plain = batch.permute(0, 3, 1, 2).float()
    shifted = training_input(batch, TrainConfig(translate=1), epoch=1, batch_number=0)
    moved = (shifted != plain).flatten(1).any(1)
    assert 0 < moved.sum() <= 16
    for image in torch.nonzero(moved).flatten().tolist():
        assert any(torch.equal(shifted[image, :, 2:-2, 2:-2], plain[image, :, 2 + dy:30 + dy, 2 + dx:30 + dx])
                   for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)), image


def test_an_epochs_row_keeps_times_to_the_millisecond_and_the_rate_to_a_tenth(monkeypatch):
    """The history's row for an epoch, worked by hand: 1,000 images in 2.71828 s run at 367.9 images/s."""
    from cifake.training import loop

    monkeypatch.setattr(loop.time, "time", lambda: 1_700_000_000.123456)
    row = loop._epoch_row(3, 0.5, 0.75, 0.25, 0.875, 1000, 2.71828, 3.14159)
    assert row == {"epoch": 3, "train_loss": 0.5, "train_accuracy": 0.75, "val_loss": 0.25, "val_accuracy": 0.875,
                   "seconds": 2.718, "images_per_second": 367.9, "wall_seconds": 3.142,
                   "ended_at": 1_700_000_000.123}


@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_a_run_asked_to_compile_trains_through_torch_compile_in_its_mode(mode, monkeypatch):
    """The step's forward is what torch.compile returned for the model in the run's mode (compiling itself is
    measured on a GPU by benchmarks/gpu_check.py); off, it is the model."""
    from cifake.training.loop import Step

    model = create_model("paper")
    monkeypatch.setattr(torch, "compile", lambda module, mode: ("compiled", module, mode))
    assert Step(model, TrainConfig(compile=mode), torch.device("cpu")).forward == ("compiled", model, mode)
    assert Step(model, TrainConfig(), torch.device("cpu")).forward is model


def test_an_epoch_trains_on_every_image_once_and_sums_its_loss_in_float64():
    """An epoch against a stand-in step, worked by hand: 1,001 images in batches of one, each seen once (its target,
    i / 1000, names it); one loss of 10,000 then 1,000 of 0.001, whose mean a float32 sum would get wrong by 2e-5.
    Logits of y - 0.5 are right for the even i (i = 500 sits on both boundaries: logit 0, target 0.5, so FAKE and
    right), 0.5 - y wrong for the odd. The bar shows the running mean loss and accuracy every 50 batches."""
    from types import SimpleNamespace

    from cifake.training.loop import _train_one_epoch

    class Step:
        def __init__(self):
            self.model, self.optimizer, self.seen = torch.nn.Identity(), SimpleNamespace(param_groups=[{}]), []

        def __call__(self, x, y, config):
            self.seen += y.tolist()
            loss = torch.tensor(10_000.0 if y[0] == 0 else 0.001)
            return loss, torch.where(torch.round(y * 1000) % 2 == 0, y - 0.5, 0.5 - y)

    step, count, shown = Step(), 1001, []
    bar = SimpleNamespace(update=lambda task, **fields: shown.append((task, fields)))
    images = torch.zeros((count, 4, 4, 3), dtype=torch.uint8)
    targets = torch.arange(count, dtype=torch.float32) / 1000
    loss, accuracy = _train_one_epoch(step, images, targets, TrainConfig(batch_size=1), 1, bar, "task")
    assert sorted(step.seen) == targets.tolist()
    assert loss == pytest.approx((10_000 + 1000 * float(np.float32(0.001))) / count, rel=1e-12)
    assert accuracy == 501 / count
    losses = np.where(np.array(step.seen) == 0, 10_000, float(np.float32(0.001)))
    rights = np.round(np.array(step.seen) * 1000) % 2 == 0
    expected = [("task", {"completed": n, "loss": f"{losses[:n].sum() / n:.4f}", "acc": f"{rights[:n].mean():.4f}"})
                for n in range(50, count, 50)]
    assert shown == [*expected, ("task", {"completed": count})]


def test_validation_counts_a_logit_of_0_as_fake_and_runs_in_the_eval_batch_size():
    """Six preset logits against their labels, worked by hand: right for 0 (FAKE), 0.5, -2 and 3; wrong for 2
    against FAKE and -0.1 against REAL: 4 of 6. The loss is binary cross-entropy by NumPy."""
    from cifake.training.loop import _validate

    class Preset(torch.nn.Module):
        def __init__(self, logits: torch.Tensor):
            super().__init__()
            self.weight, self.logits, self.batches = torch.nn.Parameter(torch.zeros(1)), logits, []

        def forward(self, x):
            start = sum(self.batches)
            self.batches.append(len(x))
            return self.logits[start : start + len(x)]

    logits = np.array([0.0, 0.5, -2.0, 3.0, 2.0, -0.1], np.float32)
    labels = np.array([0, 1, 0, 1, 0, 1])
    model = Preset(torch.from_numpy(logits))
    images = np.zeros((6, 4, 4, 3), np.uint8)
    loss, accuracy = _validate(model, images, labels, TrainConfig(eval_batch_size=4))
    assert accuracy == pytest.approx(4 / 6) and model.batches == [4, 2]
    expected = np.mean(np.where(labels == 1, np.log1p(np.exp(-logits)), np.log1p(np.exp(logits))))
    assert loss == pytest.approx(expected, rel=1e-6)


def test_fit_draws_each_epoch_with_its_counts_loss_and_accuracy(splits, monkeypatch, capsys):
    """fit called without `progress` draws it (a long loop shows progress): a bar per epoch, named "Epoch e/E",
    counting the training images, ending on the epoch's training and validation loss and accuracy as the history
    holds them."""
    from cifake.progress import progress_bar
    from cifake.training import loop

    bars, first_fields = [], {}

    def recording_bar(*args):
        bar = progress_bar(*args)
        update = bar.update

        def first_seen_update(task_id, **fields):  # the fields as drawn before the epoch's first figures
            first_fields.setdefault(task_id, dict(next(t for t in bar.tasks if t.id == task_id).fields))
            update(task_id, **fields)

        bar.update = first_seen_update
        bars.append(bar)
        return bar

    monkeypatch.setattr(loop, "progress_bar", recording_bar)
    started = time.perf_counter()
    result = loop.fit(create_model("paper"), splits[0], splits[1], TrainConfig(epochs=2, batch_size=64))
    elapsed = time.perf_counter() - started
    assert all(0 < row["seconds"] <= row["wall_seconds"] <= elapsed for row in result.history)
    shown = capsys.readouterr().out
    assert len(bars) == 1 and len(bars[0].tasks) == len(result.history) == 2
    assert list(first_fields.values()) == [{"loss": "-", "acc": "-"}] * 2
    for epoch, (task, row) in enumerate(zip(bars[0].tasks, result.history), 1):
        assert task.description == f"Epoch {epoch}/2" and task.total == task.completed == len(splits[0])
        loss = f"{row['train_loss']:.4f} val {row['val_loss']:.4f}"
        accuracy = f"{row['train_accuracy']:.4f} val {row['val_accuracy']:.4f}"
        assert task.fields == {"loss": loss, "acc": accuracy}
        assert f"Epoch {epoch}/2" in shown and f"loss {loss} acc {accuracy}" in shown


def test_a_tie_keeps_the_earlier_epoch_best_and_counts_towards_patience(splits, monkeypatch):
    """Validation losses of 0.5, 0.5, 0.5, 0.4 at patience 2: epoch 1 stays best through the ties, and the run
    stops after epoch 3, never reaching the better epoch 4."""
    from cifake.training import loop

    losses = iter([0.5, 0.5, 0.5, 0.4])
    monkeypatch.setattr(loop, "_validate", lambda *args: (next(losses), 0.5))
    config = TrainConfig(epochs=4, batch_size=64, patience=2)
    result = loop.fit(create_model("paper"), splits[0], splits[1], config, progress=False)
    assert (result.best_epoch, result.stopped_early, len(result.history)) == (1, True, 3)


def test_seed_everything_seeds_torch_and_numpys_global_generators():
    """Code outside cifake that draws from NumPy's or torch's global generator repeats under one seed, the
    draws of a generator seeded alike."""
    def draws(seed):
        seed_everything(seed)
        return np.random.rand(3).tolist(), torch.rand(3).tolist()

    expected = (np.random.RandomState(1).rand(3).tolist(),
                torch.rand(3, generator=torch.Generator().manual_seed(1)).tolist())
    assert draws(1) == expected and draws(2) != draws(1)
