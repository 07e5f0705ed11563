"""The bundled model's scoring options, measured: accuracy, ROC-AUC and images/s of each way to run it.

`python benchmarks/bench_scoring.py [--run RUN_DIR] [--calibration 2000]` (default: the bundled model) scores the
20,000-image official test split, from decoded uint8 arrays, with:
- onnxruntime fp32, with and without test-time flips (flips double the work; do they earn it?),
- onnxruntime's graph optimisation levels (basic, extended, all) and thread counts,
- onnxruntime int8 static quantisation (QDQ, calibrated on CALIBRATION train images per label, drawn seeded),
and prints one Markdown row per option: accuracy, ROC-AUC, the change against fp32 with flips, images/s (best
of --repeats passes; batch 256 and all cores unless the row says otherwise). The issue's rule for int8: keep it
only if accuracy and AUC move by less than 0.1 point. Results also go to benchmarks/results/bench_scoring.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from common import REPO, data_path

from cifake.data import load_dataset
from cifake.data.dataset import available_cores
from cifake.metrics import compute_metrics
from cifake.models.export import export_onnx
from cifake.models.io import save_with_flips
from cifake.predict import bundled_model_dir


def session(path: Path, threads: int, level: str = "all"):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                                        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[level]
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def logits(sess, images: np.ndarray, batch: int = 256) -> np.ndarray:
    return np.concatenate([sess.run(None, {"pixels": images[i : i + batch]})[0].reshape(-1)
                           for i in range(0, len(images), batch)])


def rate(sess, images: np.ndarray, repeats: int, batch: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        logits(sess, images, batch)
        times.append(time.perf_counter() - started)
    return len(images) / min(times)


def export_variant(run: Path, folder: Path, flips: bool) -> Path:
    """The run's model exported with or without test-time flips (same weights)."""
    return export_onnx(save_with_flips(run, folder / f"flips-{flips}", flips))


def quantize(model: Path, calibration: np.ndarray, out: Path) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(calibration[i : i + 256] for i in range(0, len(calibration), 256))

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {"pixels": batch}

    prepared = out.with_suffix(".pre.onnx")
    quant_pre_process(str(model), str(prepared), skip_symbolic_shape=True)  # its symbolic pass fails on Concat
    quantize_static(str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", type=Path, default=None, help="run folder (default: the bundled model)")
    parser.add_argument("--calibration", type=int, default=2000, help="train images per label for int8 calibration")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    run = args.run or bundled_model_dir()
    data = load_dataset(data_path(), progress=False)
    test = data["test"].in_memory()
    train = data["train"]
    calibration = np.ascontiguousarray(train.take(train.limit_indices(args.calibration, seed=0)).images)
    cores = available_cores()
    rows, reference = [], None
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        flips, plain = export_variant(run, folder, True), export_variant(run, folder, False)
        int8 = quantize(flips, calibration, folder / "int8-flips.onnx")
        int8_plain = quantize(plain, calibration, folder / "int8-plain.onnx")
        options = [("fp32, flips", flips, cores, "all", 256),
                   ("fp32, flips, batch 64", flips, cores, "all", 64),
                   ("fp32, flips, batch 1024", flips, cores, "all", 1024),
                   ("fp32, flips, basic graph optimisation", flips, cores, "basic", 256),
                   ("fp32, flips, extended graph optimisation", flips, cores, "extended", 256),
                   ("fp32, flips, 1 thread", flips, 1, "all", 256), ("fp32, no flips", plain, cores, "all", 256),
                   ("int8, flips", int8, cores, "all", 256), ("int8, no flips", int8_plain, cores, "all", 256)]
        for name, path, threads, level, batch in options:
            sess = session(path, threads, level)
            scored = compute_metrics(logits(sess, test.images), test.labels)
            reference = reference or scored
            row = {"option": name, "accuracy": scored["accuracy"], "roc_auc": scored["roc_auc"],
                   "accuracy_change_pt": 100 * (scored["accuracy"] - reference["accuracy"]),
                   "roc_auc_change_pt": 100 * (scored["roc_auc"] - reference["roc_auc"]),
                   "images_per_second": rate(sess, test.images, args.repeats, batch), "threads": threads,
                   "batch": batch}
            rows.append(row)
            print(f"| {name} | {row['accuracy']:.4f} | {row['roc_auc']:.4f} | {row['accuracy_change_pt']:+.2f} | "
                  f"{row['roc_auc_change_pt']:+.3f} | {row['images_per_second']:,.0f} |", flush=True)
    out = REPO / "benchmarks" / "results" / "bench_scoring.json"
    out.write_text(json.dumps({"run": str(run), "cores": cores, "calibration_per_label": args.calibration,
                               "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
