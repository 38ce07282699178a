#!/bin/bash
# make demo: build two environments, run a program in each, show their os-release side by side.
#
#   DEMO_ENVS=mini (default)  busybox-static trees, built in a second
#   DEMO_ENVS=full            real Debian 12 and 13 trees from debootstrap (a few minutes, cached)
#   DEMO_SLURM=0              skip the Slurm part (a throwaway cluster with the SPANK plugin)
#
# Everything lives under $DEMO_DIR (default /var/lib/envsched-demo); nothing is left mounted.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
envsched=$repo/.venv/bin/envsched
chos=$repo/.venv/bin/chos
demo=${DEMO_DIR:-/var/lib/envsched-demo}
kind=${DEMO_ENVS:-mini}

[ "$(id -u)" -eq 0 ] || { echo "demo: run as root (it builds root-owned trees)" >&2; exit 1; }
install -d -m 0755 "$demo" "$demo/os"

if [ "$kind" = full ]; then
    for pair in deb12:bookworm deb13:trixie; do
        name=${pair%%:*} suite=${pair#*:}
        [ -e "$demo/os/$name/etc/os-release" ] || bash site-config/environments/build-debootstrap.sh "$suite" "$demo/os/$name"
    done
else
    tests/envs/build-mini-env.sh "$demo/os/deb12" debian 12 "Debian GNU/Linux 12 (bookworm, mini)" >/dev/null
    tests/envs/build-mini-env.sh "$demo/os/deb13" debian 13 "Debian GNU/Linux 13 (trixie, mini)" >/dev/null
fi

cat > "$demo/policy.toml" <<TOML
# envsched demo policy (see site-config/examples/policy.toml for every key)
[site]
default = "deb12"
run_dir = "$demo/run"

[environments.deb12]
path = "$demo/os/deb12"
description = "Debian 12 userland"

[environments.deb13]
path = "$demo/os/deb13"
description = "Debian 13 userland"
[environments.deb13.env]
set = { LANG = "C.UTF-8" }
TOML
chmod 0644 "$demo/policy.toml"
policy=(--policy "$demo/policy.toml")

echo "== envsched check"
"$envsched" "${policy[@]}" check
echo
echo "== os-release: host | envsched exec deb12 | envsched exec deb13"
show='grep -E "^(PRETTY_NAME|VERSION_ID)=" /etc/os-release; echo "CHOS=${CHOS:-}"; id -un'
host=$(sh -c "$show")
e12=$("$envsched" "${policy[@]}" exec --user nobody --request deb12 -- sh -c "$show")
e13=$("$envsched" "${policy[@]}" exec --user nobody --request deb13 -- sh -c "$show")
paste <(echo "HOST"; echo "$host") <(echo "deb12"; echo "$e12") <(echo "deb13"; echo "$e13") | column -t -s $'\t'
echo
echo "== unprivileged: chos run deb13 as user nobody (user namespace, no setuid anywhere)"
setpriv --reuid=nobody --regid=nogroup --clear-groups -- "$chos" "${policy[@]}" run deb13 -- \
    sh -c 'head -1 /etc/os-release; echo "uid=$(id -u) CHOS=$CHOS"'
echo
echo "== prepare once, join many: envsched prepare / join / release"
"$envsched" "${policy[@]}" prepare --key demo-job --user nobody --request deb13 --owner-pid $$ >/dev/null
for task in 1 2 3; do
    "$envsched" "${policy[@]}" join --key demo-job -- sh -c "echo \"task $task: \$(head -1 /etc/os-release) ns=\$(readlink /proc/self/ns/mnt)\""
done
"$envsched" "${policy[@]}" release --key demo-job
echo
echo "== chos which (as nobody): why a job gets what it gets"
setpriv --reuid=nobody --regid=nogroup --clear-groups -- "$chos" "${policy[@]}" which

if [ "${DEMO_SLURM:-1}" != 0 ]; then
    echo
    bash scripts/demo-slurm.sh
fi
