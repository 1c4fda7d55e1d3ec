#!/bin/sh
# Customize hook for a Swarm lab node (a Docker Engine in a container): `sh swarm-node.sh ROOTFS`.
# The minbase variant runs the packages' maintainer scripts (docker.io's group, iptables' alternatives),
# which an engine needs; what it never reads is pruned.
set -eu
root="$1"
rm -rf "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/info" "$root/usr/share/locale" \
       "$root/var/cache/apt/archives"/*.deb "$root/var/lib/apt/lists"/*
