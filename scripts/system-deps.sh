#!/usr/bin/env bash
# Install the real components the integration tests start, from Debian's packages, when
# they are missing: Chromium (report opened in a browser), PostgreSQL (team setup), Java
# 17 (score's engine=spark: PySpark starts a JVM).
# git (and its daemon) is already needed to clone. Idempotent and quick when present.
set -euo pipefail

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
git daemon --help >/dev/null 2>&1 || need+=(git)
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
[ ${#need[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing system packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
