#!/usr/bin/env bash
# On-core figures (issue 17, item 6; docs/PERFORMANCE.md, "On a
# microcontroller core"): the riscv32imc board firmware (the ESP32-C3's
# ISA) in its measurement mode under qemu-system-riscv32 -M virt
# -icount shift=0, against mosquitto through the simulated ESP8266 modem.
# tests/emulated_figures.rs boots it once per trust mode and prints a
# table: instructions (minstret, sleep subtracted), stack, heap and RAM per
# phase, and an estimate in ms at 160 MHz.
#
#   bash scripts/emulated-figures.sh
#
# Needs what scripts/run-emulated.sh needs: mosquitto, qemu-system-misc and
# Debian's Rust toolchain for the firmware. The firmware's console is
# printed as it runs; the table comes last.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export MQTTS_EMULATED=riscv32
exec cargo test --features esp-at --test emulated_figures -- --ignored --nocapture
