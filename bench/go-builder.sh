#!/usr/bin/env bash
# Makes buildbot-bench/go-builder:1, the builder of the Go rows (issue 22): no public image can be
# pulled here, so it is a debootstrap'ed Debian bookworm with Debian's Go toolchain (golang-go),
# from this machine's own apt mirror (test/env/apt-mirror.sh). The root filesystem is cached
# between runs. Prints the reason and exits 3 when it cannot be made on this machine.
set -euo pipefail
image=buildbot-bench/go-builder:1
cache=${BUILDBOT_IMAGE_CACHE:-/var/cache/buildbot-test}/bookworm-go-1.tar
here=$(cd "$(dirname "$0")" && pwd)
if docker image inspect "$image" >/dev/null 2>&1; then exit 0; fi
if [[ ! -s $cache ]]; then
  [[ $(id -u) -eq 0 ]] || { echo "debootstrap needs root" >&2; exit 3; }
  command -v debootstrap >/dev/null || { echo "debootstrap is not installed" >&2; exit 3; }
  mirror=$(bash "$here/../test/env/apt-mirror.sh") || exit 3
  source "$here/../test/env/apt-mirror.sh" --proxy
  rootfs=$(mktemp -d /tmp/go-builder.XXXXXX)
  trap 'rm -rf "$rootfs"' EXIT
  debootstrap --variant=minbase --include=golang-go,ca-certificates bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
    || { echo "debootstrap of bookworm with golang-go from $mirror failed; see $rootfs.log" >&2; exit 3; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  mkdir -p "$(dirname "$cache")"
  tar -C "$rootfs" -cf "$cache.tmp" . && mv "$cache.tmp" "$cache"
fi
docker import -c 'ENV PATH=/usr/lib/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' -c 'ENV HOME=/root' "$cache" "$image" >/dev/null
