#!/bin/bash
# Build a small but real environment tree (busybox-static) for tests and the quick demo.
#
#   build-mini-env.sh DEST ID VERSION_ID PRETTY_NAME
#   e.g. build-mini-env.sh /srv/envsched-test/os/deb12-mini debian 12 "Debian GNU/Linux 12 (mini)"
#
# The tree has the layout of a merged-/usr Debian system (bin, sbin, lib -> usr/...), its own
# /etc/os-release, passwd/group/hosts/resolv.conf/nsswitch.conf (bound over by the host's in a
# view) and a static busybox providing sh, cat, id, env, ls, stat, ... Built in well under a
# second; root-owned and not writable by others, as envsched requires of a tree.
# It has no /etc/profile or /etc/profile.d: tests of login shells use the real debootstrap
# tree of the `real_tree` fixture (tests/conftest.py) instead.
set -euo pipefail

if [ $# -ne 4 ]; then
    echo "usage: $0 DEST ID VERSION_ID PRETTY_NAME" >&2
    exit 64
fi
dest=$1 id=$2 version=$3 pretty=$4
busybox=${BUSYBOX:-/bin/busybox}
if ! "$busybox" true 2>/dev/null || ! "$busybox" --list | grep -x sh >/dev/null; then
    echo "$0: need a static busybox at $busybox (apt-get install busybox-static)" >&2
    exit 69
fi

umask 022
tmp=$(mktemp -d "$(dirname "$dest")/.mini-env.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp"/usr/bin "$tmp"/usr/sbin "$tmp"/usr/lib "$tmp"/etc "$tmp"/opt "$tmp"/var/tmp
ln -s usr/bin "$tmp/bin"
ln -s usr/sbin "$tmp/sbin"
ln -s usr/lib "$tmp/lib"
cp "$busybox" "$tmp/usr/bin/busybox"
for applet in $("$busybox" --list); do
    case $applet in busybox) continue ;; esac
    [ -e "$tmp/usr/bin/$applet" ] || ln -s busybox "$tmp/usr/bin/$applet"
done
cat > "$tmp/usr/lib/os-release" <<OSR
PRETTY_NAME="$pretty"
NAME="envsched mini $id"
VERSION_ID="$version"
ID=$id
ENVSCHED_TEST_TREE=1
OSR
ln -s ../usr/lib/os-release "$tmp/etc/os-release"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$tmp/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$tmp/etc/group"
printf '127.0.0.1 localhost\n' > "$tmp/etc/hosts"
: > "$tmp/etc/resolv.conf"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' > "$tmp/etc/nsswitch.conf"
echo "$id $version" > "$tmp/etc/envsched-mini-release"
chown -R 0:0 "$tmp"
chmod 0755 "$tmp"
rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
echo "built $dest ($pretty)"
