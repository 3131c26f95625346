#!/bin/sh
# Installs credcache for the current user: both binaries, the
# docker-credential-credcache link, shell completions (bash, zsh, fish) and
# man pages in the XDG/user locations, and, with --service, the systemd user
# units (Linux) or launchd agent (macOS). Running it again updates in place.
#
#   packaging/install.sh [--service] [--bin-dir DIR] [--prefix DIR]
#
#   --service       also run `credcache daemon install-service`
#   --bin-dir DIR   copy credcache and credcached from DIR (a build's
#                   target/release, an unpacked archive) instead of
#                   building them with `cargo install --locked` (the
#                   client with the `client` profile, linked statically
#                   on Linux with glibc: packaging/client-target.sh)
#   --prefix DIR    with --bin-dir: install the binaries into DIR/bin
#                   (default: ~/.local); without it, cargo's own root
#                   (CARGO_INSTALL_ROOT, else ~/.cargo) is used
set -eu

usage() {
    sed -n '2,19s/^# \{0,1\}//p' "$0" >&2
    exit 2
}

service=no
bin_dir=
prefix=
while [ $# -gt 0 ]; do
    case "$1" in
        --service) service=yes ;;
        --bin-dir) [ $# -ge 2 ] || usage; bin_dir=$2; shift ;;
        --prefix) [ $# -ge 2 ] || usage; prefix=$2; shift ;;
        -h | --help) usage ;;
        *) echo "install.sh: unknown option: $1" >&2; usage ;;
    esac
    shift
done

: "${HOME:?install.sh: HOME is not set}"
repo=$(cd "$(dirname "$0")/.." && pwd)
data_home=${XDG_DATA_HOME:-$HOME/.local/share}
config_home=${XDG_CONFIG_HOME:-$HOME/.config}

say() { printf '%s\n' "$*"; }

# 1. The binaries.
if [ -n "$bin_dir" ]; then
    for bin in credcache credcached; do
        [ -x "$bin_dir/$bin" ] || { echo "install.sh: $bin_dir/$bin is missing" >&2; exit 1; }
    done
    dest=${prefix:-$HOME/.local}/bin
    mkdir -p "$dest"
    for bin in credcache credcached; do
        # Copy, then rename: a running daemon keeps its old file intact.
        cp "$bin_dir/$bin" "$dest/.$bin.new"
        chmod 755 "$dest/.$bin.new"
        mv -f "$dest/.$bin.new" "$dest/$bin"
    done
else
    command -v cargo >/dev/null 2>&1 || {
        echo "install.sh: cargo is not on PATH: install Rust (rustup.rs), or pass --bin-dir" >&2
        exit 1
    }
    root=${CARGO_INSTALL_ROOT:-${CARGO_HOME:-$HOME/.cargo}}
    if [ -n "$prefix" ]; then root=$prefix; fi
    # The client as packaged: the `client` profile, statically linked where
    # it can be (packaging/client-target.sh).
    # shellcheck source=packaging/client-target.sh
    . "$repo/packaging/client-target.sh"
    target=$(client_static_target)
    if [ -n "$target" ]; then
        RUSTFLAGS=$(client_static_rustflags) cargo install --locked --root "$root" \
            --profile client --target "$target" --path "$repo/client"
    else
        cargo install --locked --root "$root" --profile client --path "$repo/client"
    fi
    cargo install --locked --root "$root" --path "$repo/daemon"
    dest=$root/bin
fi
say "binaries:    $dest/credcache, $dest/credcached"

# Docker finds credential helpers by name on PATH; credcache answers to it.
ln -sf credcache "$dest/docker-credential-credcache"
say "docker:      $dest/docker-credential-credcache -> credcache"

cc=$dest/credcache

# 2. Completions, where each shell looks for a user's own.
bash_dir=$data_home/bash-completion/completions
zsh_dir=$data_home/zsh/site-functions
fish_dir=$config_home/fish/completions
mkdir -p "$bash_dir" "$zsh_dir" "$fish_dir"
"$cc" completions bash >"$bash_dir/credcache"
"$cc" completions zsh >"$zsh_dir/_credcache"
"$cc" completions fish >"$fish_dir/credcache.fish"
say "completions: $bash_dir/credcache, $zsh_dir/_credcache, $fish_dir/credcache.fish"

# 3. Man pages, beside the binaries: man(1) derives DIR/share/man from each
#    DIR/bin on PATH (~/.cargo/bin: ~/.cargo/share/man; ~/.local/bin:
#    ~/.local/share/man), so `man credcache` works wherever they went.
case "$dest" in
    */bin) man_root=${dest%/bin}/share/man ;;
    *) man_root=$data_home/man ;;
esac
"$cc" man --out-dir "$man_root/man1"
say "man pages:   $man_root/man1 (man credcache)"
if command -v man >/dev/null 2>&1 &&
    [ "$(PATH="$dest:${PATH:-}" man -w credcache 2>/dev/null)" = "$man_root/man1/credcache.1" ]; then
    :
else
    say "note: man does not look in $man_root; add this line to your shell's profile:"
    say "  export MANPATH=\"$man_root:\$MANPATH\""
fi

# 4. The service, if asked for.
if [ "$service" = yes ]; then
    "$cc" daemon install-service
fi

# Hints for what this script cannot do for the user's shell.
case ":${PATH:-}:" in
    *":$dest:"*) ;;
    *) say "note: $dest is not on your PATH; add it in your shell's profile" ;;
esac
case "${SHELL:-}" in
    */zsh) say "note: zsh needs 'fpath=($zsh_dir \$fpath)' before compinit in ~/.zshrc" ;;
esac
say "done: try \`credcache status\`"
