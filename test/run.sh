#!/usr/bin/env bash
# The test command (`npm test`): installs what is missing, brings up the real components
# on loopback (Docker engine, registry with auth, OpenSSH git host, base images), runs the
# unit and end-to-end tests, and tears it all down again, whatever the outcome.
set -euo pipefail
cd "$(dirname "$0")/.."
source test/env/start.sh

# Unit tests first (fast, no environment needed), then the end-to-end files one at a time:
# they share one engine and assert on which containers exist.
node --test --test-concurrency=1 "$@" dist/test/unit/*.test.js dist/test/e2e/*.test.js
