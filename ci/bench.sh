#!/usr/bin/env bash
# Benchmarks (never part of the default `pytest`): pytest-benchmark suites and the
# `nnkit bench` table with peers, results saved as JSON under ${1:-results/}.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-results}"
mkdir -p "$out"
pip install -e ".[test]" >/dev/null
pytest benchmarks -q -p no:cacheprovider --benchmark-only --benchmark-json "$out/pytest-benchmark.json" \
  --benchmark-columns=median,ops,rounds
nnkit bench --dtype both --peers torch,jax --json "$out/nnkit-bench.json" | tee "$out/nnkit-bench.txt"
