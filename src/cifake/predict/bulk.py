"""`cifake predict --ray-address ADDR`: score a folder tree or a file list of any size on a Ray cluster.

Ray Data reads the list of paths, a pool of actors (each holding one Detector, loaded once) scores them in
batches, and the predictions come back in input order, the same rows `cifake predict` prints. The files (and a
model folder, if one is given) must be on storage every node sees at the same path; a bad file is a row with its
error, as in the local path.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import fields
from pathlib import Path

from cifake.cluster import ray_session
from cifake.predict.detector import Detector, Prediction

BATCH = 256  # paths per actor call: big enough that the per-call overhead is small next to decoding


class _Scorer:
    """A Ray Data actor: one Detector, scoring batches of paths."""

    def __init__(self, model: str | None, backend: str, threshold: float | None, threads: int):
        self.detector = Detector.load(model, backend, "cpu", threads=threads)
        self.threshold = threshold

    def __call__(self, batch: dict) -> dict:
        predictions = self.detector.predict([Path(p) for p in batch["path"]], self.threshold)
        return {f.name: [getattr(p, f.name) for p in predictions] for f in fields(Prediction)}


def predict_on_ray(paths: Iterable[Path], address: str | None, model: str | None = None, backend: str = "auto",
                   threshold: float | None = None, actors: int | None = None, threads_per_actor: int = 1
                   ) -> Iterator[Prediction]:
    """Predictions for every path, in order, computed by `actors` Ray actors (default: one per CPU of the
    cluster / threads_per_actor)."""
    import ray  # the distributed extra: cifake runs without it
    import ray.data

    items = [{"path": str(p)} for p in paths]
    if not items:
        return
    with ray_session(address):
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # rows come back in the order of the paths
        context.enable_progress_bars = False
        count = actors or max(1, int(ray.cluster_resources().get("CPU", 1)) // threads_per_actor)
        scored = ray.data.from_items(items).map_batches(
            _Scorer, fn_constructor_args=(model, backend, threshold, threads_per_actor), batch_size=BATCH,
            concurrency=count, num_cpus=threads_per_actor, batch_format="numpy")
        for row in scored.iter_rows():
            yield Prediction(**{f.name: _plain(row[f.name]) for f in fields(Prediction)})


def _plain(value):
    """A NumPy scalar from Ray Data as the plain Python value a Prediction holds (None stays None)."""
    return value.item() if hasattr(value, "item") else value
