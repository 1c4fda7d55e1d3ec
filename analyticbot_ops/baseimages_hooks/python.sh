#!/bin/sh
# Customize hook for the Python bases: `sh python.sh ROOTFS [runtime|build]`.
# The runtime keeps only what a service imports; the build base keeps pip.
set -eu
root="$1"
flavour="${2:-runtime}"
lib="$root/usr/lib/python3.11"

ln -sf python3.11 "$root/usr/bin/python3"
# dash's postinst would make it /bin/sh; extract runs no postinst.
if [ -x "$root/usr/bin/dash" ]; then ln -sf dash "$root/usr/bin/sh"; fi
# Parts of the standard library no service imports: the test suite alone is
# 25 MB, config-3.11 holds a static libpython for embedding.
rm -rf "$lib/test" "$lib/idlelib" "$lib/tkinter" "$lib/turtledemo" "$lib/lib2to3" \
       "$lib/pydoc_data" "$lib/ensurepip" "$lib"/config-3.11-* "$lib/__phello__" \
       "$lib/unittest/test" "$lib/sqlite3/test" "$lib/ctypes/test" "$lib/distutils/tests"
find "$lib" -name '__pycache__' -prune -exec rm -rf {} +
if [ "$flavour" = runtime ]; then
    # PEP 668's marker only matters where pip runs: the build stage.
    rm -f "$lib/EXTERNALLY-MANAGED"
    # Modules no service imports, and the libraries only they link: dbm
    # (Berkeley DB), nis (libtirpc, Kerberos), curses and readline (interactive).
    dyn="$lib/lib-dynload"
    rm -f "$dyn"/_dbm.* "$dyn"/nis.* "$dyn"/_curses* "$dyn"/readline.* "$dyn"/_tkinter.*
    rm -rf "$lib/curses" "$lib/dbm/ndbm.py"
    cd "$root/usr/lib/x86_64-linux-gnu"
    rm -f libdb-5.3.so libnsl.so.* libtirpc.so.* libgssapi_krb5.so.* libkrb5.so.* \
          libkrb5support.so.* libk5crypto.so.* libcom_err.so.* libkeyutils.so.* \
          libreadline.so.* libncursesw.so.* libtinfo.so.* libformw.so.* libmenuw.so.* libpanelw.so.*
    rm -rf "$root/usr/share/readline" "$root/usr/bin/openssl"
fi
# Compile the standard library once, here: the services run on a read-only
# root filesystem, where Python could never cache bytecode, and compiled
# stdlib saves 0.2-0.4 s of start-up. The chroot's own 3.11 writes the .pyc.
chroot "$root" /usr/bin/python3.11 -m compileall -q -j 0 -o 0 /usr/lib/python3.11 >/dev/null || true
