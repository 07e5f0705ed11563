# Set-up and the main jobs. `make test` and `make reproduce` install everything they need first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CIFAKE_DATA ?= ../shared/data/cifake
FACES_DATA ?= ../shared/data/faces/faces.zip
RUN ?= runs/paper
export CIFAKE_DATA

.PHONY: install browser lint test planted mutate reproduce paper-model bundle bench clean keras-venv

install: $(VENV)/.installed

# torch first, pinned: 2.13.0 is the CPU wheel (an unpinned torch would pull a multi-GB CUDA build); torchvision
# (for timm) pinned to its release for that torch, else pip would replace torch to fit a newer one
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0 torchvision==0.28.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# Debian's Chromium for the end-to-end test of the web page (needs root to install; CI runs as root)
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq chromium; } \
	  || echo "chromium is missing and could not be installed: the browser test will be skipped"

# Style and likely bugs (pyflakes, bugbear, pycodestyle; settings in pyproject.toml), then the tests
lint: install
	$(BIN)/ruff check src tests benchmarks tools

# On every core; the tests on the real zips share one worker (xdist_group), so they are decoded once
test: install browser lint
	$(BIN)/python -m pytest -n auto --dist loadgroup

# Known bugs planted one at a time in a copy of the code, each checked against its own area's tests; CI runs it
# before the suite, which runs the same tests on the unchanged code, so the planting skips that run (2.2 min on
# 2 cores)
planted: install
	$(BIN)/python tools/planted_bugs.py --skip-clean-run

# Mutation testing of the core modules (mutmut; modules and tests in pyproject.toml), then the score per module.
# A benchmark, not part of CI. Results stay in mutants/, so a rerun tests again only what changed. One torch
# thread per mutant's process: a process per core already fills the cores.
mutate: install
	OMP_NUM_THREADS=1 $(BIN)/mutmut run --max-children $$(nproc)
	$(BIN)/python tools/mutation_score.py

# The main job: the study's whole experiment on a reduced budget (audit, the 12 extractors, the study's model on
# the whole train split, test, Grad-CAM, report); rerunning resumes. PROFILE=paper runs the full 36-topology protocol.
PROFILE ?= quick
reproduce: install
	$(BIN)/cifake reproduce --data $(CIFAKE_DATA) --out reports/$(PROFILE) --profile $(PROFILE)

# The study's chosen CNN alone: train, evaluate with and without leaked duplicates, explain.
paper-model: install
	$(BIN)/cifake train --data $(CIFAKE_DATA) --topology paper --out $(RUN) --resume
	$(BIN)/cifake evaluate $(RUN) --data $(CIFAKE_DATA) --exclude-leaked
	$(BIN)/cifake explain $(RUN) --data $(CIFAKE_DATA) --split test --sample 1000 --out $(RUN)/explain

# The bundled default model: two residual CNNs (resnet4) trained with the recipe beyond the study, random
# degradations and shifts (recipes/bundled.json: 32 epochs; recipes/bundled-b.json: shifts 3, weight decay 0.2,
# 40 epochs), combined into one ensemble (their mean logit), then evaluation (test with and without leaked duplicates,
# validation), calibration with the domain check, ONNX export, robustness, the check on real photographs from
# outside CIFAKE, what the domain check changes there (and on FACES_DATA when it exists), the card.
bundle: install
	$(BIN)/cifake train --data $(CIFAKE_DATA) --recipe recipes/bundled.json --out runs/bundled-a --resume
	$(BIN)/cifake train --data $(CIFAKE_DATA) --recipe recipes/bundled-b.json --out runs/bundled-b --resume
	$(BIN)/cifake ensemble runs/bundled-a runs/bundled-b --out runs/bundled
	$(BIN)/cifake evaluate runs/bundled --data $(CIFAKE_DATA)
	$(BIN)/cifake evaluate runs/bundled --data $(CIFAKE_DATA) --exclude-leaked
	$(BIN)/cifake evaluate runs/bundled --data $(CIFAKE_DATA) --split validation
	$(BIN)/cifake calibrate runs/bundled --data $(CIFAKE_DATA)
	$(BIN)/cifake export runs/bundled --onnx runs/bundled/model.onnx
	$(BIN)/cifake robustness runs/bundled --data $(CIFAKE_DATA)
	$(BIN)/python tools/outside_photos.py build/outside
	$(BIN)/cifake robustness runs/bundled --data build/outside/photos --out runs/bundled/outside-photos
	$(BIN)/cifake robustness runs/bundled --data build/outside/faces --out runs/bundled/outside-faces
	$(BIN)/python tools/domain_check.py runs/bundled --outside build/outside --data $(CIFAKE_DATA) \
		--faces $(FACES_DATA) --out runs/bundled/domain-check.json
	$(BIN)/python tools/bundle_model.py runs/bundled

bench: install
	$(BIN)/python benchmarks/bench_data.py
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_inference.py
	$(BIN)/python benchmarks/bench_generate.py
	$(BIN)/python benchmarks/bench_predict.py
	$(BIN)/python benchmarks/bench_serve.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache mutants

# TensorFlow in a virtualenv of its own, for benchmarks/keras_anchor.py (the study's CNN in Keras); a benchmark
# tool, not part of CI
keras-venv: .venv-tf/.installed
.venv-tf/.installed:
	$(PYTHON) -m venv .venv-tf
	.venv-tf/bin/python -m pip install --quiet 'tensorflow==2.21.*'
	touch $@
