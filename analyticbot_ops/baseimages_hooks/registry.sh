#!/bin/sh
# Customize hook for the lab's image registry (Debian's docker-registry 2.8): `sh registry.sh ROOTFS`.
# Debian's default config asks for htpasswd logins; the lab's registry listens only on the lab's own
# network and on the host's loopback, so it serves without them. Its storage is a volume.
set -eu
: "${APP_UID:?the app user's uid, which baseimages.py passes from model.APP_UID}"
root="$1"
mkdir -p "$root/etc/docker/registry" "$root/var/lib/docker-registry"
cat > "$root/etc/docker/registry/config.yml" <<'CONFIG'
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: /var/lib/docker-registry
  delete:
    enabled: true
http:
  addr: :5000
CONFIG
chown -R "$APP_UID:$APP_UID" "$root/var/lib/docker-registry"
