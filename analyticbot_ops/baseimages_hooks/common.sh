#!/bin/sh
# Shared customize hook for every base image: run by mmdebstrap on the host as
#   sh common.sh ROOTFS
# `--variant=extract` unpacks .debs without running maintainer scripts, so the
# work those scripts would do (users, CA bundle, bytecode) happens here, and what
# a container never needs (docs, man pages, dpkg state) is pruned by hand:
# dpkg path-excludes do not apply when no dpkg runs.
set -eu
: "${APP_UID:?the app user's uid, which baseimages.py passes from model.APP_UID}"
root="$1"

# Documentation and packaging state: nothing at run time reads these. The
# copyright files stay, because the licences require them to travel with binaries.
find "$root/usr/share/doc" -mindepth 2 ! -name copyright -exec rm -rf {} + 2>/dev/null || true
rm -rf "$root/usr/share/man" "$root/usr/share/info" "$root/usr/share/locale" \
       "$root/usr/share/lintian" "$root/usr/share/bug" "$root/usr/share/bash-completion" \
       "$root/usr/share/polkit-1" "$root/usr/share/perl5" "$root/usr/share/debconf" \
       "$root/usr/share/dpkg" "$root/usr/share/menu" "$root/usr/lib/systemd" "$root/usr/lib/mime" \
       "$root/var/lib/dpkg" "$root/var/lib/apt" "$root/var/cache/apt" "$root/var/cache/debconf" \
       "$root/var/log"/* "$root/usr/lib/x86_64-linux-gnu/gconv" "$root/usr/libexec/dpkg" \
       "$root/usr/share/pixmaps" "$root/usr/share/binfmts" "$root/usr/lib/binfmt.d"
# Package tools pulled in by ca-certificates' and the merged-usr hook's
# dependencies: without dpkg state they can do nothing useful in a container.
rm -f "$root"/usr/bin/dpkg* "$root"/usr/bin/debconf* "$root/usr/bin/update-alternatives" \
      "$root/usr/bin/c_rehash" "$root/usr/bin/tar"

# A CA bundle, as update-ca-certificates would write it (its postinst never ran).
if [ -d "$root/usr/share/ca-certificates/mozilla" ]; then
    mkdir -p "$root/etc/ssl/certs"
    cat "$root"/usr/share/ca-certificates/mozilla/*.crt > "$root/etc/ssl/certs/ca-certificates.crt"
    rm -rf "$root/usr/share/ca-certificates"
fi

# Accounts: root, nobody, and the unprivileged `app` user every service runs as.
# Fixed ids, because compose secrets are bind mounts that keep the host owner:
# the secrets task chowns each file to the uid that consumes it.
mkdir -p "$root/etc"
cat > "$root/etc/passwd" <<PASSWD
root:x:0:0:root:/root:/usr/sbin/nologin
app:x:$APP_UID:$APP_UID:app:/home/app:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
PASSWD
cat > "$root/etc/group" <<GROUP
root:x:0:
app:x:$APP_UID:
nogroup:x:65534:
GROUP
chmod 0644 "$root/etc/passwd" "$root/etc/group"
mkdir -p "$root/home/app" "$root/tmp" "$root/run" "$root/var/tmp"
chown "$APP_UID:$APP_UID" "$root/home/app"
chmod 1777 "$root/tmp" "$root/var/tmp"

# CIS 4.8: no setuid/setgid binaries in an image.
find "$root" -xdev -perm /6000 -type f -exec chmod ug-s {} +
