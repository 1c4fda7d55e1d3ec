#!/bin/sh
# Proxy entrypoint (busybox sh): write the runtime include that carries the
# public HTTPS port for redirects, then exec nginx as PID 1's only process.
set -eu
port="${PUBLIC_HTTPS_PORT:-443}"
case "$port" in
    ''|*[!0-9]*) echo "proxy: PUBLIC_HTTPS_PORT must be a number, got '$port'" >&2; exit 1 ;;
esac
suffix=":$port"
[ "$port" = 443 ] && suffix=""
mkdir -p /tmp/nginx-runtime
printf 'map "" $public_https_port { default "%s"; }\n' "$suffix" > /tmp/nginx-runtime/public-port.conf
exec "$@"
