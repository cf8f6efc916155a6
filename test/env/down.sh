#!/usr/bin/env bash
# Stops what test/env/up.sh started and removes what the tests left in the engine.
set -u
: "${BUILDBOT_TEST_DIR:?}"
dir=$BUILDBOT_TEST_DIR
stop() { [[ -f $1 ]] && kill "$(cat "$1")" 2>/dev/null; rm -f "$1"; }
stop "$dir/githost/sshd.pid"
# The test cluster first: its files go with the test dir below.
[[ -x $dir/postgres-ctl.sh ]] && "$dir/postgres-ctl.sh" stop -m fast >/dev/null 2>&1
[[ -f $dir/postgres.dir ]] && rm -rf "$(cat "$dir/postgres.dir")"
stop "$dir/registry.pid"
if docker info >/dev/null 2>&1; then
  ids=$(docker ps -aq --filter label=io.buildbot.build)
  [[ -n $ids ]] && docker rm -f $ids >/dev/null
  images=$(docker images -q --filter 'reference=buildbot-test/*' ; docker images --format '{{.Repository}}:{{.Tag}}' | grep -E '^127\.0\.0\.1:' || true)
  [[ -n $images ]] && docker rmi -f $images >/dev/null 2>&1
fi
if [[ -f $dir/dockerd.pid ]]; then
  pid=$(cat "$dir/dockerd.pid"); kill "$pid" 2>/dev/null
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  rm -f "$dir/dockerd.pid"
fi
rm -rf "$dir"
