#!/bin/bash
# make rpm: build packaging/rpm/envsched.spec with rpmbuild into build/rpm/ (RPMS/, SRPMS/), from
# a tarball of the checkout as it is now. A BUILD TEST: on Debian, rpmbuild runs with --nodeps
# (the rpm database knows none of the BuildRequires; the Debian packages that provide them are
# installed by `make rpm`) and without debuginfo packages (Debian has no find-debuginfo).
# `--without slurm` (RPM_ARGS="--without slurm") leaves the Slurm subpackage out.
set -euo pipefail
export PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 PYTHONDONTWRITEBYTECODE=1
unset PYTHONPATH PYTHONHOME VIRTUAL_ENV
repo=$(cd "$(dirname "$0")/.." && pwd)
top=$repo/build/rpm
version=$(cd "$repo/src" && /usr/bin/python3 -c 'import envsched; print(envsched.__version__)')

rm -rf "$top"
mkdir -p "$top"/{SOURCES,SPECS,BUILD,RPMS,SRPMS,stage}
bash "$repo/packaging/copy-source.sh" "$top/stage/envsched-$version"
tar -C "$top/stage" --owner=0 --group=0 --sort=name -czf "$top/SOURCES/envsched-$version.tar.gz" "envsched-$version"
rm -rf "$top/stage"

epoch=$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)
commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
spec=$top/SPECS/envsched.spec
{ echo "%global envsched_version $version"; cat "$repo/packaging/rpm/envsched.spec"; } > "$spec"
cat >> "$spec" <<END
* $(date -u -d "@$epoch" '+%a %b %d %Y') envsched developers <envsched@example.org> - $version-1
- Built from the envsched repository by make rpm (commit $commit)
END

extra=()
# Debian's rpm: no find-debuginfo (no debuginfo packages), and a brp-compress that needs bash
[ -e /usr/lib/rpm/find-debuginfo.sh ] || command -v find-debuginfo >/dev/null || extra+=(--define "debug_package %{nil}")
[ -e /etc/debian_version ] && extra+=(--define "__brp_compress /bin/bash /usr/lib/rpm/brp-compress %{_prefix}")
rpmbuild -ba --nodeps --define "_topdir $top" \
    --define "_source_date_epoch $epoch" "${extra[@]}" ${RPM_ARGS:-} "$spec" > "$top/build.log" 2>&1 || {
    tail -40 "$top/build.log"; echo "make rpm: rpmbuild failed (log: build/rpm/build.log)" >&2; exit 1; }
find "$top/RPMS" "$top/SRPMS" -name '*.rpm' -printf '%p %s bytes\n'
