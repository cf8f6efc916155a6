#!/usr/bin/env bash
# The yardstick: what buildbot replaces, a bash script behind OpenSSH sshd driving the git and
# docker CLIs, written from the same step list and kept efficient (fetch only when needed,
# no container logs, quiet push). Same flags as buildbot.sh. Benchmark use only.
set -euo pipefail
tags=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --service_id) service=$2 ;;
    --repo) repo=$2 ;;
    --repo_auth_key) key=$2 ;;
    --revision) rev=$2 ;;
    --image) image=$2 ;;
    --tag) IFS=, read -ra more <<<"$2"; tags+=("${more[@]}") ;;
    --docker_login_cmd) login=$2 ;;
    --docker_login_cache) ;; # it logs in on every build
    *) echo "unknown flag $1" >&2; exit 2 ;;
  esac
  shift 2
done
work=${BASELINE_WORK_DIR:-/tmp/buildbot-baseline}/$service
mkdir -p "$(dirname "$work")"
keyfile=$(mktemp)
trap 'rm -f "$keyfile"' EXIT
base64 -d <<<"$key" >"$keyfile"
export GIT_SSH_COMMAND="ssh -i $keyfile -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile=$work.known_hosts"
start=$(date +%s%N)
step() { echo "$(( ($(date +%s%N) - start) / 1000000 ))ms | # $*"; }

step login
eval "$login" >/dev/null 2>&1

step checkout
if [[ -d $work/.git ]]; then
  git -C "$work" cat-file -e "$rev^{commit}" 2>/dev/null \
    || git -C "$work" fetch -q --prune --tags --force origin '+refs/heads/*:refs/remotes/origin/*'
else
  git clone -q --no-checkout "$repo" "$work"
fi
cd "$work"
sha=$(git rev-parse --verify -q "origin/$rev^{commit}" || git rev-parse --verify "$rev^{commit}")
git -c advice.detachedHead=false checkout -q -f --detach "$sha"
git clean -qffdx
echo "${tags[0]}" >VERSION

if [[ -f build.sh ]]; then
  builder=$(sed -n 's/^#build_inside_docker_image=//p' build.sh)
  step "build.sh in $builder"
  docker run --rm --log-driver none -v "$work:/project" -w /project "$builder" sh ./build.sh
fi

step image
targs=()
for t in "${tags[@]}"; do targs+=(-t "$image:$t"); done
docker build "${targs[@]}" --label "org.opencontainers.image.revision=$sha" --label "org.opencontainers.image.source=$repo" \
  --label "org.opencontainers.image.version=${tags[0]}" --label "org.opencontainers.image.created=$(date -u +%FT%TZ)" . 2>&1 \
  | grep -v -e '^DEPRECATED' -e '^ *Install the buildx' -e '^ *https://docs.docker.com/go/buildx'

entry=$(sed -n 's/^#test_in_container_entrypoint=//p' Dockerfile)
if [[ -n $entry ]]; then
  step test
  docker run --rm --log-driver none --entrypoint sh "$image:${tags[0]}" -c "$entry"
fi

step push
for t in "${tags[@]}"; do docker push -q "$image:$t"; done
step done
