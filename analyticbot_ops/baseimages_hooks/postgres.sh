#!/bin/sh
# Customize hook for the PostgreSQL base: `sh postgres.sh ROOTFS`.
# Debian's postgresql-15 pulls LLVM (JIT, ~105 MB) and Perl (postgresql-common's
# wrappers). The server binaries need neither: JIT is turned off (jit=off) and
# PATH points straight at /usr/lib/postgresql/15/bin.
set -eu
: "${APP_UID:?the app user's uid, which baseimages.py passes from model.APP_UID}"
root="$1"
here="$(dirname "$0")"
lib="$root/usr/lib/x86_64-linux-gnu"
rm -rf "$root/usr/lib/llvm-14" "$lib"/libLLVM* "$root/usr/lib/postgresql/15/lib/llvmjit"* \
       "$root/usr/lib/postgresql/15/lib/bitcode" "$lib"/perl* "$lib"/libperl* "$root/usr/share/perl" \
       "$root/usr/bin/perl"* "$root/usr/share/postgresql-common" "$root/usr/lib/postgresql/15/bin/postgres.debug" \
       "$root/etc/postgresql-common" "$root/etc/postgresql" "$root/usr/share/postgresql/15/man" \
       "$lib"/libz3* "$root/usr/lib/python3"* "$root/usr/bin/python3"*
# postgresql-common's /usr/bin/pg_* are Perl wrappers: without Perl they can only fail.
find "$root/usr/bin" -name 'pg_*' -exec rm -f {} + 
rm -f "$root/usr/bin/psql" "$root/usr/bin/createdb" "$root/usr/bin/dropdb" "$root/usr/bin/createuser" \
      "$root/usr/bin/dropuser" "$root/usr/bin/clusterdb" "$root/usr/bin/reindexdb" "$root/usr/bin/vacuumdb"
mkdir -p "$root/usr/local/bin"
install -m 0755 "$here/postgres-entrypoint.sh" "$root/usr/local/bin/docker-entrypoint.sh"
# The data directory belongs to the server's uid before a volume is mounted
# there: Docker copies this ownership into a new named volume.
mkdir -p "$root/var/lib/postgresql/data" "$root/var/run/postgresql"
chown -R "$APP_UID:$APP_UID" "$root/var/lib/postgresql" "$root/var/run/postgresql"
chmod 0700 "$root/var/lib/postgresql/data"

# Programs: the server, initdb, the clients the ops tasks run (pg_dump, pg_restore, pg_isready, psql)
# and dash for the entrypoint. pgbench, pg_upgrade and the rest, coreutils, and the Perl scripts that
# postgresql-common's dependencies left behind never run in this container.
keep=" postgres postmaster initdb pg_dump pg_restore pg_isready psql "
for program in "$root/usr/lib/postgresql/15/bin"/*; do
    case "$keep" in *" ${program##*/} "*) ;; *) rm -f "$program" ;; esac
done
find "$root/usr/bin" "$root/usr/sbin" -mindepth 1 ! -name dash ! -name sh ! -name pgbackrest ! -name sleep \
    ! -name date -exec rm -rf {} +
# pgBackRest's own folders, owned by the server's uid (a new named volume takes the owner of the folder it
# is mounted on): the repository, the async archive's spool, its log folder, the second socket folder
# that backup-agent shares, and where the toolkit mounts the configuration.
mkdir -p "$root/var/lib/pgbackrest" "$root/var/spool/pgbackrest" "$root/var/log/pgbackrest" \
    "$root/var/run/pgbackrest" "$root/etc/pgbackrest/conf.d"
chown "$APP_UID:$APP_UID" "$root/var/lib/pgbackrest" "$root/var/spool/pgbackrest" "$root/var/log/pgbackrest" \
    "$root/var/run/pgbackrest"
chmod 0700 "$root/var/lib/pgbackrest" "$root/var/spool/pgbackrest" "$root/var/run/pgbackrest"
# Locale sources and compiled locales: initdb runs with --locale=C (the entrypoint), so none is read.
rm -rf "$root/usr/share/i18n" "$root/usr/lib/locale"

# Shared libraries nothing kept links: the dynamic loader lists what each kept program and each of the
# server's loadable modules (plpgsql, the contrib extensions: the server dlopens them) needs.
loader=/lib64/ld-linux-x86-64.so.2
needed="$(
    for object in "$root/usr/lib/postgresql/15/bin"/* "$root/usr/lib/postgresql/15/lib"/*.so "$root/usr/bin/dash" \
                  "$root/usr/bin/pgbackrest"; do
        [ -f "$object" ] && chroot "$root" "$loader" --list "${object#"$root"}" 2>/dev/null
    done | sed -n 's/.* => \(\/[^ ]*\) .*/\1/p' | sort -u
)"
keep_libs=" $(for lib in $needed; do basename "$(readlink -f "$root$lib")"; done | tr '\n' ' ') "
for lib in "$root/usr/lib/x86_64-linux-gnu"/*.so*; do
    [ -L "$lib" ] && target="$(basename "$(readlink -f "$lib")")" || target="${lib##*/}"
    case "$target" in ld-linux*|libc.so*|libgcc_s*|libnss_*) continue ;; esac  # the loader, and what glibc dlopens
    case "$keep_libs" in *" $target "*) ;; *) rm -f "$lib" ;; esac
done
