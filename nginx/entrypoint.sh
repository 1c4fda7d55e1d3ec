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
exec "$@"
