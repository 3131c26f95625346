#!/bin/sh
# Builds credcache_<version>_<arch>.deb with dpkg-deb from a staged tree:
# both binaries, the docker-credential-credcache link, the systemd user
# units, completions and man pages. The generated files come from the
# credcache binary itself (`daemon install-service`, `completions`, `man`),
# so the package carries exactly what `packaging/install.sh` installs.
#
#   packaging/deb/build.sh [--bin-dir DIR] [--out DIR] [--fast]
#   packaging/deb/build.sh --assets DIR
#
#   --bin-dir DIR  take credcache and credcached from DIR (default: build
#                  them: the client as install.sh does, with the `client`
#                  profile and statically linked on Linux with glibc, see
#                  packaging/client-target.sh; the daemon with --release)
#   --out DIR      where the .deb goes (default: target/debian)
#   --fast         gzip -1 instead of xz (CI and tests: debug binaries)
#   --assets DIR   only stage the client and generate the units,
#                  completions, man pages and docs under DIR/usr/... (what
#                  cargo-deb's metadata in client/Cargo.toml packages, with
#                  target/release/credcached); without --bin-dir the client
#                  is built as install.sh builds it
#
# The package does not enable the units; each user runs
# `systemctl --user enable --now credcached.socket`.
set -eu

usage() {
    sed -n '2,25s/^# \{0,1\}//p' "$0" >&2
    exit 2
}

repo=$(cd "$(dirname "$0")/../.." && pwd)
bin_dir=
out=$repo/target/debian
compress="-Zxz"
assets_only=
while [ $# -gt 0 ]; do
    case "$1" in
        --bin-dir) [ $# -ge 2 ] || usage; bin_dir=$2; shift ;;
        --out) [ $# -ge 2 ] || usage; out=$2; shift ;;
        --fast) compress="-Zgzip -z1" ;;
        --assets) [ $# -ge 2 ] || usage; assets_only=$2; shift ;;
        -h | --help) usage ;;
        *) echo "build.sh: unknown option: $1" >&2; usage ;;
    esac
    shift
done

if [ -n "$bin_dir" ]; then
    cc=$bin_dir/credcache
    daemon=$bin_dir/credcached
else
    # The client as install.sh builds it: the `client` profile, statically
    # linked where it can be (packaging/client-target.sh).
    # shellcheck source=packaging/client-target.sh
    . "$repo/packaging/client-target.sh"
    target=$(client_static_target)
    if [ -n "$target" ]; then
        (cd "$repo" && RUSTFLAGS=$(client_static_rustflags) cargo build --locked \
            --profile client --target "$target" -p credcache --bin credcache)
        cc=$repo/target/$target/client/credcache
    else
        (cd "$repo" && cargo build --locked --profile client -p credcache --bin credcache)
        cc=$repo/target/client/credcache
    fi
    (cd "$repo" && cargo build --release --locked -p credcache-daemon --bin credcached)
    daemon=$repo/target/release/credcached
fi
for bin in "$cc" "$daemon"; do
    [ -x "$bin" ] || { echo "build.sh: $bin is missing" >&2; exit 1; }
done

# Everything but the binaries, under $1/usr.
stage_assets() {
    root=$1
    mkdir -p "$root/usr/lib/systemd/user" \
        "$root/usr/share/bash-completion/completions" \
        "$root/usr/share/zsh/vendor-completions" \
        "$root/usr/share/fish/vendor_completions.d" \
        "$root/usr/share/man/man1" \
        "$root/usr/share/doc/credcache" \
        "$root/usr/bin"
    "$cc" daemon install-service --platform systemd --no-enable \
        --unit-dir "$root/usr/lib/systemd/user" --bin-dir /usr/bin 2>/dev/null
    "$cc" completions bash >"$root/usr/share/bash-completion/completions/credcache"
    "$cc" completions zsh >"$root/usr/share/zsh/vendor-completions/_credcache"
    "$cc" completions fish >"$root/usr/share/fish/vendor_completions.d/credcache.fish"
    "$cc" man --out-dir "$root/usr/share/man/man1"
    gzip -9nf "$root"/usr/share/man/man1/*.1
    ln -sf credcache "$root/usr/bin/docker-credential-credcache"
    cat >"$root/usr/share/doc/credcache/copyright" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: credcache
Source: https://github.com/credcache/credcache

Files: *
Copyright: the credcache developers
License: MIT or Apache-2.0
 Licensed under either of the Apache License, Version 2.0, or the MIT
 license, at your option. On Debian systems the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
EOF
    find "$root/usr" -type f -exec chmod 644 {} +
}

if [ -n "$assets_only" ]; then
    stage_assets "$assets_only"
    # The client itself too: cargo-deb packages this one, the fast build.
    install -m 755 "$cc" "$assets_only/usr/bin/credcache"
    exit 0
fi

command -v dpkg-deb >/dev/null 2>&1 || { echo "build.sh: dpkg-deb is needed (apt-get install dpkg)" >&2; exit 1; }
version=$("$cc" --version | cut -d' ' -f2)
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
# dpkg-deb wants the package root itself 0755, whatever the umask.
chmod 755 "$stage"

stage_assets "$stage"
install -m 755 "$cc" "$stage/usr/bin/credcache"
install -m 755 "$daemon" "$stage/usr/bin/credcached"

mkdir -p "$stage/DEBIAN"
installed_size=$(du -sk "$stage/usr" | cut -f1)
cat >"$stage/DEBIAN/control" <<EOF
Package: credcache
Version: $version
Architecture: $arch
Maintainer: credcache developers <credcache@users.noreply.github.com>
Installed-Size: $installed_size
Depends: libc6, ca-certificates
Section: utils
Priority: optional
Homepage: https://github.com/credcache/credcache
Description: per-user daemon that caches short-lived cloud tokens
 credcached fetches Google, Microsoft Entra, GKE multi-cloud, Azure
 Container Apps and API Management tokens once, keeps them fresh, and
 hands them out over a private Unix socket; credcache prints them for
 kubectl, shells, curl and IDEs in about a millisecond.
 .
 Enable the per-user service with:
 systemctl --user enable --now credcached.socket
EOF

mkdir -p "$out"
deb=$out/credcache_${version}_${arch}.deb
# shellcheck disable=SC2086 # $compress is two words on purpose.
dpkg-deb --root-owner-group $compress --build "$stage" "$deb" >/dev/null
echo "$deb"
