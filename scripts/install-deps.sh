#!/bin/sh
# Installs every Debian 12 package peerd needs to build, run and test. apt only.
# iproute2 (ip) and util-linux (unshare): scripts/test runs the suite in a
# network namespace with only lo up. systemd: systemd-analyze checks the unit
# (install_spec.lua); dpkg-dev (dpkg-shlibdeps, with build-essential): the .deb.
set -eu
PKGS="build-essential cmake pkg-config clang libclang-rt-14-dev curl ca-certificates systemd \
  liblua5.4-dev lua5.4 libuv1-dev lua-cjson lua-busted lua-luv lua-check \
  libssl-dev libsodium-dev libjansson-dev libhttp-parser-dev libcmocka-dev \
  prometheus valgrind gnuplot-nox iproute2 util-linux"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -q --no-install-recommends $missing
fi
