#!/bin/bash
# make deb: the Debian packages of envsched into build/ (envsched, envsched-slurm,
# envsched-gridengine, envsched-torque, envsched-openpbs, libpam-envsched), built with
# dpkg-buildpackage from a copy of the checkout in build/deb/ (the tree itself stays clean), then
# checked with lintian (every warning or error fails; the accepted tags are in
# packaging/debian/*.lintian-overrides, each with its reason).
# The version is envsched.__version__; the build dependencies are in packaging/debian/control
# (`make deb` installs them with scripts/install-deps.sh).
set -euo pipefail
export PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 PYTHONDONTWRITEBYTECODE=1
unset PYTHONPATH PYTHONHOME VIRTUAL_ENV
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$repo/build
version=$(cd "$repo/src" && /usr/bin/python3 -c 'import envsched; print(envsched.__version__)')
work=$out/deb/envsched-$version

rm -rf "$out/deb" "$out"/*.deb
mkdir -p "$work"
bash "$repo/packaging/copy-source.sh" "$work"
cp -r "$repo/packaging/debian" "$work/debian"

# debian/changelog: one entry, this version, dated by the last commit (reproducible)
commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
epoch=$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)
if [ -n "$(git -C "$repo" status --porcelain 2>/dev/null)" ]; then commit="$commit with local changes"; fi
first=$(git -C "$repo" log --reverse --format=%cd --date=format:%Y 2>/dev/null | sed -n 1p || true)
last=$(date -u -d "@$epoch" +%Y)
sed -i "s/@YEARS@/${first:-$last}${first:+$([ "$first" = "$last" ] || echo "-$last")}/" "$work/debian/copyright"
cat > "$work/debian/changelog" <<END
envsched ($version) bookworm; urgency=medium

  * Built from the envsched repository by \`make deb\`
    (commit $commit).

 -- envsched developers <envsched@example.org>  $(date -R -u -d "@$epoch")
END

cd "$work"
dpkg-buildpackage -b -us -uc 2>&1 | sed 's/^/  /' > "$out/deb/build.log" || {
    tail -40 "$out/deb/build.log"; echo "make deb: dpkg-buildpackage failed (log: build/deb/build.log)" >&2; exit 1; }
changes=$out/deb/envsched_${version}_$(dpkg-architecture -qDEB_HOST_ARCH).changes
echo "== lintian $changes"
lintian --fail-on error,warning --display-info "$changes"
for deb in "$out"/deb/*.deb; do
    case $deb in *-dbgsym_*) ;; *) cp "$deb" "$out/" ;; esac      # debug symbols stay in build/deb/
done
ls -l "$out"/*.deb
