#!/usr/bin/env bash
# Brings up the real components the tests talk to, all on loopback:
# a Docker engine (started only if none answers), a registry with htpasswd auth,
# an OpenSSH git host that accepts only a deploy key, and locally made base images.
# Writes $BUILDBOT_TEST_DIR/env.json for the tests; test/env/down.sh undoes it all.
set -euo pipefail
: "${BUILDBOT_TEST_DIR:?set BUILDBOT_TEST_DIR to a scratch directory}"
dir=$BUILDBOT_TEST_DIR
mkdir -p "$dir"
log() { echo "test-env: $*" >&2; }

# --- system packages -------------------------------------------------------
declare -A pkg_for=(
  [dockerd]=docker.io [docker-registry]=docker-registry [htpasswd]=apache2-utils
  [sshd]=openssh-server [ssh]=openssh-client [ssh-keygen]=openssh-client
  [git]=git [hg]=mercurial [busybox]=busybox-static [chromium]=chromium
)
missing=()
for cmd in "${!pkg_for[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || [[ -x /usr/sbin/$cmd ]] || missing+=("${pkg_for[$cmd]}")
done
if ((${#missing[@]})); then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    log "installing ${missing[*]}"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
  else
    log "missing Debian packages: ${missing[*]}; install them (as root: apt-get install ${missing[*]}) and run again"
    exit 1
  fi
fi
export PATH=$PATH:/usr/sbin

free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { log "$what did not come up"; return 1; }
    sleep 0.2
  done
}

# --- Docker engine -----------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
  log "no Docker engine answers; starting dockerd"
  dockerd >"$dir/dockerd.log" 2>&1 &
  echo $! >"$dir/dockerd.pid"
  wait_for 60 dockerd docker info || { tail -20 "$dir/dockerd.log" >&2; exit 1; }
fi

# --- registry with htpasswd auth --------------------------------------------
registry_port=$(free_port)
registry_user=buildbot-test
registry_password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
mkdir -p "$dir/registry/data"
htpasswd -Bbn "$registry_user" "$registry_password" >"$dir/registry/htpasswd" 2>/dev/null
cat >"$dir/registry/config.yml" <<YML
version: 0.1
log: { level: warn }
storage:
  filesystem: { rootdirectory: $dir/registry/data }
  delete: { enabled: true }
http:
  addr: 127.0.0.1:$registry_port
auth:
  htpasswd: { realm: buildbot-test, path: $dir/registry/htpasswd }
YML
docker-registry serve "$dir/registry/config.yml" >"$dir/registry.log" 2>&1 &
echo $! >"$dir/registry.pid"
wait_for 20 registry bash -c "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$registry_port/v2/ | grep -q 401"

# --- OpenSSH git host --------------------------------------------------------
git_port=$(free_port)
mkdir -p "$dir/githost/repos" /run/sshd
rm -f "$dir"/githost/host_key* "$dir"/keys/*
ssh-keygen -q -t ed25519 -N '' -C githost -f "$dir/githost/host_key"
mkdir -p "$dir/keys"
ssh-keygen -q -t ed25519 -N '' -C deploy -f "$dir/keys/deploy_ed25519"
ssh-keygen -q -t rsa -b 3072 -m PEM -N '' -C deploy-rsa -f "$dir/keys/deploy_rsa"
ssh-keygen -q -t ecdsa -N '' -C deploy-ecdsa -f "$dir/keys/deploy_ecdsa"
ssh-keygen -q -t ed25519 -N '' -C stranger -f "$dir/keys/stranger_ed25519"
ssh-keygen -q -t ed25519 -N '' -C ci-client -f "$dir/keys/client_ed25519"
ssh-keygen -q -t rsa -b 3072 -N '' -C ci-client-rsa -f "$dir/keys/client_rsa"
for k in deploy_ed25519 deploy_rsa deploy_ecdsa; do
  echo "restrict $(cat "$dir/keys/$k.pub")"
done >"$dir/githost/authorized_keys"
cat >"$dir/githost/sshd_config" <<CFG
Port $git_port
ListenAddress 127.0.0.1
HostKey $dir/githost/host_key
PidFile $dir/githost/sshd.pid
AuthorizedKeysFile $dir/githost/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
LogLevel ERROR
CFG
"$(command -v sshd)" -f "$dir/githost/sshd_config" -E "$dir/githost/sshd.log"
wait_for 20 sshd bash -c "echo > /dev/tcp/127.0.0.1/$git_port"

# --- base images: no registry can be reached, so make them from static busybox
rootfs=$dir/busybox-rootfs
rm -rf "$rootfs"; mkdir -p "$rootfs/bin" "$rootfs/tmp" "$rootfs/etc"
cp "$(command -v busybox)" "$rootfs/bin/busybox"
for applet in $("$rootfs/bin/busybox" --list); do
  [[ $applet == busybox ]] || ln -s busybox "$rootfs/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' >"$rootfs/etc/passwd"
echo 'nobody:x:65534:65534:nobody:/:/bin/sh' >>"$rootfs/etc/passwd"
busybox_image=buildbot-test/busybox:latest
tar -C "$rootfs" -c . | docker import -c 'ENV PATH=/bin' - "$busybox_image" >/dev/null

cat >"$dir/env.json" <<JSON
{
  "registry": "127.0.0.1:$registry_port",
  "registryUser": "$registry_user",
  "registryPassword": "$registry_password",
  "gitHost": "127.0.0.1",
  "gitPort": $git_port,
  "gitHostPublicKey": "$(cut -d' ' -f1,2 "$dir/githost/host_key.pub")",
  "reposDir": "$dir/githost/repos",
  "keysDir": "$dir/keys",
  "busyboxImage": "$busybox_image"
}
JSON
log "ready: registry 127.0.0.1:$registry_port, git host 127.0.0.1:$git_port, image $busybox_image"
