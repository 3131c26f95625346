# Sourced by install.sh and deb/build.sh: how the packaged client is built.
#
# `credcache get` runs on every kubectl call, so the client is built with
# the `client` profile (Cargo.toml) and, on Linux with glibc, linked
# statically: no dynamic loader, no libc/libgcc_s to map and relocate
# (BENCHMARKS.md, client). Cargo has no per-package switch for that:
# RUSTFLAGS with `-C target-feature=+crt-static`, and an explicit
# `--target`, so that the flag reaches the target's crates and not the
# proc-macros and build scripts the build runs on the host. The daemon
# stays dynamic: it resolves host names, which static glibc does poorly.

# Prints the target triple to build the static client for, or nothing when
# it is not to be static (not glibc, or no static libc to link: Fedora's
# glibc-static missing, say).
client_static_target() {
    host=$(rustc -vV 2>/dev/null | sed -n 's/^host: //p')
    case "$host" in
        *-linux-gnu*) ;;
        *) return 0 ;;
    esac
    # `cc -print-file-name` echoes the bare name when it finds no such file.
    libc_a=$(${CC:-cc} -print-file-name=libc.a 2>/dev/null) || return 0
    [ "$libc_a" != libc.a ] && [ -f "$libc_a" ] || {
        echo "note: no static libc (libc.a) found: the credcache client is linked dynamically (slower start)" >&2
        return 0
    }
    printf '%s\n' "$host"
}

# The RUSTFLAGS for the static client: the caller's, plus crt-static and
# a fixed load address. A static-pie relocates itself at every start, and
# glibc's self-relocation was 54,000 of the 122,000 instructions of a
# cached `get` (BENCHMARKS.md, client); a non-PIE executable has nothing
# to relocate. What that gives up is ASLR of the client's own code (its
# stack, heap and mappings stay randomised); the client takes input only
# from its user and from a daemon it has checked runs as that user.
client_static_rustflags() {
    printf '%s\n' "${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static -C relocation-model=static"
}
