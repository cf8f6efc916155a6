#!/usr/bin/env bash
# Prints the Debian mirror this machine's own apt configuration uses (the URI of its main
# suite's "main" component), for debootstrap: a machine whose packages come from a local mirror
# or a proxy gets its base images from there too, and no host is named in the code.
# Exits 3 with the reason when none is found. `source test/env/apt-mirror.sh --proxy` instead
# exports apt's Acquire::http::Proxy as http_proxy (which debootstrap reads), when apt has one.
if [[ ${1:-} == --proxy ]]; then
  if [[ -z ${http_proxy:-} ]] && command -v apt-config >/dev/null; then
    eval "$(apt-config shell http_proxy Acquire::http::Proxy)"
    [[ -z ${http_proxy:-} ]] || export http_proxy
  fi
  return 0 2>/dev/null || exit 0
fi
set -euo pipefail
command -v apt-get >/dev/null || { echo "no apt-get on this machine to find a Debian mirror with" >&2; exit 3; }
# The main suite (bookworm, not bookworm-updates or -security): the archive debootstrap needs.
mirror=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 'Identifier: Packages' 'Component: main' 2>/dev/null \
  | awk '$2 !~ /-/ && $1 ~ /^https?:\/\// { print $1; exit }')
[[ -n $mirror ]] || { echo "this machine's apt configuration names no Debian mirror (a deb source with a main component) to debootstrap from" >&2; exit 3; }
echo "${mirror%/}"
