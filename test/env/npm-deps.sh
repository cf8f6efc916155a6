#!/usr/bin/env bash
# Installs the npm dependencies when node_modules is missing or older than the lockfile.
# npm ci compiles ssh2's native addon (package.json's allowScripts): the compilers are installed
# first when missing (as root on Debian), and node-gyp is pointed at the headers that came with
# Node.js, when there are any, instead of downloading them.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ -d node_modules ]] && [[ ! package-lock.json -nt node_modules/.package-lock.json ]]; then exit 0; fi
missing=()
for tool in python3 make g++; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "npm-deps: installing ${missing[*]} to compile ssh2's native addon" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
  else
    echo "npm-deps: ${missing[*]} missing: ssh2's native addon will not be built (the server then streams at a higher CPU cost); install them (Debian: apt-get install python3 make g++) and remove node_modules to build it" >&2
  fi
fi
prefix=$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")
if [[ -z ${npm_config_nodedir:-} && -f $prefix/include/node/node.h ]]; then export npm_config_nodedir=$prefix; fi
echo "npm-deps: installing npm dependencies" >&2
npm ci --no-audit --no-fund >&2
