#!/usr/bin/env bash
# Builds and starts the board firmware for an emulated microcontroller core
# (issue 17): the shared application (examples/boards/app) with the ESP-AT
# modem driver on the machine's UART, which QEMU connects to a TCP socket
# on 127.0.0.1 (the simulated ESP8266 of tests/support/at_modem.rs listens
# there). tests/emulated_boards.rs drives both commands; so can a person.
#
#   bash scripts/emulated.sh build riscv32|cortex-m4
#       builds examples/boards/qemu-riscv32 (or qemu-cortex-m4) with Debian's toolchain (placeholder
#       Wi-Fi/flespi build settings, as scripts/build-boards.sh); the last line
#       on stdout is the firmware ELF's path.
#   bash scripts/emulated.sh qemu riscv32|cortex-m4 [--elf ELF] --modem-port PORT -- WORD...
#       execs QEMU with the firmware (default: the built ELF), its UART
#       connected to 127.0.0.1:PORT (QEMU is the client: something must
#       listen there), and WORDs as the firmware's semihosting command line
#       (trust=..., port=..., seed=...: examples/boards/qemu-riscv32/README.md;
#       the same words on both machines).
#       The firmware's console (one `LEVEL - message` line each) is QEMU's
#       stdout; QEMU's exit status is the firmware's (semihosting SYS_EXIT:
#       0, or 1 after a `PANIC - ...` line).
#
# Machines: riscv32 (riscv32imc, the ESP32-C3's ISA, on qemu-system-riscv32 -M virt),
#           cortex-m4 (thumbv7em-none-eabihf, Cortex-M4F, on qemu-system-arm -M mps2-an386).
#
# Env: EMULATED_TARGET_DIR  cargo's target folder (default: target/emulated)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
die() { echo "emulated: ERROR: $*" >&2; exit 1; }
usage() {
    echo "usage: $0 build MACHINE" >&2
    echo "       $0 qemu MACHINE [--elf ELF] --modem-port PORT -- WORD..." >&2
    echo "machines: riscv32, cortex-m4" >&2
    exit 2
}

# The machine's board folder, binary, Rust target, QEMU binary, its Debian
# package and its machine options.
machine_config() {
    case "$1" in
    riscv32)
        board=qemu-riscv32
        bin=mqtts-qemu-riscv32
        target=riscv32imc-unknown-none-elf
        qemu=qemu-system-riscv32
        qemu_package=qemu-system-misc
        # -bios none: no OpenSBI, the firmware starts in machine mode.
        qemu_machine=(-M virt -cpu rv32 -m 16M -bios none)
        ;;
    cortex-m4)
        board=qemu-cortex-m4
        bin=mqtts-qemu-cortex-m4
        target=thumbv7em-none-eabihf
        qemu=qemu-system-arm
        qemu_package=qemu-system-arm
        # The Cortex-M4F image of the MPS2 board; -serial is its UART0.
        qemu_machine=(-M mps2-an386)
        ;;
    *) die "unknown machine '$1' (known: riscv32, cortex-m4)" ;;
    esac
}

target_dir="${EMULATED_TARGET_DIR:-$repo_root/target/emulated}"

[[ $# -ge 2 ]] || usage
command=$1
machine=$2
shift 2
machine_config "$machine"
elf="$target_dir/$target/release/$bin"

case "$command" in
build)
    [[ $# -eq 0 ]] || usage
    # shellcheck source=scripts/debian-toolchain.sh
    source "$repo_root/scripts/debian-toolchain.sh"
    require_deb_linker
    # The application reads these when it is compiled (app/src/config.rs);
    # the emulated boards take Wi-Fi, trust and names from their command
    # line instead, and the token is a placeholder (the test broker takes
    # any user name). Settings that would change the build are unset.
    (cd "$repo_root/examples/boards/$board" \
        && env -u FLESPI_PIN_SHA256 -u FLESPI_PIN_SPKI_SHA256 -u MQTT_CLIENT_ID \
            -u MQTT_TOPIC_PREFIX -u PUBLISH_INTERVAL_SECS \
            CARGO_TARGET_DIR="$target_dir" \
            WIFI_SSID=emulated-network WIFI_PASSWORD=emulated-password \
            FLESPI_TOKEN="FlespiToken EMULATED-PLACEHOLDER" \
            "$DEB_CARGO" build --release >&2) \
        || die "$machine: cargo build failed"
    [[ -f "$elf" ]] || die "$machine: no firmware ELF at $elf"
    if command -v llvm-size-22 >/dev/null 2>&1; then
        llvm-size-22 -A "$elf" | grep -E '^(section|\.text|\.rodata|\.data|\.bss|\.stack)' >&2 || true
    fi
    echo "$elf"
    ;;
qemu)
    modem_port=""
    while [[ $# -gt 0 ]]; do
        case "$1" in
        --elf) [[ $# -ge 2 ]] || usage; elf=$2; shift 2 ;;
        --modem-port) [[ $# -ge 2 ]] || usage; modem_port=$2; shift 2 ;;
        --) shift; break ;;
        *) usage ;;
        esac
    done
    [[ "$modem_port" =~ ^[0-9]+$ ]] || die "--modem-port PORT is required (the modem's TCP listener on 127.0.0.1)"
    command -v "$qemu" >/dev/null 2>&1 \
        || die "$qemu not found (apt-get install $qemu_package)"
    [[ -f "$elf" ]] || die "no firmware at $elf (bash scripts/emulated.sh build $machine)"
    # QEMU joins the arg= values with spaces into the semihosting command
    # line: a word cannot hold a space. A comma in an option value is
    # written twice.
    semihosting="enable=on,target=native,chardev=console"
    for word in "$@"; do
        [[ "$word" =~ [[:space:]] ]] && die "a word cannot contain white space: '$word'"
        semihosting+=",arg=${word//,/,,}"
    done
    # -icount shift=0: one instruction is one nanosecond of virtual time,
    # so instruction counts (minstret) are deterministic; when the core
    # idles (WFI, WFE), virtual time follows the host's clock.
    exec "$qemu" "${qemu_machine[@]}" -nographic -monitor none \
        -kernel "$elf" -icount shift=0 \
        -chardev stdio,id=console -semihosting-config "$semihosting" \
        -chardev "socket,id=modem,host=127.0.0.1,port=$modem_port" -serial chardev:modem
    ;;
*) usage ;;
esac
