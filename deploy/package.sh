#!/usr/bin/env bash
# Builds the Debian package with `cargo deb` (release profile) and checks what is in it:
# the binary runs (--version, and the packaged config passes check-config) from an
# extraction, the systemd units pass `systemd-analyze verify`, the example config is a
# conffile in /etc/outreach, the templates, the system user and the docs are there.
#   bash deploy/package.sh            (deploy/test.sh runs it; prints the .deb's path last)
# The .deb is compressed lightly (cargo deb --fast: seconds instead of minutes for the
# debug symbols); OUTREACH_DEB_FAST=0 compresses it fully, for a package to ship.
# OUTREACH_DEB_PROFILE=dev packages the debug build the tests already made (deploy/test.sh
# does this, to check the package without a second, release build of the whole tree);
# the default, release, is the package to ship.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CARGO_DEB_VERSION=3.8.0
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
fail() { printf 'package: FAILED: %s\n' "$*" >&2; exit 1; }
t0=$(date +%s)

if [ "$(cargo deb --version 2>/dev/null | awk '{print $2}')" != "$CARGO_DEB_VERSION" ]; then
    echo "package: installing cargo-deb $CARGO_DEB_VERSION"
    cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked --quiet
fi
command -v systemd-analyze >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null; }
command -v objcopy >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq binutils >/dev/null; }
t1=$(date +%s)

fast=--fast
[ "${OUTREACH_DEB_FAST:-1}" = 0 ] && fast=
profile=${OUTREACH_DEB_PROFILE:-release}
if [ "$profile" = release ]; then
    deb=$(cargo deb --locked $fast 2>&1 | tee -a /dev/stderr | grep -E '^/.*/outreach_[^/]*\.deb$' | tail -n1)
else
    cargo build --locked --profile "$profile" --bin outreach
    deb=$(cargo deb --locked --profile "$profile" --no-build $fast 2>&1 | tee -a /dev/stderr | grep -E '^/.*/outreach_[^/]*\.deb$' | tail -n1)
fi
[ -f "$deb" ] || fail "cargo deb made no package"
t2=$(date +%s)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dpkg-deb -I "$deb" >"$work/info"
dpkg-deb -c "$deb" | awk '{print $NF}' | sed 's#^\./#/#' >"$work/files"
grep -q '^ Package: outreach$' "$work/info" || fail "Package field"
grep -Eq '^ Depends: .*systemd' "$work/info" || fail "Depends lacks systemd"
for f in /usr/bin/outreach /usr/sbin/outreach-admin /etc/outreach/outreach.toml \
         /usr/lib/systemd/system/outreach.service /usr/lib/systemd/system/outreach-backup.service \
         /usr/lib/systemd/system/outreach-backup.timer /usr/lib/sysusers.d/outreach.conf \
         /usr/share/doc/outreach/README.md /usr/share/doc/outreach/config.example.toml; do
    grep -qx "$f" "$work/files" || fail "$f is not in the package"
done
n=0
while IFS= read -r t; do
    grep -qx "/usr/share/outreach/templates/${t#templates/}" "$work/files" || fail "template $t is not in the package"
    n=$((n+1))
done < <(find templates -type f | sort)
[ "$n" -gt 40 ] || fail "only $n templates found in templates/"

dpkg-deb -x "$deb" "$work/root"
dpkg-deb -e "$deb" "$work/control"
grep -qx /etc/outreach/outreach.toml "$work/control/conffiles" || fail "the config is not a conffile"
grep -q 'systemd-sysusers' "$work/control/postinst" || fail "postinst does not create the system user"
! grep -q '#DEBHELPER#' "$work/control/postinst" || fail "postinst still has the #DEBHELPER# marker"
for s in "$work"/control/{postinst,prerm,postrm} "$work/root/usr/sbin/outreach-admin"; do
    [ -f "$s" ] && { sh -n "$s" || fail "$s: shell syntax"; }
done
bin="$work/root/usr/bin/outreach"
version=$("$bin" --version) || fail "the packaged binary does not run"
[[ "$version" == "outreach $(awk -F'"' '/^version/{print $2; exit}' Cargo.toml)" ]] || fail "--version said: $version"
"$bin" --config "$work/root/etc/outreach/outreach.toml" check-config >/dev/null \
    || fail "the packaged example config does not pass check-config"

# systemd-analyze verify checks that ExecStart's program exists: point the units at the
# extracted binary (the path inside the package was checked above).
mkdir "$work/units"
for u in outreach.service outreach-backup.service outreach-backup.timer; do
    sed "s#/usr/bin/outreach#$bin#g" "$work/root/usr/lib/systemd/system/$u" >"$work/units/$u"
done
(cd "$work/units" && systemd-analyze verify --man=no ./outreach.service ./outreach-backup.service ./outreach-backup.timer) \
    >"$work/verify" 2>&1 || { cat "$work/verify" >&2; fail "systemd-analyze verify"; }
if [ -s "$work/verify" ]; then cat "$work/verify" >&2; fail "systemd-analyze verify printed warnings"; fi
# The hardening stays where it is: systemd's exposure score of the daemon (0 best, 10 worst).
exposure=$(cd "$work/units" && systemd-analyze security --offline=true --threshold=20 ./outreach.service 2>&1 | tail -n1) \
    || { echo "$exposure" >&2; fail "outreach.service is exposed more than 2.0 (systemd-analyze security)"; }
t3=$(date +%s)

size=$(stat -c %s "$deb")
echo "package: ok: $version, $(basename "$deb") $((size / 1024)) KiB, $(wc -l <"$work/files") entries, $n templates; units verified; ${exposure#→ }"
echo "package: time: cargo-deb/tools $((t1 - t0)) s, $profile build + packaging $((t2 - t1)) s, checks $((t3 - t2)) s"
echo "$deb"
