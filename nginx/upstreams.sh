#!/bin/sh
# Print the proxy's runtime include for one HTTP service (busybox sh or any
# POSIX sh):  upstreams.sh SERVICE RELAY_PORT IDLE_SECONDS [ADDRESS...]
# With addresses: an upstream group of them, its connections kept alive, with
# the by-name relay on RELAY_PORT as backup; without: the service's name,
# resolved per request. The same text as rollout.upstream_include, which writes
# it on Compose (tests/unit/test_proxy_entrypoint.py holds the two in step);
# on a swarm the proxy's own watcher writes it (entrypoint.sh, UPSTREAM_TASKS).
set -eu
service="$1"; relay="$2"; idle="$3"; shift 3
if [ "$#" -eq 0 ]; then
    printf 'map "" $%s_target { default "%s:8000"; }\n' "$service" "$service"
    exit 0
fi
printf 'upstream %s_containers {\n' "$service"
for address in "$@"; do
    printf '    server %s:8000 max_fails=1 fail_timeout=10s;\n' "$address"
done
printf '    server 127.0.0.1:%s backup;\n' "$relay"
# keepalive: model.UPSTREAM_KEEPALIVE (why it is that many).
printf '    keepalive 128;\n    keepalive_timeout %ss;\n}\n' "$idle"
printf 'map "" $%s_target { default "%s_containers"; }\n' "$service" "$service"
