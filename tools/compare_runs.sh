#!/usr/bin/env bash
# Seeded training runs of a git revision against the working tree, which must give byte-identical weights and
# identical metrics (a change that should not move a number: a refactor, a new option left at its default).
#
#   tools/compare_runs.sh REV
#
# Three runs on a 1,500 + 1,500 / 400 + 400 image subset of CIFAKE ($CIFAKE_DATA): the study's CNN, the residual
# CNN with the bundled recipe, and the same run stopped after 2 epochs and resumed to 3. Each side imports its
# own src/ with this checkout's .venv; the output is each run's metrics and its weights' SHA-256, then "identical".
set -euo pipefail
rev=$1
repo=$(git rev-parse --show-toplevel)
py=$repo/.venv/bin/python
work=$(mktemp -d)
git -C "$repo" worktree add --detach "$work/before" "$rev" >/dev/null
trap 'git -C "$repo" worktree remove --force "$work/before"' EXIT
data=$work/small.zip
"$py" -m cifake data subset "${CIFAKE_DATA:-$repo/../shared/data/cifake}" --out "$data" --train 1500 --test 400
runs() {  # runs SRC OUT
  mkdir -p "$2"
  export PYTHONPATH=$1 CIFAKE_CACHE=$2/cache
  local train=("$py" -m cifake train --data "$data" --quiet --json)
  local bundled=(--recipe "$repo/recipes/bundled.json" --topology resnet-s --patience 3)
  "${train[@]}" --out "$2/paper" --epochs 3 > "$2/paper.json"
  "${train[@]}" --out "$2/res" "${bundled[@]}" --epochs 3 > "$2/res.json"
  "${train[@]}" --out "$2/resume" "${bundled[@]}" --epochs 2 > /dev/null
  "${train[@]}" --out "$2/resume" "${bundled[@]}" --epochs 3 --resume > "$2/resume.json"
  for run in paper res resume; do
    "$py" -c "import json; r = json.load(open('$2/$run.json')); print('$run', r['best_epoch'], r['validation'], r['test'])"
    sha256sum "$2/$run/model.safetensors" | cut -c1-64
  done
}
runs "$work/before/src" "$work/old" > "$work/old.txt"
runs "$repo/src" "$work/new" > "$work/new.txt"
cat "$work/new.txt"
diff "$work/old.txt" "$work/new.txt" && echo identical
