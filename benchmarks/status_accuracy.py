"""How good is `cifake search-status`'s time-left estimate? Watch a running search, then compare.

`watch` samples the search's status every few minutes (the same `search_status` the command prints) and appends
each sample to a JSON-lines file, so a killed watcher loses nothing it wrote. `report` compares every sample's
estimate with what happened: the real time left is the wall time, from the sample on, during which an epoch of a
trial the estimate covered was running (stage 1 alone while the dense heads wait for stage 1 to choose their
extractor, every trial after that), so the hours between a killed search and its rerun do not count. It prints
a table, `--json` the rows, and draws estimated against real time left.

`replay` needs no samples: every epoch records the clock time it ended, so the folder of a finished search shows
what `search-status` would have read at any earlier moment (the epochs ended by then; a trial finished once its
last epoch had). It asks the estimate at regular times (with `--samples`, at the times of `watch`'s samples,
whose estimates it should give again: a check of the replay) and compares as `report` does. A replay of the
same folder by another revision of cifake compares two estimators on one search.

    python benchmarks/status_accuracy.py watch reports/paper --samples /tmp/status.jsonl --every 300 &
    make reproduce PROFILE=paper
    python benchmarks/status_accuracy.py report reports/paper --samples /tmp/status.jsonl --plot status.png
    python benchmarks/status_accuracy.py replay reports/paper --every 300 [--samples /tmp/status.jsonl]

`fit` finds the weight of a multiply-add in the fp32 cost (cifake.search.runner.FP32_COST_PER_MULTIPLY_ADD) that
best predicts a finished stage 1's epoch times, and prints each trial's prediction:

    python benchmarks/status_accuracy.py fit reports/quick
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from cifake.data.dataset import available_cores
from cifake.search import SearchSpace, search_status
from cifake.search.runner import FP32_COST_PER_MULTIPLY_ADD, training_work
from cifake.search.status import SearchStatus, TrialStatus, seconds_left, union_seconds


def sample(status: SearchStatus, at_once: int) -> dict:
    """One observation: when, how far along, and the wall time the command would have said was left."""
    return {"time": time.time(), "finished": status.count("finished"), "total": status.total,
            "heads_waiting": status.heads_waiting_for_stage1, "estimated_seconds_left": status.seconds_left / at_once,
            "wall_seconds": status.wall_seconds}


def done(status: SearchStatus) -> bool:
    return status.count("finished") == status.total


def watch(folder: Path, samples: Path, every: float, at_once: int) -> None:
    while not any((place / "search_settings.json").is_file() for place in (folder, folder / "search")):
        time.sleep(10)  # the search writes its settings after the data are decoded
    while True:
        status = search_status(folder)
        with samples.open("a") as out:
            out.write(json.dumps(sample(status, at_once)) + "\n")
        if done(status):
            return
        time.sleep(every)


def covered_spans(status: SearchStatus, stage: int | None) -> list[tuple[float, float]] | None:
    """The epochs' (start, end) of the trials an estimate covered (stage 1, or all), or None while one of those
    trials is unfinished."""
    covered = [t for t in status.trials if stage is None or t.stage == stage]
    if any(t.state != "finished" for t in covered):
        return None
    return [span for t in covered for span in t.epoch_spans]


def wall_between(spans: list[tuple[float, float]], start: float, end: float) -> float:
    """Time between `start` and `end` with at least one of the epochs running: a search killed and resumed later
    does not count the hours between."""
    return union_seconds([(max(s, start), min(e, end)) for s, e in spans if e > start and s < end])


def compare(folder: Path, samples: Path) -> list[dict]:
    """Each sample's estimate against the real time left: the wall time, from the sample on, during which an
    epoch of a trial it covered was running (what the estimate estimates)."""
    status = search_status(folder)
    everything = [span for t in status.trials for span in t.epoch_spans]
    covered = {1: covered_spans(status, 1), None: covered_spans(status, None) if not status.heads_waiting_for_stage1
               else None}
    rows = []
    for line in samples.read_text().splitlines():
        seen = json.loads(line)
        if seen["finished"] == seen["total"] or not seen["wall_seconds"]:
            continue  # nothing left to estimate, or no epoch to estimate from yet
        spans = covered[1 if seen["heads_waiting"] else None]
        if spans is None:
            continue  # what this sample estimated has not finished yet
        real = wall_between(spans, seen["time"], float("inf"))
        rows.append({"minutes_in": round(wall_between(everything, float("-inf"), seen["time"]) / 60, 1),
                     "covers": "stage 1" if seen["heads_waiting"] else "all",
                     "finished": f"{seen['finished']}/{seen['total']}",
                     "estimated_minutes_left": round(seen["estimated_seconds_left"] / 60, 1),
                     "real_minutes_left": round(real / 60, 1),
                     "error_percent": round(100 * (seen["estimated_seconds_left"] - real) / real, 1) if real > 0
                     else None})
    return rows


def as_of(status: SearchStatus, moment: float) -> list[TrialStatus] | None:
    """The trials as `search-status` would have listed them at clock time `moment` (None before any epoch ended):
    the epochs that had ended by then; the dense heads only once every stage-1 trial had finished."""
    trials = []
    for trial in status.trials:
        ended = [i for i, (_, end) in enumerate(trial.epoch_spans) if end <= moment]
        state = "waiting" if not ended else "finished" if trial.state == "finished" and len(ended) == len(
            trial.epoch_spans) else "started"
        trials.append(replace(trial, state=state, epochs=len(ended),
                              epoch_seconds=tuple(trial.epoch_seconds[i] for i in ended),
                              epoch_spans=tuple(trial.epoch_spans[i] for i in ended)))
    if not any(trial.epoch_spans for trial in trials):
        return None
    stage1_done = all(t.state == "finished" for t in trials if t.stage == 1)
    return [t for t in trials if t.stage == 1 or stage1_done]


def replayed_samples(folder: Path, every: float, at_once: int, times: list[float] | None = None) -> list[dict]:
    """Samples as `watch` would have written them, at every `every` seconds from the first epoch's start (or at
    `times`)."""
    status = search_status(folder)
    spans = [span for t in status.trials for span in t.epoch_spans]
    start, end = min(s for s, _ in spans), max(e for _, e in spans)
    samples = []
    for moment in times or list(np.arange(start + every, end, every)):
        trials = as_of(status, moment)
        if trials is None:
            continue
        waiting = 0 if any(t.stage == 2 for t in trials) else status.total - len(trials)
        samples.append({"time": moment, "finished": sum(t.state == "finished" for t in trials),
                        "total": status.total, "heads_waiting": waiting,
                        "estimated_seconds_left": seconds_left(trials, status.budget) / at_once,
                        "wall_seconds": union_seconds([span for t in trials for span in t.epoch_spans])})
    return samples


def fit_fp32_weight(folder: Path) -> tuple[float, list[tuple[str, float, float]]]:
    """The weight of a multiply-add against a convolution output element (FP32_COST_PER_MULTIPLY_ADD) that best
    predicts the mean epoch time of a search's stage-1 trials as a common scale times their fp32 cost (least
    squares on the logarithm, over a grid): the weight, and each trial's (name, real, predicted) seconds."""
    status = search_status(folder)
    space = json.loads((status.folder / "search_settings.json").read_text())["space"]
    topologies = {t.name: t for t in SearchSpace(**{k: tuple(v) for k, v in space.items()}).stage1()}
    trials = [t for t in status.trials if t.stage == 1 and t.epoch_seconds]
    elements, multiply_adds = np.array([training_work(topologies[t.name]) for t in trials]).T[:2]
    real = np.array([np.mean(t.epoch_seconds) for t in trials])

    def predicted(weight: float) -> np.ndarray:
        cost = elements + weight * multiply_adds  # stage 1: no dense layers but the output's few weights
        return cost * np.exp(np.mean(np.log(real / cost)))

    weight = min(np.arange(0.001, 0.1, 0.001), key=lambda w: np.sum(np.log(real / predicted(w)) ** 2))
    return float(weight), [(t.name, r, p) for t, r, p in zip(trials, real, predicted(weight))]


def plot(rows: list[dict], path: Path, others: dict[str, list[dict]]) -> None:
    """Real and estimated time left against time into the search; `others`: estimates of other revisions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    axes.plot([r["minutes_in"] for r in rows], [r["real_minutes_left"] for r in rows], "k-", label="real")
    for label, series in {"search-status estimate": rows, **others}.items():
        axes.plot([r["minutes_in"] for r in series], [r["estimated_minutes_left"] for r in series], ".--",
                  label=label)
    axes.set_xlabel("minutes into the search (wall time with an epoch running)")
    axes.set_ylabel("minutes left")
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("watch", "report", "replay", "fit"))
    parser.add_argument("folder", type=Path, help="a search folder or a reproduce report folder")
    parser.add_argument("--samples", type=Path, help="JSON-lines file of status samples (watch, report; replay: "
                                                     "replay at their times)")
    parser.add_argument("--every", type=float, default=300, help="seconds between samples (watch, replay)")
    parser.add_argument("--concurrency", type=int, default=None, help="trials run at once (default: the cores)")
    parser.add_argument("--plot", type=Path, default=None, help="PNG of estimated against real time left")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--also", action="append", default=[], metavar="LABEL=ROWS.json",
                        help="add to the plot the estimates of another revision (its --json output)")
    args = parser.parse_args()
    if args.action == "fit":
        weight, trials = fit_fp32_weight(args.folder)
        print(f"fp32 cost per multiply-add: {weight:.3f} (estimated_cost uses {FP32_COST_PER_MULTIPLY_ADD})")
        for name, real, predicted in trials:
            print(f"{name:>14} {real:7.1f} s per epoch, predicted {predicted:7.1f} ({predicted / real - 1:+.0%})")
        return
    if args.action != "replay" and args.samples is None:
        parser.error(f"{args.action} needs --samples")
    if args.action == "watch":
        return watch(args.folder, args.samples, args.every, args.concurrency or available_cores())
    at_once = args.concurrency or available_cores()
    if args.action == "replay":
        times = [json.loads(line)["time"] for line in args.samples.read_text().splitlines()] if args.samples else None
        samples = replayed_samples(args.folder, args.every, at_once, times)
        args.samples = Path(tempfile.mkstemp(suffix=".jsonl")[1])
        args.samples.write_text("".join(json.dumps(sample) + "\n" for sample in samples))
    rows = compare(args.folder, args.samples)
    if args.json:
        return print(json.dumps(rows, indent=1))
    print(f"{'min in':>6} {'covers':>7} {'done':>6} {'estimated':>9} {'real':>6} {'error':>7}")
    for row in rows:
        error = "-" if row["error_percent"] is None else f"{row['error_percent']:+.0f}%"
        print(f"{row['minutes_in']:>6} {row['covers']:>7} {row['finished']:>6} {row['estimated_minutes_left']:>9} "
              f"{row['real_minutes_left']:>6} {error:>7}")
    errors = sorted(abs(row["error_percent"]) for row in rows if row["error_percent"] is not None)
    if errors:
        print(f"{len(errors)} estimates: median error {np.median(errors):.0f}%, largest {errors[-1]:.0f}% "
              "(of the real time left)")
    if args.plot and rows:
        plot(rows, args.plot, {label: json.loads(Path(file).read_text())
                               for label, file in (item.split("=", 1) for item in args.also)})


if __name__ == "__main__":
    main()
