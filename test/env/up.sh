#!/usr/bin/env bash
# Brings up the real components the tests talk to, all on loopback:
# a Docker engine (started only if none answers), a registry with htpasswd auth,
# an OpenSSH git host that accepts only a deploy key, locally made base images, and a
# PostgreSQL cluster of its own (HAProxy is only checked to be installed, for the replica tests).
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
  [initdb]=postgresql [pg_ctl]=postgresql [haproxy]=haproxy
)
# Debian keeps PostgreSQL's server programs off PATH, in /usr/lib/postgresql/VERSION/bin.
pg_bin_dir() { compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort -V | tail -1 | xargs -r dirname; }
missing=()
for cmd in "${!pkg_for[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || [[ -x /usr/sbin/$cmd ]] || compgen -G "/usr/lib/postgresql/*/bin/$cmd" >/dev/null ||
    missing+=("${pkg_for[$cmd]}")
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

# --- PostgreSQL ----------------------------------------------------------------
# A cluster of its own under the test dir (never the package's system cluster), on loopback only, with
# a role that logs in by password (scram-sha-256) and may create databases (each test file makes its
# own), and a database for the tests. No Unix socket: every client, psql here included, comes over TCP.
# It starts in the background while the rest comes up (initdb alone takes 1-2 s on 2 cores).
pg_bin=$(pg_bin_dir)
pg_port=$(free_port)
pg_user=buildbot_test
pg_db=buildbot_test
pg_password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
pg_dir=$dir/postgres
as_pg=()
if [[ $(id -u) -eq 0 ]]; then
  # initdb refuses root: the cluster belongs to the package's postgres user, which must reach the
  # test dir (traverse only, by group: the files the tests keep there stay unreadable to it).
  as_pg=(runuser -u postgres --)
  chgrp postgres "$dir" && chmod g+x "$dir"
  if ! runuser -u postgres -- test -x "$dir"; then
    pg_dir=$(mktemp -d /tmp/buildbot-postgres.XXXXXX)  # a parent folder it cannot pass
    echo "$pg_dir" >"$dir/postgres.dir"
  fi
fi
start_postgres() {
  local started=$SECONDS admin_password
  admin_password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
  mkdir -p "$pg_dir"; chmod 700 "$pg_dir"
  ((${#as_pg[@]})) && chown postgres: "$pg_dir"
  printf '%s\n' "$admin_password" >"$pg_dir/pwfile"
  ((${#as_pg[@]})) && chown postgres: "$pg_dir/pwfile"
  # --no-sync and fsync=off: a crash of the test machine loses a cluster that is thrown away anyway.
  "${as_pg[@]}" "$pg_bin/initdb" -D "$pg_dir/data" -U postgres --pwfile="$pg_dir/pwfile" --auth-host=scram-sha-256 \
    --auth-local=reject --no-sync -E UTF8 --locale=C.UTF-8 >"$pg_dir/initdb.log" 2>&1 || { cat "$pg_dir/initdb.log"; return 1; }
  rm -f "$pg_dir/pwfile"
  # pg_stat_statements: the tests count the statements a batching writer sends.
  cat >>"$pg_dir/data/postgresql.conf" <<CONF
port = $pg_port
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
fsync = off
synchronous_commit = off
full_page_writes = off
shared_preload_libraries = 'pg_stat_statements'
max_connections = 200
CONF
  cat >"$dir/postgres-ctl.sh" <<CTL
#!/usr/bin/env bash
# pg_ctl of the test cluster, as the user that owns it: postgres-ctl.sh start|stop -m fast|restart -m fast|status
exec ${as_pg[*]} $pg_bin/pg_ctl -D $pg_dir/data -l $pg_dir/server.log -w -t 60 "\$@"
CTL
  chmod +x "$dir/postgres-ctl.sh"
  "$dir/postgres-ctl.sh" start >/dev/null || { tail -20 "$pg_dir/server.log"; return 1; }
  PGPASSWORD=$admin_password "$pg_bin/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -d template1 -qX -v ON_ERROR_STOP=1 <<SQL >/dev/null
CREATE EXTENSION pg_stat_statements;
CREATE ROLE $pg_user LOGIN CREATEDB PASSWORD '$pg_password';
GRANT pg_read_all_stats TO $pg_user;
CREATE DATABASE $pg_db OWNER $pg_user;
SQL
  log "PostgreSQL up in $((SECONDS - started)) s"
}
start_postgres >"$dir/postgres-start.log" 2>&1 &
postgres_job=$!
# Whatever fails below, this script ends only after that job: down.sh then finds the cluster to stop
# (a postmaster started after down.sh ran would outlive the test dir).
trap 'wait "$postgres_job" 2>/dev/null' EXIT

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

wait "$postgres_job" || { log "PostgreSQL did not come up"; cat "$dir/postgres-start.log" >&2; exit 1; }
cat "$dir/postgres-start.log" >&2
printf '%s' "$pg_password" >"$dir/postgres-password"; chmod 600 "$dir/postgres-password"

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
  "busyboxImage": "$busybox_image",
  "postgresUrl": "postgres://$pg_user@127.0.0.1:$pg_port/$pg_db",
  "postgresPassword": "$pg_password",
  "postgresPasswordFile": "$dir/postgres-password",
  "postgresCtl": "$dir/postgres-ctl.sh",
  "postgresBin": "$pg_bin",
  "haproxy": "$(command -v haproxy || echo /usr/sbin/haproxy)"
}
JSON
log "ready: registry 127.0.0.1:$registry_port, git host 127.0.0.1:$git_port, image $busybox_image, PostgreSQL 127.0.0.1:$pg_port"
