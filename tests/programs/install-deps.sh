#!/bin/sh
# Installs the real programs the override tests run under LD_PRELOAD
# (tests/override: label `programs`) when they are missing. For CI on a fresh
# Debian 12, run as root: sh tests/programs/install-deps.sh
# Without them those tests SKIP; they never fail for that.
set -eu

missing=""
command -v python3 >/dev/null 2>&1 || missing="$missing python3"
command -v git >/dev/null 2>&1 || missing="$missing git"
command -v sqlite3 >/dev/null 2>&1 || missing="$missing sqlite3"
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
{ command -v redis-cli >/dev/null 2>&1 && command -v redis-benchmark >/dev/null 2>&1; } || missing="$missing redis-tools"

if [ -z "$missing" ]; then
  echo "install-deps: python3, git, sqlite3, redis-server and redis-tools are present"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: missing:$missing (run as root to install them)" >&2
  exit 1
fi
echo "install-deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing
# The Debian package may start a system redis on port 6379; the tests use
# their own server on a random port and do not need it.
