#!/bin/sh
# Proxy entrypoint (busybox sh): write the runtime includes (the public HTTPS
# port and name for redirects, the names this stack serves), then exec nginx
# as PID 1's only process. Every value is checked first: a bad one stops the
# container with one line instead of an nginx syntax error.
set -eu
port="${PUBLIC_HTTPS_PORT:-443}"
case "$port" in
    ''|*[!0-9]*) echo "proxy: PUBLIC_HTTPS_PORT must be a number, got '$port'" >&2; exit 1 ;;
esac
name="${PUBLIC_NAME:-localhost}"
names=""
for each in $name ${EXTRA_SERVER_NAMES:-} ${INTERNAL_NAME:-}; do
    case "$each" in
        *[!A-Za-z0-9.-]*|.*|-*) echo "proxy: '$each' is not a host name or IPv4 address (PUBLIC_NAME, EXTRA_SERVER_NAMES, INTERNAL_NAME)" >&2; exit 1 ;;
    esac
    case " $names " in
        *" $each "*) ;;
        *) names="$names $each" ;;
    esac
done
suffix=":$port"
[ "$port" = 443 ] && suffix=""
mkdir -p /tmp/nginx-runtime
printf 'map "" $public_https_port { default "%s"; }\n' "$suffix" > /tmp/nginx-runtime/public-port.conf
printf 'map "" $public_name { default "%s"; }\n' "$name" > /tmp/nginx-runtime/public-name.conf
printf 'server_name%s;\n' "$names" > /tmp/nginx-runtime/server-names.inc
# stub_status (nginx's connection counts) answers the monitoring overlay's
# exporter only: its fixed address on Compose, the internal monitoring
# network's subnet on Swarm (no fixed address there); without one, nobody.
exporter="${NGINX_EXPORTER_IP:-}"
case "$exporter" in
    '') printf 'deny all;\n' > /tmp/nginx-runtime/status-clients.inc ;;
    *[!0-9./]*) echo "proxy: NGINX_EXPORTER_IP must be an IPv4 address or subnet, got '$exporter'" >&2; exit 1 ;;
    *) printf 'allow %s;\ndeny all;\n' "$exporter" > /tmp/nginx-runtime/status-clients.inc ;;
esac
# Clients exempt from the per-client read limit (RATE_LIMIT_EXEMPT: IPv4
# addresses or subnets); none by default.
{
    printf 'geo $rate_limit_exempt {\n    default 0;\n'
    for each in ${RATE_LIMIT_EXEMPT:-}; do
        case "$each" in
            *[!0-9./]*|.*|*.|*..*) echo "proxy: RATE_LIMIT_EXEMPT must list IPv4 addresses or subnets, got '$each'" >&2; exit 1 ;;
        esac
        printf '    %s 1;\n' "$each"
    done
    printf '}\n'
} > /tmp/nginx-runtime/rate-limit-exempt.conf
# nginx's resolver: the first nameserver of resolv.conf (an IPv4 address; else
# Docker's embedded DNS). nginx's resolver applies no search domains, so on
# Kubernetes UPSTREAM_DOMAIN (the namespace's svc.cluster.local) completes the
# service names; on Compose and Swarm it is empty.
resolver=""
while read -r key value _rest; do
    if [ "$key" = nameserver ] && [ -z "$resolver" ]; then resolver="$value"; fi
done < /etc/resolv.conf || true
case "$resolver" in
    ''|*[!0-9.]*) resolver=127.0.0.11 ;;
esac
printf 'resolver %s valid=1s ipv6=off;\n' "$resolver" > /tmp/nginx-runtime/resolver.conf
domain="${UPSTREAM_DOMAIN:-}"
case "$domain" in
    *[!A-Za-z0-9.-]*|.*|-*) echo "proxy: UPSTREAM_DOMAIN must be a domain name, got '$domain'" >&2; exit 1 ;;
esac
# Each HTTP service by name, resolved per request ($SERVICE_by_name: the
# backup of the upstream groups the toolkit writes), and where requests go
# until it has written one ($SERVICE_target): the same name.
for service in api bot mtproto; do
    printf 'map "" $%s_by_name { default "%s%s:8000"; }\n' "$service" "$service" "${domain:+.$domain}" > "/tmp/nginx-runtime/by-name-$service.conf"
    printf 'map "" $%s_target { default "%s%s:8000"; }\n' "$service" "$service" "${domain:+.$domain}" > "/tmp/nginx-runtime/upstream-$service.conf"
done
# ACME HTTP-01 challenges that are not in the webroot (ACME_SOLVER, HOST:PORT):
# on a swarm, certbot --standalone runs as a one-shot service on the frontend
# overlay under that name, and every edge proxy passes it the challenge,
# resolved per request (the name exists only while certbot runs). Unset (Compose,
# where certbot writes into the shared webroot): not found.
solver="${ACME_SOLVER:-}"
case "$solver" in
    '')
        printf 'location @acme_solver {\n    return 404;\n}\n' > /tmp/nginx-runtime/acme-solver.inc ;;
    *[!A-Za-z0-9.:-]*|:*|*:*:*|*:|*:*[!0-9]*)
        echo "proxy: ACME_SOLVER must be HOST:PORT, got '$solver'" >&2; exit 1 ;;
    *:*)
        printf 'map "" $acme_solver { default "%s%s:%s"; }\n' "${solver%%:*}" "${domain:+.$domain}" "${solver##*:}" \
            > /tmp/nginx-runtime/acme-solver.conf
        printf 'location @acme_solver {\n    proxy_pass http://$acme_solver;\n    proxy_connect_timeout 2s;\n}\n' \
            > /tmp/nginx-runtime/acme-solver.inc ;;
    *)
        echo "proxy: ACME_SOLVER must be HOST:PORT, got '$solver'" >&2; exit 1 ;;
esac
# On a swarm the certificate comes from edge-tls (nginx/edge-tls.sh) through
# TLS_WATCH, a link it moves to each new pair: wait for the first pair, then
# reload nginx whenever the link moves (a reload, never a restart: old workers
# finish their requests; a pair nginx refuses leaves the old one serving, and
# the toolkit, which asks every edge what it serves, says so). Unset (Compose,
# Kubernetes): the files are mounted, and the toolkit reloads.
watch="${TLS_WATCH:-}"
if [ -n "$watch" ]; then
    waited=0
    until [ -e "$watch/fullchain.pem" ] && [ -e "$watch/privkey.pem" ]; do
        if [ "$waited" -ge 60 ]; then
            echo "proxy: no certificate at $watch after 60 s (edge-tls runs on every edge node)" >&2; exit 1
        fi
        busybox sleep 1; waited=$((waited + 1))
    done
fi
# On a swarm, too, the replicas of each HTTP service (UPSTREAM_TASKS: SERVICE:
# RELAY_PORT pairs; UPSTREAM_IDLE_SECONDS) are an upstream group whose
# connections nginx keeps alive, as the toolkit writes it on Compose: their
# addresses come from Swarm's DNS (tasks.SERVICE: the running, healthy tasks;
# dnsrr), asked every second; a change is written (upstreams.sh), tested and
# reloaded. A replica that stopped is still listed for that second at most:
# nginx finds it refused and passes the request to the next one. No task
# answers: the service's name, resolved per request, as before any deploy.
tasks="${UPSTREAM_TASKS:-}"
idle="${UPSTREAM_IDLE_SECONDS:-4}"
for each in $tasks; do
    case "$each" in
        *[!a-z0-9:-]*|[!a-z]*|*:|*:*:*|*:*[!0-9]*) ;;
        *:*) continue ;;
    esac
    echo "proxy: UPSTREAM_TASKS must list SERVICE:PORT pairs, got '$each'" >&2; exit 1
done
case "$idle" in
    ''|*[!0-9]*) echo "proxy: UPSTREAM_IDLE_SECONDS must be a number, got '$idle'" >&2; exit 1 ;;
esac
# UPSTREAM_NETWORK: the overlay to reach them on (the stack's frontend): Docker's
# DNS answers `tasks.SERVICE` on one network the proxy shares with the service,
# the first by name (the bot's backend one, where its forwarded headers are not
# trusted); `tasks.SERVICE.NETWORK` on that network only.
network="${UPSTREAM_NETWORK:-}"
case "$network" in
    *[!A-Za-z0-9_.-]*|.*|-*) echo "proxy: UPSTREAM_NETWORK must be a network name, got '$network'" >&2; exit 1 ;;
esac
# The running tasks' addresses, sorted (one order: no reload for a new one).
task_addresses() {
    busybox nslookup -type=a "tasks.$1${network:+.$network}" "$resolver" 2>/dev/null | busybox awk '
        /^Name:/ { named = 1; next }
        named && /^Address/ { for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+[.][0-9]+[.][0-9]+[.][0-9]+$/) print $i }
    ' | busybox sort || true
}
# One pass: each service's include brought up to date; 0 when one changed.
write_upstreams() {
    changed=1
    for each in $tasks; do
        service="${each%%:*}"
        wanted="$(/usr/local/bin/proxy-upstreams "$service" "${each##*:}" "$idle" $(task_addresses "$service"))"
        file="/tmp/nginx-runtime/upstream-$service.conf"
        if [ "$wanted" != "$(busybox cat "$file" 2>/dev/null)" ]; then
            printf '%s\n' "$wanted" > "$file"; changed=0
        fi
    done
    return "$changed"
}
if [ -n "$tasks" ]; then
    write_upstreams || true  # before nginx starts: no reload needed
fi
if [ -n "$watch" ] || [ -n "$tasks" ]; then
    (
        seen="$( [ -z "$watch" ] || busybox readlink "$watch")"; refused=""
        while busybox sleep 1; do
            reload=""
            if [ -n "$watch" ]; then
                now="$(busybox readlink "$watch" 2>/dev/null)" || now="$seen"
                [ "$now" = "$seen" ] || [ "$now" = "$refused" ] || reload="certificate $now"
            fi
            if [ -n "$tasks" ] && write_upstreams; then
                reload="${reload:+$reload, }upstream tasks"
            fi
            [ -n "$reload" ] || continue
            if nginx -t -q && nginx -s reload; then
                echo "proxy: $reload: reloaded" >&2; seen="${now:-$seen}"
            else
                echo "proxy: $reload refused by nginx -t; still serving what it served" >&2; refused="${now:-}"
            fi
        done
    ) &
fi
exec "$@"
