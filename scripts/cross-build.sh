#!/usr/bin/env bash
# Cross-build the `mqtts` library (no linking) for the embedded targets it
# is meant for, with Debian's Rust toolchain (rustc-web / cargo-web /
# rust-web-src), which ships the std sources that `-Zbuild-std` needs; the
# rustup toolchain on the CI machine has the host target only and no rust-src.
#
# Usage: bash scripts/cross-build.sh      (from anywhere; builds the repo it lives in)
# Env:   CROSS_TARGET_DIR  target dir for these builds (default: <repo>/target/cross,
#                          kept apart from the rustup toolchain's artifacts)
#        DEB_BIN           where Debian's cargo/rustc live (default: /usr/bin)
#
# Every combination below is built even if an earlier one fails; the script
# then exits non-zero and lists the failures.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

CROSS_TARGET_DIR="${CROSS_TARGET_DIR:-$repo_root/target/cross}"

# target|features ("" = default features). Library build only.
COMBINATIONS=(
    "riscv32imc-unknown-none-elf|"              # ESP32-C3
    "thumbv7em-none-eabihf|"                    # Cortex-M4F / M7F
    "riscv32imc-unknown-none-elf|p384,ed25519"
    "thumbv7em-none-eabihf|p384,ed25519"
    "thumbv7em-none-eabihf|rsa"
    # rsa's spin needs CAS, which riscv32imc lacks: Cargo.toml routes it
    # through portable-atomic there, whose backend the firmware chooses
    # (esp-hal: single-core; otherwise the `critical-section` feature).
    "riscv32imc-unknown-none-elf|rsa,flespi,critical-section"
    "riscv32imc-unknown-none-elf|embassy-time"
    "riscv32imc-unknown-none-elf|esp-at,sha2-compact,defmt"
)

die() { echo "cross-build: ERROR: $*" >&2; exit 1; }

# --- Debian toolchain, never rustup's (library builds: no linker needed) ---
# shellcheck source=scripts/debian-toolchain.sh
source "$repo_root/scripts/debian-toolchain.sh"

echo "cross-build: cargo = $DEB_CARGO ($("$DEB_CARGO" --version))"
echo "cross-build: rustc = $RUSTC ($("$RUSTC" --version))"
echo "cross-build: target dir = $CROSS_TARGET_DIR"

for combo in "${COMBINATIONS[@]}"; do
    target="${combo%%|*}"
    "$RUSTC" --print target-list | grep -qx "$target" || die "$RUSTC does not know target $target"
done

# --- builds ---------------------------------------------------------------
built=()
failed=()
for combo in "${COMBINATIONS[@]}"; do
    target="${combo%%|*}"
    features="${combo#*|}"
    label="$target [features: ${features:-default}]"
    args=(build --lib -Zbuild-std=core,alloc --target "$target" --target-dir "$CROSS_TARGET_DIR")
    [[ -n "$features" ]] && args+=(--features "$features")
    echo
    echo "----- cross-build: $label"
    echo "+ $DEB_CARGO ${args[*]}"
    start=$SECONDS
    if "$DEB_CARGO" "${args[@]}"; then
        rlib="$CROSS_TARGET_DIR/$target/debug/libmqtts.rlib"
        [[ -f "$rlib" ]] || die "build of $label succeeded but $rlib is missing"
        echo "cross-build: OK $label -> $rlib ($(stat -c %s "$rlib") bytes, $((SECONDS - start))s)"
        built+=("$label")
    else
        echo "cross-build: FAILED $label ($((SECONDS - start))s)" >&2
        failed+=("$label")
    fi
done

echo
echo "cross-build: summary"
for b in "${built[@]}"; do echo "  built:  $b"; done
for f in "${failed[@]+"${failed[@]}"}"; do echo "  FAILED: $f"; done
if ((${#failed[@]})); then
    die "${#failed[@]} cross build(s) failed"
fi
