"""Plant known bugs one at a time in a copy of the code and check that the tests meant for each one fail.

    python tools/planted_bugs.py            # every bug; a table of which tests caught which bug
    python tools/planted_bugs.py --only 3 7 --json
    python tools/planted_bugs.py --check    # only that every bug's text is found once (tests/test_docs.py)

Each bug is a textual change to one source file that must match exactly once: code that has moved makes this
script stop with the bug's name rather than silently plant nothing. Before planting, the same tests are run on the
unchanged copy and must pass, so "caught" means "these tests fail because of this bug". The first 16 are bugs a
mutation check once found the suite blind to, the rest realistic one-line bugs of a second set (nested layouts,
decoding, leakage, degradations, seeds, the schedule, resuming, calibration, metrics, Ray tokens, Grad-CAM's
target) that went unnoticed until their areas' tests were written for them, and three in the domain check;
`make mutate` (mutmut) is the broader, automatic version.
"""

from __future__ import annotations

import argparse
import textwrap
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Bug:
    name: str
    file: str  # under src/cifake
    old: str
    new: str
    tests: tuple[str, ...]  # pytest node ids that must fail with the bug planted
    also: tuple[str, str] | None = None  # a second (old, new) change in the same file, when the bug needs one


BUGS = [
    Bug("best weights kept from the raw model instead of the EMA model", "training/checkpoint.py",
        "self.best_state = copy.deepcopy(self.scored.state_dict())",
        "self.best_state = copy.deepcopy(self.model.state_dict())",
        ("tests/test_training.py::test_with_ema_the_kept_weights_are_the_averaged_ones_that_were_validated",)),
    Bug("max_real_flagged and max_fake_passed swapped in calibrate_run", "workflows/calibrate.py",
        "choose_decision(val_prob_fake, val.labels, max_real_flagged, max_fake_passed)",
        "choose_decision(val_prob_fake, val.labels, max_fake_passed, max_real_flagged)",
        ("tests/test_calibration.py::test_each_target_bounds_its_own_error_rate",
         "tests/test_calibration.py::test_calibrate_command_takes_both_targets")),
    Bug("cifake predict --threshold ignored", "cli/predict.py",
        "return detector.iter_predict(files, threshold)",
        "return detector.iter_predict(files, None)",
        ("tests/test_predict.py::test_predict_cli_threshold_and_backend",)),
    Bug("the Detector's batch never reset after a chunk", "predict/detector.py",
        "                yield from self._score(batch, decision)\n                batch = []",
        "                yield from self._score(batch, decision)",
        ("tests/test_predict.py::test_more_inputs_than_one_chunk_each_get_their_own_score",)),
    Bug("cifake's default pixel limit raised to 10^12", "data/decode.py",
        "MAX_PIXELS = Image.MAX_IMAGE_PIXELS", "MAX_PIXELS = 10**12",
        ("tests/test_decode.py::test_default_pixel_limit_is_ours_not_only_pillows",)),
    Bug("the service's pixel limit not passed to the detector", "serve/app.py",
        "        detector.max_pixels = limits.max_pixels\n", "",
        ("tests/test_serve.py::test_the_service_pixel_limit_reaches_the_detector",)),
    Bug("--exclude-leaked excludes nothing", "workflows/experiment.py",
        "        mask = leaked_mask(data, split)", "        mask = np.zeros(len(images), bool)",
        ("tests/test_cli.py::test_evaluate_split_out_and_exclude_leaked",)),
    Bug("a rewritten zip does not invalidate the decode cache", "data/sources.py",
        "stats = [(str(z), *_stat(z)) for z in zips]", "stats = [(str(z),) for z in zips]",
        ("tests/test_dataset.py::test_a_rewritten_zip_is_decoded_again",)),
    Bug("the cache key uses the size only, not the modification time", "data/sources.py",
        "return st.st_size, st.st_mtime_ns", "return st.st_size, 0",
        ("tests/test_dataset.py::test_a_touched_source_is_decoded_again_even_at_the_same_size",)),
    Bug("the same shuffle order every epoch", "training/augment.py",
        "manual_seed(seed * 1_000_003 + epoch)", "manual_seed(seed * 1_000_003)",
        ("tests/test_training.py::test_every_epoch_has_a_shuffle_of_its_own",)),
    Bug("degradations ignore the epoch", "training/augment.py",
        "config.degrade, np.random.default_rng([config.seed, epoch,",
        "config.degrade, np.random.default_rng([config.seed, 0,",
        ("tests/test_training.py::test_degradations_change_the_images_and_are_drawn_afresh_every_epoch",)),
    Bug("--degrade does nothing at all", "training/augment.py",
        "        if config.degrade > 0:\n", "        if False:\n",
        ("tests/test_training.py::test_degradations_change_the_images_and_are_drawn_afresh_every_epoch",
         "tests/test_robustness.py::test_robust_training_is_seeded")),
    Bug("--degrade not passed on by the command line", "cli/options.py",
        "for key, v in chosen.items() if source(key).name in",
        "for key, v in chosen.items() if key != \"degrade\" and source(key).name in",
        ("tests/test_robustness.py::test_robust_training_is_seeded",
         "tests/test_cli.py::test_train_the_residual_family_with_every_recipe_option")),
    Bug("the Grad-CAM randomisation check does not randomise", "explain/analysis.py",
        "    nn.init.xavier_uniform_(module.weight)\n    if module.bias is not None:",
        "    if False:",
        ("tests/test_explain.py::test_randomisation_check_randomises_a_copy_and_the_maps_follow",)),
    Bug("the model does not scale pixels to 0-1", "models/cnn.py",
        "        x = (pixels - self.mean) / self.std\n", "        x = pixels\n",
        ("tests/test_models.py::test_model_scales_pixels_itself",)),
    Bug("generated images named by their place in --classes, not their CIFAR-10 class", "generate/plan.py",
        "        Job(cifar_index(name), name, i, job_file_name(name, i),",
        "        Job(k, name, i, cifake_file_name(i, k),",
        ("tests/test_generate.py::test_plan_names_seeds_and_shards",
         "tests/test_generate.py::test_classes_outside_cifar10_are_named_so_they_read_back_as_unknown"),
        also=("        for name, count in zip(config.classes, config.counts())",
              "        for k, (name, count) in enumerate(zip(config.classes, config.counts()))")),
    # --- the themes of a second set, which once went unnoticed -------------------------------------------------
    Bug("nested label folders: the outermost one gives the label", "data/sources.py",
        "for i in range(len(parts) - 2, -1, -1):", "for i in range(len(parts) - 1):",
        ("tests/test_sources.py::test_when_label_folders_nest_the_nearest_one_gives_the_label_and_the_one_above_it_the_split",
         "tests/test_sources.py::test_nested_label_folders_read_the_same_from_a_tree_and_a_zip")),
    Bug("data build floors each class's test share instead of rounding it", "data/build.py",
        "n_test = int(round(len(group) * test_fraction))", "n_test = int(len(group) * test_fraction)",
        ("tests/test_dataset.py::test_data_build_puts_the_rounded_share_of_every_class_in_test",)),
    Bug("a 32 px JPEG's EXIF orientation skipped by the fast decoder", "data/decode.py",
        'if data[:2] != b"\\xff\\xd8" or b"Exif\\x00\\x00" in data:', 'if data[:2] != b"\\xff\\xd8":',
        ("tests/test_decode.py::test_a_32px_jpeg_with_an_exif_orientation_is_turned_like_any_other_image",)),
    Bug("the fast decoder takes grey and CMYK JPEGs too", "data/decode.py",
        'if colorspace not in ("YCbCr", "RGB"):',
        "if False:",
        ("tests/test_decode.py::test_the_fast_path_gives_exactly_what_the_general_path_gives",)),
    Bug("--exclude-leaked drops byte-identical copies only", "workflows/experiment.py",
        "        mask = leaked_mask(data, split)", '        mask = leaked_mask(data, split, "bytes")',
        ("tests/test_cli.py::test_exclude_leaked_drops_pixel_identical_copies_not_only_byte_identical_ones",)),
    Bug("blur mixes the colour channels", "data/degrade.py",
        "sigma=(0, sigma, sigma, 0)", "sigma=(0, sigma, sigma, sigma)",
        ("tests/test_robustness.py::test_blur_is_a_gaussian_of_its_sigma_on_each_colour_channel_alone",)),
    Bug("the JPEG condition ignores its quality", "data/degrade.py",
        'encode_jpeg(np.ascontiguousarray(image), quality, "RGB",',
        'encode_jpeg(np.ascontiguousarray(image), 75, "RGB",',
        ("tests/test_robustness.py::test_jpeg_condition_is_a_4_2_0_reencode_at_its_quality",)),
    Bug("explain's sample ignores the run's seed", "workflows/explain_report.py",
        "seed = training_seed(config) if seed is None else seed", "seed = 1 if seed is None else seed",
        ("tests/test_explain.py::test_the_explained_sample_follows_the_runs_seed_or_the_commands",)),
    Bug("robustness --seed not passed on", "cli/train.py",
        "conditions, limit, seed,", "conditions, limit, 0,",
        ("tests/test_robustness.py::test_robustness_limit_samples_with_the_commands_seed",)),
    Bug("the one-cycle decay ends an epoch late", "training/loop.py",
        "total = config.epochs * steps_per_epoch", "total = (config.epochs + 1) * steps_per_epoch",
        ("tests/test_training.py::test_the_one_cycle_rate_of_every_step_of_every_epoch_is_the_hand_computed_one",)),
    Bug("each epoch's schedule starts an epoch ahead", "training/loop.py",
        "learning_rate(config, (epoch - 1) * steps_per_epoch + batch_number,",
        "learning_rate(config, epoch * steps_per_epoch + batch_number,",
        ("tests/test_training.py::test_the_one_cycle_rate_of_every_step_of_every_epoch_is_the_hand_computed_one",)),
    Bug("a resumed run forgets its epochs since the best", "training/checkpoint.py",
        'self.result, self.since_best = result, state["since_best"]', "self.result, self.since_best = result, 0",
        ("tests/test_training.py::test_a_resumed_run_keeps_its_early_stopping_count_and_stops_where_an_unbroken_run_does",)),
    Bug("FAKE-positive scores call an image at the threshold REAL", "metrics/scores.py",
        '**_positive_scores(1 - prob_real, 1 - predicted_real, 1 - target, prefix="fake_"),',
        '**_positive_scores(1 - prob_real, (1 - prob_real > 0.5).long(), 1 - target, prefix="fake_"),',
        ("tests/test_metrics.py::test_every_metric_agrees_with_scikit_learn_computed_independently",)),
    Bug("an empty RAY_AUTH_TOKEN counts as a token", "cluster.py",
        'if os.environ.get("RAY_AUTH_TOKEN"):', 'if "RAY_AUTH_TOKEN" in os.environ:',
        ("tests/test_cluster.py::test_the_token_is_looked_for_where_ray_looks_in_ray_s_order",)),
    Bug("token mode overrides the user's own RAY_AUTH_MODE", "cluster.py",
        'and bool(auth_token_source()) and "RAY_AUTH_MODE" not in os.environ',
        "and bool(auth_token_source())",
        ("tests/test_cluster.py::test_token_mode_is_on_while_joining_with_a_token_and_left_as_found",)),
    Bug("Grad-CAM's predicted target is REAL for every image", "explain/base.py",
        "return (self.model(pixels) > 0).long()",
        "return torch.ones(len(pixels), dtype=torch.long, device=pixels.device)",
        ("tests/test_explain.py::test_the_predicted_target_is_each_images_own_verdict",)),
    Bug("the ECE reported after calibration is the uncalibrated one", "workflows/calibrate.py",
        '"ece_after": calibration_error(calibrated, labels)', '"ece_after": calibration_error(sigmoid(logits), labels)',
        ("tests/test_calibration.py::test_the_ece_reported_after_calibration_is_that_of_the_calibrated_probabilities",)),
    # image size and sources (issue 36)
    Bug("a saved model is rebuilt at 32 px whatever its config says", "models/io.py",
        'create_model(topology_from_dict(config["topology"]), Preprocess.of_model(config))',
        'create_model(topology_from_dict(config["topology"]))',
        ("tests/test_image_size.py::test_the_size_is_read_from_the_model_and_a_mismatch_is_refused",)),
    Bug("a crop model trains on the same corner of its window at every step", "training/augment.py",
        "random_offsets(extents, self.pixels.size, rng)", "np.zeros((len(extents), 2), np.int64)",
        ("tests/test_image_size.py::test_crop_training_draws_seeded_random_crops_inside_each_window",)),
    Bug("prediction scores a crop model's central crop only", "predict/detector.py",
        "return prediction_crops(stored[None], [extent], self.preprocess.size)[:, 0], converted",
        "return prediction_crops(stored[None], [extent], self.preprocess.size)[:1, 0], converted",
        ("tests/test_image_size.py::test_a_model_of_any_size_trains_loads_predicts_exports_explains_calibrates_and_"
         "serves[32-crop-resnet-s]",)),
    Bug("--exclude-source trains on the excluded source anyway", "training/split.py",
        "kept = pool.without_sources(self.exclude_sources)", "kept = pool",
        ("tests/test_image_size.py::test_sources_are_counted_scored_per_source_and_left_out_on_request",)),
    Bug("an unsplit source's test share is stratified by label only", "training/split.py",
        "strata = np.char.add(images.labels.astype(str), np.asarray(images.sources, str))",
        "strata = images.labels.astype(str)",
        ("tests/test_image_size.py::test_an_unsplit_source_gets_a_seeded_stratified_test_share_that_evaluate_carves_again",)),
    Bug("the domain check's threshold flags all but the share asked for", "calibration/domain.py",
        "1 - max_flagged, method=\"higher\"", "max_flagged, method=\"higher\"",
        ("tests/test_domain.py::test_the_score_separates_a_different_set_and_the_threshold_holds_its_validation_share",)),
    Bug("the Detector judges every image's domain by the batch's first image", "predict/detector.py",
        "judge(self.domain, features[firsts],", "judge(self.domain, features[firsts * 0],",
        ("tests/test_domain.py::test_a_bad_input_among_good_ones_keeps_every_judgement_in_place",)),
    Bug("the domain check's size rule lets any larger file in", "calibration/domain.py",
        "max(width, height) > high * SIZE_TOLERANCE", "max(width, height) > high * SIZE_TOLERANCE * 1000",
        ("tests/test_domain.py::test_a_native_size_is_outside_beyond_the_training_range_and_its_tolerance",)),
    Bug("a generator's ROC-AUC measured against the other generators too", "metrics/scores.py",
        "versus = mine | (labels != label)", "versus = np.ones_like(mine)",
        ("tests/test_metrics.py::test_per_source_figures_agree_with_scikit_learn_on_a_hand_made_set",)),
    Bug("robustness's figures without leaks leave in the test images re-encoded from train", "workflows/robustness.py",
        'keep = ~leaked_mask(data, "test")', 'keep = ~leaked_mask(data, "test", "bytes")',
        ("tests/test_robustness.py::test_figures_without_leaked_leave_out_exactly_the_test_images_also_in_train",)),
]


@dataclass
class Outcome:
    number: int
    bug: str
    caught: bool
    failed_tests: list[str]
    seconds: float


def copy_of_repo(where: Path) -> Path:
    copy = where / "repo"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", ".pytest_cache")
    for part in ("src", "tests"):
        shutil.copytree(REPO / part, copy / part, ignore=ignore)
    shutil.copy(REPO / "pyproject.toml", copy / "pyproject.toml")
    return copy


def planted_text(root: Path, bug: Bug) -> str:
    """The text of the bug's file under `root` with the bug planted; stops if the text to change is not there once."""
    changes = [(bug.old, bug.new), *([bug.also] if bug.also else [])]
    text = (root / "src" / "cifake" / bug.file).read_text()
    for old, new in changes:
        if text.count(old) != 1:
            raise SystemExit(f"{bug.name}: {bug.file} holds the text to change {text.count(old)} times, not once")
        text = text.replace(old, new)
    try:  # a bug is a change of behaviour: one that breaks the syntax would be caught by any test
        compile(text, bug.file, "exec")
    except SyntaxError as exc:
        raise SystemExit(f"{bug.name}: planting it breaks the syntax of {bug.file} ({exc})") from None
    return text


def plant(copy: Path, bug: Bug) -> None:
    (copy / "src" / "cifake" / bug.file).write_text(planted_text(copy, bug))


def missing_tests(bug: Bug) -> list[str]:
    """The bug's test node ids that name no test function in their file."""
    missing = []
    for node in bug.tests:
        path, name = node.split("::")
        if f"def {name.split('[')[0]}(" not in (REPO / path).read_text():
            missing.append(node)
    return missing


def run_tests(copy: Path, tests: tuple[str, ...]) -> list[str]:
    """The node ids among `tests` that fail (or error) in this copy."""
    env = {**os.environ, "PYTHONPATH": str(copy / "src"), "CIFAKE_DATA": os.environ.get(
        "CIFAKE_DATA", str(REPO.parent / "shared" / "data" / "cifake"))}
    # -x: a bug is caught once any of its tests fails; the rest would only lengthen CI
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-rfE", *tests],
                          cwd=copy, env=env, capture_output=True, text=True, timeout=1200)
    failed = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith(("FAILED ", "ERROR "))]
    if proc.returncode not in (0, 1):
        failed = failed or [f"pytest exit {proc.returncode}: {proc.stdout[-500:]}"]
    return failed


def plant_and_test(tmp: Path, number: int, bug: Bug) -> Outcome:
    started = time.perf_counter()
    copy = copy_of_repo(tmp / f"bug{number}")
    plant(copy, bug)
    failed = run_tests(copy, bug.tests)
    print(f"{number:2d} {'caught' if failed else 'MISSED'}: {bug.name}", file=sys.stderr, flush=True)
    shutil.rmtree(copy)
    return Outcome(number, bug.name, bool(failed), failed, round(time.perf_counter() - started, 1))


def _catchers(failed: list[str]) -> str:
    """The test functions that failed, each once, with how many of its cases did."""
    cases = Counter(node.split("::")[-1].split("[")[0] for node in failed)
    return ", ".join(f"{name} ({n} cases)" if n > 1 else name for name, n in cases.items()) or "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", type=int, nargs="*", help="bug numbers (from 1) to plant")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--check", action="store_true", help="only check that every bug's text and tests exist")
    parser.add_argument("--skip-clean-run", action="store_true",
                        help="do not first run the tests on the unchanged code (CI: the suite runs them anyway)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="bugs planted at once (default: cores)")
    args = parser.parse_args()
    chosen = [(n, bug) for n, bug in enumerate(BUGS, 1) if not args.only or n in args.only]
    if args.check:
        for _, bug in chosen:
            planted_text(REPO, bug)
            if missing := missing_tests(bug):
                raise SystemExit(f"{bug.name}: no such test {missing}")
        return print(f"{len(chosen)} planted bugs: every text to change is found once, every test exists")
    with tempfile.TemporaryDirectory() as tmp:
        every_test = tuple(dict.fromkeys(t for _, bug in chosen for t in bug.tests))
        if not args.skip_clean_run and (failing := run_tests(copy_of_repo(Path(tmp) / "clean"), every_test)):
            raise SystemExit(f"these tests fail without any planted bug: {failing}")
        with ThreadPoolExecutor(args.jobs) as pool:  # each bug runs pytest in a process of its own
            outcomes = list(pool.map(lambda chosen_bug: plant_and_test(Path(tmp), *chosen_bug), chosen))
    if args.json:
        print(json.dumps([asdict(o) for o in outcomes], indent=1))
    else:
        for o in outcomes:
            print(textwrap.fill(f"{o.number:2d}. {'caught' if o.caught else 'MISSED'} ({o.seconds:.0f} s): {o.bug}",
                                80, subsequent_indent="    "))
            print(textwrap.fill(f"by {_catchers(o.failed_tests)}", 80, initial_indent="    ",
                                subsequent_indent="      ", break_long_words=True))
        print(f"{sum(o.caught for o in outcomes)} of {len(outcomes)} planted bugs caught")
    if not all(o.caught for o in outcomes):
        sys.exit(1)


if __name__ == "__main__":
    main()
