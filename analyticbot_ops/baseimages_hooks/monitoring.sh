#!/bin/sh
# Customize hook for the monitoring images: `sh monitoring.sh ROOTFS BINARY`.
# Keeps BINARY (a Go program that links only libc) and what it reads; drops
# the package's other programs, service glue and defaults files. busybox stays
# for the healthchecks (wget; sh, cat, base64, nc and grep where the check
# needs a password) and Prometheus's start (sed); no other applet is linked.
set -eu
: "${APP_UID:?the app user's uid, which baseimages.py passes from model.APP_UID}"
root="$1"
binary="$2"
rm -rf "$root/etc/default" "$root/etc/init.d" "$root/etc/logrotate.d" "$root/usr/share/lintian" \
       "$root/usr/lib/tmpfiles.d" "$root/usr/lib/sysusers.d" "$root/var/lib/prometheus" \
       "$root/etc/prometheus"
# The package's tools (promtool, amtool) run on the host in the tests, not in the image.
for program in "$root"/usr/bin/*; do
    name=$(basename "$program")
    case "$name" in
        "$binary"|busybox) ;;
        *) rm -f "$program" ;;
    esac
done
for applet in sh wget nc grep sed cat base64; do
    ln -s busybox "$root/usr/bin/$applet"
done
# Data directories on named volumes: a new volume copies the owner of its mount point.
mkdir -p "$root/prometheus" "$root/alertmanager" "$root/etc/monitoring"
chown "$APP_UID:$APP_UID" "$root/prometheus" "$root/alertmanager"
chmod 0700 "$root/prometheus" "$root/alertmanager"
if [ "$binary" = prometheus ]; then
    # The console templates' libraries ship as examples (under doc/, which common.sh prunes).
    mkdir -p "$root/usr/share/prometheus/console_libraries"
    cp "$root"/usr/share/doc/prometheus/examples/console_libraries/*.lib "$root/usr/share/prometheus/console_libraries/"
    # The classic UI's scripts and styles: Debian links each library's folder from a libjs
    # package (moment-timezone's alone is over 200 MB of data), while the pages and console
    # libraries load one or two files of each. Copy exactly the files they name, then drop
    # the packages' trees.
    web="$root/usr/share/prometheus/web"
    kept=$(mktemp -d)
    # mktemp makes it 0700, and copying its contents (`.`) gives static/ that mode: the app uid could
    # not read a single file (HTTP 403 for every script and style).
    chmod 0755 "$kept"
    grep -rhoE 'static/[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+' "$web/templates" "$root/usr/share/prometheus/console_libraries" \
        | sort -u | while read -r ref; do
        file="${ref#static/}"
        top="${file%%/*}"
        if [ -L "$web/static/$top" ] && [ -f "$web/static/$file" ]; then
            mkdir -p "$kept/$(dirname "$file")"
            cp -L "$web/static/$file" "$kept/$file"
        fi
    done
    for link in "$web"/static/*; do
        [ -L "$link" ] && rm "$link"
    done
    cp -a "$kept"/. "$web/static/"
    rm -rf "$kept"
    # The glyph font the stylesheet loads (a small folder).
    fonts="$web/static/vendor/bootstrap4-glyphicons/fonts/glyphicons"
    if [ -L "$fonts" ]; then
        target=$(readlink -f "$fonts")
        rm "$fonts"
        cp -rL "$target" "$fonts"
    fi
    rm -rf "$root/usr/share/javascript" "$root/usr/share/nodejs" "$root/usr/share/sass" \
           "$root/usr/share/fonts" "$root/usr/share/fonts-glyphicons"
fi
