#!/bin/sh
# One build, in this process: see `buildbot.sh --help`. The logic lives in src/.
exec node "$(dirname "$(readlink -f "$0")")/../dist/src/cli/buildbot-main.js" "$@"
