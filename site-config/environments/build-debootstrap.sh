#!/bin/bash
# Build a real Debian environment tree for envsched with debootstrap.
#
#   build-debootstrap.sh SUITE DEST [options]
#   e.g. build-debootstrap.sh bookworm /srv/envsched/os/deb12
#        build-debootstrap.sh trixie   /srv/envsched/os/deb13 --include less,procps
#
# Options:
#   --variant V       debootstrap variant: minbase (default), buildd, or "default" for
#                     debootstrap's own (Priority: important, much bigger)
#   --include PKGS    extra packages, comma separated (passed to debootstrap --include)
#   --arch ARCH       target architecture (default: the host's)
#   --keyring FILE    keyring to verify the suite's Release file with
#                     (default: /usr/share/keyrings/debian-archive-keyring.gpg)
#   --no-check-gpg    FALLBACK ONLY: do not verify the Release signature. Never done
#                     implicitly; use it only if your keyring lacks the suite's key and
#                     you accept an unverified tree (it is then logged in the tree).
#   --replace         DEST exists: build the new tree, swap it in atomically, and keep the
#                     old one as DEST.replaced-TIMESTAMP (jobs may still be using it)
#   --verbose         show all of debootstrap's output (it always goes to the log)
#
# Environment: MIRROR=URI overrides the package mirror. By default the mirror is taken,
# at run time, from this machine's apt sources (the main archive entry of
# /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list); nothing here names a host.
#
# The result is made fit for envsched's trust checks (src/envsched/trees.py):
#   * root and every top-level directory owned by root, not group/world writable
#     (except a sticky /tmp, which envsched never takes from the tree);
#   * nothing group/world writable in the directories a view takes from the tree
#     (bin etc lib* opt sbin usr);
#   * /etc/{passwd,group,hosts,resolv.conf,nsswitch.conf} regular files: a view binds
#     the host's over them and envsched refuses symlinks there;
#   * no setuid/setgid bits anywhere (CHOS INSTALL §6: alternate trees should not carry
#     setuid programs; envsched also mounts views nosuid);
#   * apt caches and package lists removed.
# It is built in a temporary directory next to DEST and renamed into place, so DEST is
# either absent, the old tree or the complete new one -- never half built.
set -euo pipefail

prog=${0##*/}
die() { echo "$prog: $*" >&2; exit 1; }
usage() { sed -n '2,24s/^# \{0,1\}//p' "$0" >&2; exit 64; }

suite="" dest="" variant=minbase include="" arch="" keyring="" no_check_gpg=0 replace=0 verbose=0
while [ $# -gt 0 ]; do
    case $1 in
        --variant) [ $# -ge 2 ] || usage; variant=$2; shift 2 ;;
        --variant=*) variant=${1#*=}; shift ;;
        --include) [ $# -ge 2 ] || usage; include=$2; shift 2 ;;
        --include=*) include=${1#*=}; shift ;;
        --arch) [ $# -ge 2 ] || usage; arch=$2; shift 2 ;;
        --arch=*) arch=${1#*=}; shift ;;
        --keyring) [ $# -ge 2 ] || usage; keyring=$2; shift 2 ;;
        --keyring=*) keyring=${1#*=}; shift ;;
        --no-check-gpg) no_check_gpg=1; shift ;;
        --replace) replace=1; shift ;;
        --verbose|-v) verbose=1; shift ;;
        -h|--help) usage ;;
        -*) echo "$prog: unknown option $1" >&2; usage ;;
        *)
            if [ -z "$suite" ]; then suite=$1
            elif [ -z "$dest" ]; then dest=$1
            else usage
            fi
            shift ;;
    esac
done
[ -n "$suite" ] && [ -n "$dest" ] || usage
[[ $suite =~ ^[a-z][a-z0-9.-]*$ ]] || die "bad suite name: $suite"
case $variant in
    minbase|buildd) variant_arg=(--variant="$variant") ;;
    default|-) variant_arg=() ;;
    *) die "unsupported variant: $variant (minbase, buildd or default)" ;;
esac
[[ -z $include || $include =~ ^[a-z0-9][a-z0-9.+:,-]*$ ]] || die "bad --include list: $include"
[ "$(id -u)" -eq 0 ] || die "run as root (debootstrap needs it and the tree must be root-owned)"
[ "$no_check_gpg" -eq 1 ] && [ -n "$keyring" ] && die "--keyring and --no-check-gpg contradict each other"

dest=$(realpath -m -- "$dest")
case $dest in /|/usr|/etc|/var|/bin|/lib|/sbin) die "refusing to build into $dest" ;; esac
parent=$(dirname "$dest")
name=$(basename "$dest")
start=$(date +%s)
export LC_ALL=C DEBIAN_FRONTEND=noninteractive

# ---------------------------------------------------------------- tools ------------------
# Install what is missing; refresh the package lists only if installing from the current
# ones fails (stale or never fetched).
ensure_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "$prog: installing ${missing[*]}"
    if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
        echo "$prog: apt-get install failed with the current package lists; running apt-get update"
        apt-get update -q >/dev/null
        apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
    fi
}
need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v gpgv >/dev/null || need+=(gpgv)
if [ "$no_check_gpg" -eq 0 ] && [ -z "$keyring" ]; then
    keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    [ -e "$keyring" ] || need+=(debian-archive-keyring)
fi
[ ${#need[@]} -eq 0 ] || ensure_packages "${need[@]}"
[ "$no_check_gpg" -eq 1 ] || [ -r "$keyring" ] || die "keyring $keyring not readable"
debootstrap_version=$(dpkg-query -W -f='${Version}' debootstrap 2>/dev/null || echo unknown)
[ -e "/usr/share/debootstrap/scripts/$suite" ] ||
    die "debootstrap $debootstrap_version has no script for suite '$suite' (upgrade debootstrap)"

# ---------------------------------------------------------------- mirror -----------------
# The main archive URI from this machine's apt sources. Preference: an entry carrying the
# host's own codename (bookworm, not bookworm-security/-updates), then any entry whose
# suites are not -security, then the first entry. deb822 first, then one-line format.
host_codename=$(. /etc/os-release 2>/dev/null; echo "${VERSION_CODENAME:-}")
sources_mirror() {
    local files=()
    shopt -s nullglob
    files=(/etc/apt/sources.list.d/*.sources)
    shopt -u nullglob
    {
        local f
        for f in "${files[@]}"; do
            # one "URI<TAB>SUITES" line per enabled deb stanza (plain POSIX awk: mawk)
            awk -v OFS='\t' '
                function flush() {
                    if (types ~ /(^| )deb( |$)/ && tolower(enabled) != "no" && uris != "")
                        print uris, suites
                    types = uris = suites = enabled = ""
                }
                /^[ \t]*#/ { next }
                /^[ \t]*$/ { flush(); next }
                /^[^ \t]/ {
                    key = tolower($0); sub(/:.*/, "", key)
                    val = $0; sub(/^[^:]*:[ \t]*/, "", val); sub(/[ \t]+$/, "", val)
                    if (key == "types") types = val
                    else if (key == "uris") { split(val, u, /[ \t]+/); uris = u[1] }
                    else if (key == "suites") suites = val
                    else if (key == "enabled") enabled = val
                }
                END { flush() }' "$f"
        done
        for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
            [ -r "$f" ] || continue
            # deb [opts] URI SUITE COMPONENTS...
            sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" | awk -v OFS='\t' '$1 == "deb" && NF >= 3 { print $2, $3 }'
        done
    } | awk -F '\t' -v cn="$host_codename" '
        $1 ~ /^(mirror|cdrom|tor)/ { next }
        { n++; uri[n] = $1; s = " " $2 " " }
        cn != "" && index(s, " " cn " ") && !own { own = $1 }
        s !~ /-security / && !plain { plain = $1 }
        END { if (own) print own; else if (plain) print plain; else if (n) print uri[1] }'
}
if [ -n "${MIRROR:-}" ]; then
    mirror=$MIRROR mirror_from="MIRROR="
else
    mirror=$(sources_mirror)
    mirror_from="apt sources"
    [ -n "$mirror" ] || die "no deb entry found in /etc/apt/sources.list{,.d/*.sources,.d/*.list}; set MIRROR=URI"
fi
mirror=${mirror%/}
case $mirror in
    http://*|https://*|file:/*) ;;
    *) die "mirror '$mirror' (from $mirror_from) is not an http, https or file URI; set MIRROR=URI" ;;
esac

# ---------------------------------------------------------------- destination ------------
install -d -m 0755 "$parent"
lock=$parent/.$name.build.lock
exec 9>"$lock"
flock -n 9 || die "another build of $dest is running (lock $lock)"
trap 'rm -f "$lock"' EXIT
if [ -e "$dest" ] || [ -L "$dest" ]; then
    if [ -d "$dest" ] && [ ! -L "$dest" ] && [ -z "$(ls -A "$dest")" ]; then
        rmdir "$dest"
    elif [ "$replace" -ne 1 ]; then
        die "$dest exists (use --replace to build a new tree and swap it in)"
    elif [ ! -d "$dest" ] || [ -L "$dest" ]; then
        die "$dest exists and is not a directory; remove it first"
    fi
fi

umask 022
tmp=$(mktemp -d "$parent/.$name.build.XXXXXX")
log=$tmp.log
# Remove a failed build: first whatever debootstrap may have left mounted inside it
# (it mounts proc/sys in the target), then the files, never crossing a filesystem.
cleanup() {
    local rc=$? mp
    if [ -n "${tmp:-}" ] && [ -d "$tmp" ]; then
        awk -v t="$tmp" '$5 == t || index($5, t "/") == 1 { print $5 }' /proc/self/mountinfo |
            sort -r | while read -r mp; do umount -l "$mp" 2>/dev/null || true; done
        rm -rf --one-file-system "$tmp"
    fi
    rm -f "$lock"
    [ $rc -eq 0 ] || echo "$prog: failed; debootstrap log kept at $log" >&2
}
trap cleanup EXIT

# ---------------------------------------------------------------- debootstrap ------------
args=("${variant_arg[@]}")
[ -n "$include" ] && args+=(--include="$include")
[ -n "$arch" ] && args+=(--arch="$arch")
if [ "$no_check_gpg" -eq 1 ]; then
    echo "$prog: WARNING: --no-check-gpg: the $suite Release file will NOT be verified" >&2
    args+=(--no-check-gpg)
else
    # An explicit keyring plus --force-check-gpg: debootstrap must verify or fail, it may
    # never fall back to an unchecked download because a keyring went missing.
    args+=(--keyring="$keyring" --force-check-gpg)
fi
echo "$prog: debootstrap $debootstrap_version ${args[*]} $suite -> $dest"
echo "$prog: mirror $mirror (from $mirror_from); log $log"
set +e
if [ "$verbose" -eq 1 ]; then
    debootstrap "${args[@]}" "$suite" "$tmp" "$mirror" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
else
    debootstrap "${args[@]}" "$suite" "$tmp" "$mirror" >"$log" 2>&1 &
    dpid=$!
    # progress: one line per stage, not one per package
    tail -n +1 -f --pid=$dpid "$log" 2>/dev/null | grep --line-buffered -E \
        '^I: (Valid Release signature|Resolving dependencies of base|Checking component|Installing core packages|Unpacking (required packages|the base system)|Configuring (required packages|the base system)|Base system installed)|^[EW]: ' |
        sed -u "s/^/  /"
    wait $dpid
    rc=$?
fi
set -e
# belt and braces: a zero exit without the final message is a failure too
[ "$rc" -ne 0 ] || grep -q '^I: Base system installed successfully' "$log" || rc=1
if [ "$rc" -ne 0 ]; then
    echo "$prog: debootstrap failed (exit $rc); last lines of $log:" >&2
    tail -n 15 "$log" | sed 's/^/  /' >&2
    if grep -qE 'Release signed by unknown key|Invalid Release signature|BADSIG|NO_PUBKEY' "$log"; then
        cat >&2 <<EOF
$prog: the keyring $keyring cannot verify $suite's Release file.
  Install a debian-archive-keyring that carries the $suite keys (from the -updates suite,
  or backports), or pass --keyring FILE with one that does. Only if you accept an
  unverified tree, rerun with --no-check-gpg.
EOF
    elif grep -qE "Failed getting release file|Couldn't download" "$log"; then
        echo "$prog: mirror $mirror does not serve $suite? Set MIRROR=URI to another Debian archive." >&2
    fi
    exit 1
fi

# ---------------------------------------------------------------- make it envsched-fit ---
root=$tmp
# 1. host identity files: regular files (a symlink is resolved inside the tree, never on
#    the host, and its content kept; a missing file gets a minimal default).
default_identity() {
    case $1 in
        passwd) printf 'root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' ;;
        group) printf 'root:x:0:\nnogroup:x:65534:\n' ;;
        hosts) printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' ;;
        resolv.conf) printf '# envsched: the host'"'"'s resolv.conf is bound over this file in a view\n' ;;
        nsswitch.conf) printf 'passwd:         files\ngroup:          files\nshadow:         files\nhosts:          files dns\nnetworks:       files\nprotocols:      db files\nservices:       db files\nethers:         db files\nrpc:            db files\nnetgroup:       nis\n' ;;
    esac
}
fixed_identity=()
for f in passwd group hosts resolv.conf nsswitch.conf; do
    p=$root/etc/$f
    if [ -L "$p" ]; then
        was=$(readlink -- "$p")
        cur=/etc/$f
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            [ -L "$root$cur" ] || break
            t=$(readlink "$root$cur")
            case $t in /*) cur=$t ;; *) cur=$(dirname "$cur")/$t ;; esac
            cur=$(realpath -m -s -- "$cur")
        done
        content=
        if [ -f "$root$cur" ] && [ ! -L "$root$cur" ]; then content=$(cat "$root$cur"; echo x); fi
        rm -f "$p"
        if [ -n "$content" ]; then printf '%s' "${content%x}" > "$p"; else default_identity "$f" > "$p"; fi
        fixed_identity+=("$f (was a symlink to $was)")
    elif [ ! -e "$p" ]; then
        default_identity "$f" > "$p"
        fixed_identity+=("$f (was missing)")
    elif [ ! -f "$p" ]; then
        die "$p is neither a regular file nor a symlink; not touching it"
    fi
    chown 0:0 "$p"; chmod 0644 "$p"
done

# 2. no setuid/setgid bits anywhere in the tree (files and directories)
mapfile -d '' suid < <(find "$root" -xdev \( -perm -4000 -o -perm -2000 \) ! -type l -print0)
suid_files=() suid_dirs=0
for p in "${suid[@]}"; do
    if [ -d "$p" ]; then suid_dirs=$((suid_dirs + 1)); else suid_files+=("${p#"$root"}"); fi
    chmod u-s,g-s "$p"
done

# 3. root and top-level directories: root-owned, not writable by group/others (a sticky
#    /tmp stays 1777: envsched never takes it from the tree, the host's is shared)
chown 0:0 "$root"; chmod 0755 "$root"
for p in "$root"/* "$root"/.[!.]*; do
    [ -d "$p" ] && [ ! -L "$p" ] || continue
    [ "$(stat -c %u "$p")" = 0 ] || chown 0 "$p"
    [ -k "$p" ] && continue
    chmod go-w "$p"
done

# 4. nothing group/world writable inside the directories a view takes from the tree
#    (Debian ships /usr/local/* 2775 root:staff: any host member of gid 50 could write
#    into the environment otherwise)
view_dirs=()
for d in bin etc lib lib32 lib64 libx32 opt sbin usr; do
    [ -d "$root/$d" ] && [ ! -L "$root/$d" ] && view_dirs+=("$root/$d")
done
[ ${#view_dirs[@]} -gt 0 ] || die "built tree has none of bin etc lib* opt sbin usr"
mapfile -d '' gw < <(find "${view_dirs[@]}" -xdev ! -type l \( -perm -g+w -o -perm -o+w \) -print0)
for p in "${gw[@]}"; do chmod go-w "$p"; done
notroot=$(find "${view_dirs[@]}" -xdev ! -uid 0 | wc -l)

# 5. keep it small: apt caches and downloaded package lists (run `apt-get update` in the
#    tree before installing into it)
find "$root/var/cache/apt" -xdev \( -name '*.deb' -o -name '*.bin' \) -type f -delete 2>/dev/null || true
find "$root/var/lib/apt/lists" -xdev -mindepth 1 -maxdepth 1 -type f ! -name lock -delete 2>/dev/null || true
rm -f "$root/var/log/bootstrap.log"
# debootstrap copies the build host's /etc/hostname (mode and all) into the tree; a tree is
# deployed to many hosts, so do not carry the build host's name. (/etc/resolv.conf, also
# copied, is kept so that `chroot TREE apt-get ...` works; a view binds the host's over it.)
rm -f "$root/etc/hostname"

# provenance, for the admin who finds this tree later
{
    echo "suite=$suite"
    echo "variant=$variant"
    echo "include=$include"
    echo "mirror=$mirror"
    echo "debootstrap=$debootstrap_version"
    if [ "$no_check_gpg" -eq 1 ]; then echo "release_signature=NOT CHECKED (--no-check-gpg)"
    else echo "release_signature=verified with $keyring"; fi
    echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ) by $prog on $(uname -n)"
    echo "setuid_setgid_removed=${#suid_files[@]} files, $suid_dirs directories"
} > "$root/etc/envsched-build-info"
chmod 0644 "$root/etc/envsched-build-info"

[ -e "$root/etc/os-release" ] || die "built tree has no /etc/os-release"
[ -e "$root/bin/sh" ] || die "built tree has no /bin/sh"

# ---------------------------------------------------------------- swap into place --------
if [ -d "$dest" ]; then
    old=$dest.replaced-$(date +%Y%m%d%H%M%S)
    # renameat2(RENAME_EXCHANGE): DEST is the old or the new tree at every instant
    python3 - "$tmp" "$dest" <<'PY'
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, RENAME_EXCHANGE = -100, 2
if libc.renameat2(AT_FDCWD, sys.argv[1].encode(), AT_FDCWD, sys.argv[2].encode(), RENAME_EXCHANGE) != 0:
    e = ctypes.get_errno(); sys.exit(f"renameat2 exchange failed: {os.strerror(e)}")
PY
    mv -T -- "$tmp" "$old"
    echo "$prog: previous tree kept at $old (delete it once no job uses it)"
else
    mv -T -- "$tmp" "$dest"
fi
tmp=""
rm -f "$log" "$lock"
trap - EXIT

# ---------------------------------------------------------------- report -----------------
elapsed=$(( $(date +%s) - start ))
size_kib=$(du -sxk "$dest" | cut -f1)
files=$(find "$dest" -xdev | wc -l)
pretty=$(. "$dest/etc/os-release" 2>/dev/null; echo "${PRETTY_NAME:-unknown}")
if [ ${#fixed_identity[@]} -gt 0 ]; then
    echo "$prog: identity files made regular: ${fixed_identity[*]}"
fi
echo "$prog: setuid/setgid bits removed: ${#suid_files[@]} files${suid_files:+ (${suid_files[*]})}, $suid_dirs directories"
echo "$prog: group/world write removed in view directories: ${#gw[@]} entries; non-root-owned entries there: $notroot"
printf '%s: built %s (%s) in %dm%02ds, %d MiB, %d files\n' \
    "$prog" "$dest" "$pretty" $((elapsed / 60)) $((elapsed % 60)) $((size_kib / 1024)) "$files"
[ "$no_check_gpg" -eq 0 ] ||
    echo "$prog: WARNING: $dest was built WITHOUT verifying the $suite Release signature (--no-check-gpg)" >&2
