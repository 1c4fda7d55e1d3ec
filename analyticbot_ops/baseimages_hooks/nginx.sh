#!/bin/sh
# Customize hook for the nginx base: `sh nginx.sh ROOTFS`.
# The proxy runs as the app uid on a read-only root: it listens on 8080/8443 and
# keeps its pid and temp files in /tmp (a tmpfs in compose).
set -eu
: "${APP_UID:?the app user's uid, which baseimages.py passes from model.APP_UID}"
root="$1"
rm -rf "$root/etc/nginx/sites-available" "$root/etc/nginx/sites-enabled" "$root/etc/nginx/conf.d" \
       "$root/etc/nginx/snippets" "$root/etc/nginx/modules-enabled" "$root/var/www/html" \
       "$root/usr/share/nginx/html" "$root/etc/init.d" "$root/etc/logrotate.d" "$root/etc/ufw" \
       "$root/usr/sbin/ip" "$root/sbin/ip" "$root/usr/bin/ip" "$root/usr/sbin/bridge" "$root/usr/sbin/tc" \
       "$root/usr/sbin/ss" "$root/usr/bin/ss" "$root/usr/lib/python3"* "$root/usr/bin/python3"*
mkdir -p "$root/etc/nginx/conf.d" "$root/var/www/acme" "$root/usr/share/nginx/html" "$root/etc/nginx/tls" \
         "$root/var/log/nginx" "$root/var/lib/nginx"
# busybox brings wget for the image's HEALTHCHECK (no curl, no Python here).
# and sh, mkdir for the proxy entrypoint (extract ran no busybox --install).
for applet in wget sh mkdir; do
    [ -e "$root/usr/bin/$applet" ] || ln -s busybox "$root/usr/bin/$applet"
done
# certbot (the app uid) writes challenges into the acme-webroot volume mounted
# here: a new named volume copies this directory's owner.
chown "$APP_UID:$APP_UID" "$root/var/www/acme"
