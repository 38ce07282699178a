#!/bin/bash
# Install what envsched's build, tests and demo need on Debian 12, only if missing.
# Usage: scripts/install-deps.sh [extra-debian-packages...]
set -euo pipefail
# openssh-server, openssh-client, pamtester: tests/pam (on a host with a running init, installing
# openssh-server also enables and starts the system ssh service)
# clang, libclang-rt-14-dev: tests/fuzz (libFuzzer and the sanitizers' runtimes, which Debian 12's
# clang package does not pull in)
# skopeo, umoci, squashfuse, fuse3: container images (envsched image import, user images through FUSE)
# python3-argparse-manpage, man-db, bash-completion: tests/packaging (the man pages, rendered; chos's
# completion); `make deb` and `make rpm` pass their build dependencies as arguments
packages=(busybox-static squashfs-tools bubblewrap python3-venv util-linux gcc make libc6-dev binutils passwd
          iproute2 bsdextrautils gridengine-drmaa1.0 libjemalloc2 libpam0g-dev openssh-server openssh-client debootstrap
          pamtester clang libclang-rt-14-dev python3-argparse-manpage man-db bash-completion
          skopeo umoci squashfuse fuse3 "$@")
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-deps: need root to install: ${missing[*]}" >&2
        exit 1
    fi
    echo "install-deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
