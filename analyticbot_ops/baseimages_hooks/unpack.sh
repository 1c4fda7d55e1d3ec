#!/bin/sh
# Extract hook: `sh unpack.sh ROOTFS PACKAGE...` unpacks the named packages into
# the tree without their dependencies, from the same mirror and lists as the
# rest of the image (mmdebstrap's own apt configuration).
# The monitoring packages are Go binaries that need only libc, but they depend
# on adduser, debconf, systemd glue and (prometheus) hundreds of MB of
# JavaScript packages; --include would unpack all of that.
set -eu
root="$1"
shift
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
# As root on the host: apt's download sandbox user could not write here.
APT_CONFIG="$MMDEBSTRAP_APT_CONFIG" apt-get download --quiet=2 -o APT::Sandbox::User=root "$@"
# tar, not dpkg-deb --extract: a package's /lib/... must land through the merged-usr
# symlink (lib -> usr/lib), not replace it with a directory, which would break ld.so's path.
for deb in ./*.deb; do
    dpkg-deb --fsys-tarfile "$deb" | tar -x --keep-directory-symlink -C "$root"
done
