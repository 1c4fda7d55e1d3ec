#!/bin/sh
# Customize hook for the pebble base (tests only): `sh pebble.sh ROOTFS`.
# Debian's pebble package ships no certificate for its own listener: the tests
# mount one (made by the dev CA) with the config at /etc/pebble.
set -eu
root="$1"
mkdir -p "$root/etc/pebble"
rm -rf "$root/usr/share/doc/pebble/examples"
