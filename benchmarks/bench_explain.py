"""Seconds per explanation method for a model's maps of N seeded test images, half per label (the maps alone, not
the report's analysis): python benchmarks/bench_explain.py RUN_DIR [N=1000]"""

import sys

from common import data_path, timed

from cifake.data import load_dataset
from cifake.explain.methods import make_method
from cifake.models import load_model
from cifake.workflows.experiment import evaluation_images
from cifake.workflows.explain_compare import methods_for

model, config = load_model(sys.argv[1])
data = load_dataset(data_path(), preprocess=model.preprocess, progress=False)
images = evaluation_images(config, data, "test")[0].limit(int((sys.argv[2:] or [1000])[0]) // 2, 1).in_memory().images
seconds: dict = {}
for method in methods_for(model):
    with timed(method, seconds):
        make_method(method, model)(images, "predicted")
    print(f"{method:>12}: {len(images):,} images in {seconds[method]:.1f} s", flush=True)
