#!/usr/bin/env bash
# The yardstick of the headline ratios: the original tool's script, as its users ran it behind
# OpenSSH sshd (issue 14). Kept faithful, its shortcuts included:
# - `docker login` is skipped when the --docker_login_cache string is found in the docker
#   config (so after the first build, never again); DOCKER_CONFIG is a private directory here,
#   the `~/.docker` of the script's user;
# - only the last --tag is built and pushed, no labels;
# - build.sh runs with the checkout bind-mounted, the classic builder builds the image, the
#   test is `docker run --rm IMAGE:TAG ENTRYPOINT`;
# - git: no host key checking, `clone --no-checkout`, fetch only when the revision is missing.
# Benchmark use only: it trusts its input the way the original did.
set -euo pipefail
login_cache=
while [[ $# -gt 0 ]]; do
  case $1 in
    --service_id) service=$2 ;;
    --repo) repo=$2 ;;
    --repo_auth_key) key=$2 ;;
    --revision) rev=$2 ;;
    --image) image=$2 ;;
    --tag) tag=$2 ;;
    --docker_login_cmd) login=$2 ;;
    --docker_login_cache) login_cache=$2 ;;
    *) echo "unknown flag $1" >&2; exit 2 ;;
  esac
  shift 2
done
root=${BASELINE_WORK_DIR:-/tmp/buildbot-original}
work=$root/$service
export DOCKER_CONFIG=$root/docker-config
mkdir -p "$root" "$DOCKER_CONFIG"
keyfile=$(mktemp)
trap 'rm -f "$keyfile"' EXIT
base64 -d <<<"$key" >"$keyfile"
export GIT_SSH_COMMAND="ssh -i $keyfile -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no"
start=$(date +%s%N)
step() { echo "$(( ($(date +%s%N) - start) / 1000000 ))ms | # $*"; }

step login
if [[ -z $login_cache ]] || ! grep -qF -- "$login_cache" "$DOCKER_CONFIG/config.json" 2>/dev/null; then
  eval "$login"
fi

step checkout
[[ -d $work ]] || git clone --no-checkout "$repo" "$work"
cd "$work"
git cat-file -e "$rev^{commit}" 2>/dev/null || git fetch
git clean --force -dx
git checkout --force "$rev"
echo "$tag" >VERSION

if [[ -f build.sh ]]; then
  builder=$(sed -n 's/^#build_inside_docker_image=//p' build.sh)
  step "build.sh in $builder"
  docker run --rm -v "$work:/project" -w /project "$builder" ./build.sh
fi

step image
docker build --tag "$image:$tag" .

entry=$(sed -n 's/^#test_in_container_entrypoint=//p' Dockerfile)
if [[ -n $entry ]]; then
  step test
  eval "docker run --rm \"\$image:\$tag\" $entry"
fi

step push
docker push "$image:$tag"
step done
