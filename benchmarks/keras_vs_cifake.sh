#!/usr/bin/env bash
# The study's CNN in Keras / TensorFlow and in cifake, alternated in one run: training images/s at batch 64 on
# the same 20,000 CIFAKE train images, ROUNDS times each (a busy moment of the machine hits both alike). cifake
# asks for bf16, which runs fp32 on a CPU without bf16 kernels; its row names what ran.
#   make keras-venv && benchmarks/keras_vs_cifake.sh 3
set -euo pipefail
rounds=${1:-3}
repo=$(cd "$(dirname "$0")/.." && pwd)
for round in $(seq "$rounds"); do
  echo "== round $round"
  "$repo/.venv-tf/bin/python" "$repo/benchmarks/keras_anchor.py" --images 20000 2>/dev/null | tail -n 1
  "$repo/.venv/bin/python" "$repo/benchmarks/bench_train.py" --batch-sizes 64 --precisions bf16 \
    --formats channels_last --images 20000 --repeats 2 | tail -n 1 \
    | sed -E 's/^\| 64 \| ([a-z0-9]+) \| channels_last \| off /| cifake (\1) /'
done
