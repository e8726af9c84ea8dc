#!/usr/bin/env bash
# Runs the board firmware on emulated microcontroller cores against a real
# broker: tests/emulated_boards.rs builds the firmware (scripts/emulated.sh),
# starts mosquitto (TLS 1.3, certificates made by the test), the simulated
# ESP8266 modem on 127.0.0.1 that QEMU's UART connects to, and QEMU, then
# checks every case from the host side.
#
#   bash scripts/run-emulated.sh riscv32      # the ESP32-C3's ISA on qemu-system-riscv32 -M virt
#   bash scripts/run-emulated.sh cortex-m4    # Cortex-M4F on qemu-system-arm -M mps2-an386
#   bash scripts/run-emulated.sh              # both
#
# Needs: mosquitto, qemu-system-misc / qemu-system-arm, and Debian's Rust
# toolchain for the firmware (rustc-web cargo-web rust-web-src lld-22); see
# the README's "Set-up on a fresh machine". The firmware's console is
# printed as it runs, each line tagged with its machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

machines=${1:-riscv32,cortex-m4}
case ",$machines," in
*,riscv32,* | *,cortex-m4,*) ;;
*)
    echo "usage: $0 [riscv32|cortex-m4|riscv32,cortex-m4]" >&2
    exit 2
    ;;
esac
export MQTTS_EMULATED=$machines
exec cargo test --features esp-at --test emulated_boards -- --nocapture
