#!/usr/bin/env bash
# Before and after, alternated in one run: a benchmark of a git revision against the working tree.
#
#   benchmarks/compare_revisions.sh REV [ROUNDS] -- BENCHMARK ARGS...
#   benchmarks/compare_revisions.sh HEAD~1 3 -- benchmarks/bench_train.py --batch-sizes 64 --precisions bf16 \
#       --formats channels_last --images 20000 --repeats 2
#
# REV is checked out into a temporary worktree; both sides run with this checkout's .venv, each importing its own
# src/ (PYTHONPATH), alternating ROUNDS times so that a busy moment of the machine hits both alike.
set -euo pipefail
rev=$1; rounds=${2:-3}; shift 2; [ "${1:-}" = "--" ] && shift
repo=$(git rev-parse --show-toplevel)
python=$repo/.venv/bin/python
before=$(mktemp -d)/before
git -C "$repo" worktree add --detach "$before" "$rev" >/dev/null
trap 'git -C "$repo" worktree remove --force "$before"' EXIT
for round in $(seq "$rounds"); do
  for side in before after; do
    dir=$([ "$side" = before ] && echo "$before" || echo "$repo")
    echo "== $side ($([ "$side" = before ] && echo "$rev" || echo "working tree")), round $round"
    (cd "$dir" && PYTHONPATH="$dir/src" "$python" "$@" | tail -n 1)
  done
done
