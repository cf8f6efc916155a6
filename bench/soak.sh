#!/usr/bin/env bash
# The soak (bench/soak.ts) in the same real environment as the tests: 30 builds of mixed outcomes.
set -euo pipefail
cd "$(dirname "$0")/.."
source test/env/start.sh
node dist/bench/soak.js
