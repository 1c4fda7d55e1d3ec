#!/bin/sh
# edge-tls (Swarm only, busybox sh): hands this task's TLS secrets to the edge
# proxy on the same node, so that a new certificate reaches nginx by a reload,
# never by a restart of the proxy.
#
# Swarm mounts secrets into a task when the task starts, so a new certificate
# (new versions of the TLS secrets) needs a new task. The proxy publishes its
# node's 80/443, which two tasks on one node cannot share: a new proxy task
# could start only after the old one stopped, and clients of that node would
# be refused meanwhile. This task publishes nothing, so its next version starts
# beside the old one (start-first). It copies the pair into the node's
# edge-tls volume (tmpfs: memory only, uid 10001, 0700) as a generation of its
# own, then points `current` at it with one rename(2): a reader finds the old
# generation or the new one, never a mix. The proxy mounts that volume
# read-only as /etc/nginx/tls, where fullchain.pem and privkey.pem are links
# through `current`, and reloads nginx when `current` moves (entrypoint.sh,
# TLS_WATCH).
set -eu
from="${TLS_SECRETS:-/run/secrets}"
to="${EDGE_TLS_DIR:-/edge-tls}"
bb=busybox  # the base image links only sh, mkdir and wget; the rest are busybox applets
for name in tls_fullchain tls_privkey; do
    if [ ! -s "$from/$name" ]; then echo "edge-tls: no secret $from/$name" >&2; exit 1; fi
done
generation="g-$($bb cat "$from/tls_fullchain" "$from/tls_privkey" | $bb sha256sum | $bb cut -c1-16)"
if [ ! -d "$to/$generation" ]; then
    # Written under a hidden name and renamed whole: a generation is complete or absent.
    $bb rm -rf "$to/.$generation"
    $bb mkdir -m 0700 "$to/.$generation"
    $bb cp "$from/tls_fullchain" "$to/.$generation/fullchain.pem"
    $bb cp "$from/tls_privkey" "$to/.$generation/privkey.pem"
    $bb chmod 0400 "$to/.$generation/fullchain.pem" "$to/.$generation/privkey.pem"
    $bb mv "$to/.$generation" "$to/$generation"
fi
$bb ln -sfn "$generation" "$to/.current"
$bb mv -fT "$to/.current" "$to/current"  # -T: replace the link itself, not move into the folder it points to
for name in fullchain.pem privkey.pem; do
    [ -L "$to/$name" ] || $bb ln -s "current/$name" "$to/$name"
done
# Earlier generations: nginx reads the files when it (re)loads only, and every
# proxy that reloads from now on reads `current`.
for old in "$to"/g-*; do
    [ "$old" = "$to/$generation" ] || $bb rm -rf "$old"
done
echo "$generation" > /tmp/generation  # the healthcheck: `current` is still this task's
echo "edge-tls: serving $generation" >&2
# Nothing more to do until Swarm stops this task (SIGTERM: exit at once).
trap 'exit 0' TERM INT
while :; do
    $bb sleep 3600 &
    wait $! || true
done
