# Sourced (not run) by the scripts that build for the embedded targets
# (cross-build.sh, build-boards.sh, perf-size.sh): Debian's Rust toolchain,
# never rustup's, and the linker Debian's packages install.
#
# The rustup toolchain on CI machines has the host target only and no
# rust-src; Debian's rustc-web + rust-web-src have the std sources that
# `-Zbuild-std` needs, and RUSTC_BOOTSTRAP=1 lets that stable compiler take
# the -Z flag.
#
# Linking: rustc's default linker for riscv32imc/thumbv7em is `rust-lld`,
# which neither rustc-web nor lld-22 ships. lld-22 installs `ld.lld-22`;
# the projects that link (examples/boards/*, perf/size) name it as their
# target's `linker` in .cargo/config.toml. Nothing here or there needs a
# file made by hand (scripts/fresh-machine-check.sh proves it).
#
# Before sourcing: define `die` (prints a line and exits non-zero).
# Env: DEB_BIN  where Debian's cargo/rustc live (default: /usr/bin)

DEB_BIN="${DEB_BIN:-/usr/bin}"
# The linker the linking projects name in .cargo/config.toml (package lld-22).
DEB_LINKER="ld.lld-22"

[[ -x "$DEB_BIN/cargo" && -x "$DEB_BIN/rustc" ]] \
    || die "Debian's cargo/rustc not found in $DEB_BIN (apt-get install rustc-web cargo-web rust-web-src)"
# Debian's cargo must not run rustup's rustc (or its proxies): pin RUSTC and
# put Debian's bin dir first for anything else cargo spawns (rustdoc, ...).
export RUSTC="$DEB_BIN/rustc"
export RUSTDOC="$DEB_BIN/rustdoc"
export PATH="$DEB_BIN:$PATH"
unset RUSTUP_TOOLCHAIN RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER CARGO_BUILD_RUSTC \
    CARGO_BUILD_RUSTC_WRAPPER CARGO CARGO_BUILD_TARGET 2>/dev/null || true
export RUSTC_BOOTSTRAP=1
DEB_CARGO="$DEB_BIN/cargo"

deb_sysroot="$("$RUSTC" --print sysroot)"
[[ -f "$deb_sysroot/lib/rustlib/src/rust/library/core/src/lib.rs" ]] \
    || die "no std sources under $deb_sysroot/lib/rustlib/src/rust (apt-get install rust-web-src)"

# For the scripts that link: the linker must be there and run.
require_deb_linker() {
    command -v "$DEB_LINKER" >/dev/null 2>&1 \
        || die "$DEB_LINKER not found (apt-get install lld-22)"
    "$DEB_LINKER" --version >/dev/null 2>&1 \
        || die "$DEB_LINKER does not run (apt-get install --reinstall lld-22)"
}
