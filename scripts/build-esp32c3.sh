#!/usr/bin/env bash
# Build and link the ESP32-C3 firmware example (examples/boards/esp32c3) in
# release mode with Debian's Rust toolchain (rustc-web, cargo-web,
# rust-web-src; linker: lld-22), then print its section sizes. Wi-Fi and
# flespi settings are placeholders: this proves the firmware builds and links.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root/examples/boards/esp32c3"

DEB_BIN="${DEB_BIN:-/usr/bin}"
die() { echo "build-esp32c3: ERROR: $*" >&2; exit 1; }
[[ -x "$DEB_BIN/cargo" && -x "$DEB_BIN/rustc" ]] || die "Debian's cargo/rustc missing (apt-get install rustc-web cargo-web rust-web-src)"
[[ -e "$DEB_BIN/rust-lld" ]] && "$DEB_BIN/rust-lld" -flavor gnu --version >/dev/null 2>&1 \
    || die "rust-lld does not run (apt-get install lld-22)"

export RUSTC="$DEB_BIN/rustc"
export RUSTDOC="$DEB_BIN/rustdoc"
export PATH="$DEB_BIN:$PATH"
unset RUSTUP_TOOLCHAIN RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER CARGO_BUILD_RUSTC CARGO_BUILD_RUSTC_WRAPPER CARGO 2>/dev/null || true
export RUSTC_BOOTSTRAP=1
export WIFI_SSID="${WIFI_SSID:-ci-network}"
export WIFI_PASSWORD="${WIFI_PASSWORD:-ci-password}"
export FLESPI_TOKEN="${FLESPI_TOKEN:-FlespiToken CI-PLACEHOLDER}"

start=$SECONDS
"$DEB_BIN/cargo" build --release
elf=target/riscv32imc-unknown-none-elf/release/mqtts-esp32c3
[[ -f "$elf" ]] || die "no firmware ELF at $elf"
echo "build-esp32c3: linked $elf in $((SECONDS - start)) s"
size_tool=""
for tool in llvm-size-22 llvm-size; do
    command -v "$tool" >/dev/null 2>&1 && { size_tool="$tool"; break; }
done
if [[ -n "$size_tool" ]]; then
    "$size_tool" -A "$elf" | grep -E '^(\.text|\.rodata|\.data|\.bss|section)' || true
else
    echo "build-esp32c3: no llvm-size found; sizes not printed"
fi

# The ELF must make a valid app image for the chip: esptool (from PyPI) in
# its own virtual environment.
venv="${ESPTOOL_VENV:-$repo_root/target/esptool-venv}"
if [[ ! -x "$venv/bin/esptool" ]]; then
    python3 -m venv "$venv" || die "python3 -m venv failed (apt-get install python3-venv)"
    "$venv/bin/pip" install --quiet "esptool>=5,<6" || die "pip install esptool failed"
fi
image="target/mqtts-esp32c3.bin"
"$venv/bin/esptool" --chip esp32c3 elf2image --output "$image" "$elf" \
    || die "esptool elf2image refused the firmware"
echo "build-esp32c3: app image $image, $(stat -c %s "$image") bytes"
