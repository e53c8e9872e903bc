#!/bin/bash
# Training throughput of a base commit against the working tree, alternated so that a shared,
# noisy machine drifts equally on both sides: benchmarks/alternate_throughput.sh BASE [PAIRS]
# (run from the repository root, in its virtual environment).
set -e
base_commit=${1:?usage: $0 BASE_COMMIT [PAIRS]}
pairs=${2:-6}
base_dir=$(mktemp -d)
trap 'rm -rf "$base_dir"' EXIT
git archive "$base_commit" | tar -x -C "$base_dir"
for i in $(seq "$pairs"); do
  for side in base mine; do
    dir=$PWD; [ $side = base ] && dir=$base_dir
    line=$(cd "$dir" && PYTHONPATH=$dir python benchmarks/throughput.py --rows agad:naive --repeats 5 --threads 1 | grep '^agad:naive')
    echo "$side $i $line"
  done
done
