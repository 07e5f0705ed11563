"""The study's CNN in its own framework: Keras / TensorFlow training throughput, the anchor for bench_train.py.

The model is the study's chosen one, built as the paper describes it in Keras: Conv2D(32, 3x3, ReLU, 'valid'),
MaxPooling2D(2), the same again, Flatten, Dense(64, ReLU), Dense(1, sigmoid): 84,001 weights, exactly cifake's
`paper` topology. It trains with Adam and binary cross-entropy at batch 64 on the first `--images` CIFAKE train
images (half REAL, half FAKE), decoded with TensorFlow's own JPEG decoder; the best epoch after the first is
reported, as bench_train.py reports its best epoch.

It runs in a TensorFlow virtualenv of its own (`make keras-venv`), so cifake's venv never imports TensorFlow:

    .venv-tf/bin/python benchmarks/keras_anchor.py --images 20000
    benchmarks/keras_vs_cifake.sh 3      # alternated with bench_train.py, 3 rounds
"""

from __future__ import annotations

import argparse
import os
import time
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def load_images(zip_path: Path, per_label: int) -> tuple[np.ndarray, np.ndarray]:
    import tensorflow as tf

    pixels, labels = [], []
    with zipfile.ZipFile(zip_path) as archive:
        for label, folder in ((1, "REAL"), (0, "FAKE")):
            names = sorted(n for n in archive.namelist() if f"/{folder}/" in f"/{n}" and n.endswith(".jpg"))
            for name in names[:per_label]:
                pixels.append(tf.io.decode_jpeg(archive.read(name), channels=3).numpy())
                labels.append(label)
    return np.stack(pixels), np.asarray(labels, np.float32)


def study_cnn():
    import keras
    from keras import layers

    model = keras.Sequential([
        keras.Input((32, 32, 3)),
        layers.Rescaling(1 / 255),
        layers.Conv2D(32, 3, activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(32, 3, activation="relu"),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(64, activation="relu"),
        layers.Dense(1, activation="sigmoid"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy", metrics=["accuracy"])
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs; the best after the first is reported")
    args = parser.parse_args()
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(1)
    data = Path(os.environ.get("CIFAKE_DATA", REPO.parent / "shared" / "data" / "cifake"))
    x, y = load_images(data / "train.zip", args.images // 2)
    order = np.random.default_rng(1).permutation(len(x))
    x, y = x[order], y[order]
    model = study_cnn()
    seconds = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.started)

    model.fit(x, y, batch_size=64, epochs=args.epochs, verbose=0, callbacks=[Timer()], shuffle=True)
    rate = len(x) / min(seconds[1:] or seconds)
    print(f"keras {keras.__version__}, tensorflow {tf.__version__}; {model.count_params():,} weights; "
          f"{len(x):,} images, batch 64")
    print(f"| keras | {rate:,.0f} |")


if __name__ == "__main__":
    main()
