#!/usr/bin/env bash
# `npm run bench`: brings up the same real environment as the tests, runs bench/bench.ts, tears it down.
# Rows: BENCH_ROWS=1,4 (1 covers rows 1-3; 1,4,5,6,6b,7); runs: BENCH_RUNS (5, rows 1-4, 7), BENCH_BIG_RUNS (3, rows 5-6b); BENCH_STREAM_MB (200).
set -euo pipefail
cd "$(dirname "$0")/.."
source test/env/start.sh
# BENCH_ROWS=engines: issue 19's rows (two engines), bench/engines.ts; the other rows are bench/bench.ts's.
rows=,${BENCH_ROWS:-},
if [[ -z ${BENCH_ROWS:-} || $rows == *,engines,* ]]; then node dist/bench/engines.js; fi
rest=$(tr ',' '\n' <<<"${BENCH_ROWS:-}" | grep -vx engines | paste -sd, || true)
if [[ -z ${BENCH_ROWS:-} ]]; then node dist/bench/bench.js; elif [[ -n $rest ]]; then BENCH_ROWS=$rest node dist/bench/bench.js; fi
