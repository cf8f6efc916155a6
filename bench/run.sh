#!/usr/bin/env bash
# `npm run bench`: brings up the same real environment as the tests, runs bench/bench.ts, tears it down.
# Rows: BENCH_ROWS=1,4 (1 covers rows 1-3; 1,4,5,6,6b,7); runs: BENCH_RUNS (5, rows 1-4, 7), BENCH_BIG_RUNS (3, rows 5-6b); BENCH_STREAM_MB (200).
set -euo pipefail
cd "$(dirname "$0")/.."
source test/env/start.sh
node dist/bench/bench.js
