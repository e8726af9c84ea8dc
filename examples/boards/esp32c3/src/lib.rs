//! The board-independent part of the mqtts ESP32-C3 example: build-time
//! settings ([`config`]) and the MQTT application ([`app`]).
//!
//! Nothing here names an esp-hal type: the board glue (`src/bin/main.rs`)
//! brings Wi-Fi, the network stack, a cryptographic RNG and the pins, so an
//! ESP32 (Xtensa) project can use the same modules.
#![no_std]

pub mod app;
pub mod config;
