#!/bin/sh
# Customize hook for the Redis base: `sh redis.sh ROOTFS`.
set -eu
: "${APP_UID:?the app user's uid, which baseimages.py passes from model.APP_UID}"
root="$1"
# redis-server is a symlink to redis-check-rdb in Debian: keep both.
rm -rf "$root/etc/redis" "$root/usr/bin/redis-benchmark" \
       "$root/usr/lib/python3"* "$root/usr/bin/python3"*
# AOF and RDB files live in /data, a named volume owned by the server's uid.
mkdir -p "$root/data" "$root/usr/local/etc/redis"
chown "$APP_UID:$APP_UID" "$root/data"
chmod 0700 "$root/data"
