#!/usr/bin/env bash
# Build and link the board firmware examples (examples/boards/*) that this
# machine can build, in release mode with Debian's Rust toolchain
# (rustc-web, cargo-web, rust-web-src; linker: ld.lld-22 from lld-22); print each one's
# section sizes and turn it into an app image with esptool (from PyPI), which
# proves the image is valid for the chip. First run the host tests of the
# shared application (examples/boards/app).
#
# Wi-Fi and flespi settings are placeholders: this proves the firmware builds
# and links. All projects share one CARGO_TARGET_DIR, so the dependencies
# they have in common are compiled once.
#
#   bash scripts/build-boards.sh            # every board in BOARDS
#   bash scripts/build-boards.sh esp32c3    # only these
#
# examples/boards/esp32 (Xtensa) needs Espressif's `esp` toolchain and is not
# built here; see its README.
set -euo pipefail

# One line per host-buildable board project:
#   folder under examples/boards : binary name : Rust target : esptool chip
BOARDS=(
    "esp32c3:mqtts-esp32c3:riscv32imc-unknown-none-elf:esp32c3"
    "esp8266-at:mqtts-esp8266-at:riscv32imc-unknown-none-elf:esp32c3"
)

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
boards_dir="$repo_root/examples/boards"

die() { echo "build-boards: ERROR: $*" >&2; exit 1; }
# shellcheck source=scripts/debian-toolchain.sh
source "$repo_root/scripts/debian-toolchain.sh"
require_deb_linker
export CARGO_TARGET_DIR="${BOARDS_TARGET_DIR:-$repo_root/target/boards}"
export WIFI_SSID="${WIFI_SSID:-ci-network}"
export WIFI_PASSWORD="${WIFI_PASSWORD:-ci-password}"
export FLESPI_TOKEN="${FLESPI_TOKEN:-FlespiToken CI-PLACEHOLDER}"

selected=("$@")
wanted() {
    [[ ${#selected[@]} -eq 0 ]] && return 0
    local name
    for name in "${selected[@]}"; do [[ "$name" == "$1" ]] && return 0; done
    return 1
}
for name in "${selected[@]}"; do
    found=0
    for entry in "${BOARDS[@]}"; do [[ "${entry%%:*}" == "$name" ]] && found=1; done
    [[ $found -eq 1 ]] || die "unknown board '$name' (known: ${BOARDS[*]%%:*})"
done

# The shared application's host tests (commands, JSON, topics, the
# build-time pin parser, the watchdog schedule, the emulated boards'
# command line), built for the host without the settings set by the user:
# MQTT_CLIENT_ID and MQTT_TOPIC_PREFIX must be unset for them.
start=$SECONDS
(cd "$boards_dir/app" \
    && env -u MQTT_CLIENT_ID -u MQTT_TOPIC_PREFIX -u FLESPI_PIN_SHA256 -u FLESPI_PIN_SPKI_SHA256 \
        "$DEB_CARGO" test --quiet --features emulated) \
    || die "host tests of examples/boards/app failed"
echo "build-boards: app host tests passed in $((SECONDS - start)) s"

size_tool=""
for tool in llvm-size-22 llvm-size; do
    command -v "$tool" >/dev/null 2>&1 && { size_tool="$tool"; break; }
done

# The ELF must make a valid app image for the chip: esptool (from PyPI) in
# its own virtual environment.
venv="${ESPTOOL_VENV:-$repo_root/target/esptool-venv}"
if [[ ! -x "$venv/bin/esptool" ]]; then
    python3 -m venv "$venv" || die "python3 -m venv failed (apt-get install python3-venv)"
    "$venv/bin/pip" install --quiet "esptool>=5,<6" || die "pip install esptool failed"
fi

for entry in "${BOARDS[@]}"; do
    IFS=: read -r board bin target chip <<<"$entry"
    wanted "$board" || continue
    start=$SECONDS
    (cd "$boards_dir/$board" && "$DEB_CARGO" build --release) \
        || die "$board: cargo build failed"
    elf="$CARGO_TARGET_DIR/$target/release/$bin"
    [[ -f "$elf" ]] || die "$board: no firmware ELF at $elf"
    echo "build-boards: $board: linked $elf in $((SECONDS - start)) s"
    if [[ -n "$size_tool" ]]; then
        "$size_tool" -A "$elf" | grep -E '^(\.text|\.rodata|\.data|\.bss|\.rwtext|\.trap|section)' || true
    else
        echo "build-boards: no llvm-size found; sizes not printed"
    fi
    image="$CARGO_TARGET_DIR/$bin.bin"
    "$venv/bin/esptool" --chip "$chip" elf2image --output "$image" "$elf" \
        || die "$board: esptool elf2image refused the firmware"
    echo "build-boards: $board: app image $image, $(stat -c %s "$image") bytes"
done
