#!/bin/sh
# Customize hook for the PostgreSQL base: `sh postgres.sh ROOTFS`.
# Debian's postgresql-15 pulls LLVM (JIT, ~105 MB) and Perl (postgresql-common's
# wrappers). The server binaries need neither: JIT is turned off (jit=off) and
# PATH points straight at /usr/lib/postgresql/15/bin.
set -eu
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
chown -R 10001:10001 "$root/var/lib/postgresql" "$root/var/run/postgresql"
chmod 0700 "$root/var/lib/postgresql/data"
