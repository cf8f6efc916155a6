#!/usr/bin/env bash
# Makes buildbot-test/node-base:2, the base the server's image is built on in the tests:
# no public image can be pulled here, so it is a debootstrap'ed Debian with git, ssh and hg,
# and this machine's Node.js, its headers (as the official node images ship them, for native
# addons) and npm copied in. The rootfs tarball is cached between runs.
# Prints the reason and exits 3 when it cannot be made on this machine.
set -euo pipefail
image=buildbot-test/node-base:2
cache=${BUILDBOT_IMAGE_CACHE:-/var/cache/buildbot-test}/bookworm-node-2.tar
if docker image inspect "$image" >/dev/null 2>&1; then exit 0; fi
if [[ ! -s $cache ]]; then
  if [[ $(id -u) -ne 0 ]]; then echo "debootstrap needs root" >&2; exit 3; fi
  command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2 || { echo "debootstrap is not installed and could not be" >&2; exit 3; }
  node_bin=$(readlink -f "$(command -v node)")
  npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
  mirror=$(bash "$(dirname "$0")/apt-mirror.sh") || exit 3
  source "$(dirname "$0")/apt-mirror.sh" --proxy
  rootfs=$(mktemp -d /tmp/node-base.XXXXXX)
  trap 'rm -rf "$rootfs"' EXIT
  debootstrap --variant=minbase --include=git,openssh-client,mercurial,ca-certificates bookworm "$rootfs" "$mirror" >/dev/null 2>&1 \
    || { echo "debootstrap of bookworm from $mirror (this machine's apt mirror) failed; is it reachable?" >&2; exit 3; }
  # Trust what this machine trusts: its package registries may sit behind a proxy with its own CA.
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  cp "$node_bin" "$rootfs/usr/bin/node"
  headers=$(dirname "$(dirname "$node_bin")")/include/node
  [[ -f $headers/node.h ]] || { echo "no Node.js headers at $headers to build native addons against; install a Node.js that ships them (Debian's nodejs package puts them in /usr/include/node)" >&2; exit 3; }
  mkdir -p "$rootfs/usr/include" && cp -a "$headers" "$rootfs/usr/include/node"
  mkdir -p "$rootfs/usr/lib/node_modules"
  cp -a "$npm_dir" "$rootfs/usr/lib/node_modules/npm"
  ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/bin/npm"
  ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/bin/npx"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  mkdir -p "$(dirname "$cache")"
  tar -C "$rootfs" -cf "$cache.tmp" . && mv "$cache.tmp" "$cache"
fi
docker import -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' "$cache" "$image" >/dev/null
