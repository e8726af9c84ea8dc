//! Linker script for the ESP32 firmware. The settings' rebuild triggers
//! are in the shared application's build script (../app/build.rs).

fn main() {
    // esp-hal's linker script, which pulls in the memory map, the
    // bootloader's app descriptor and esp-radio's sections.
    println!("cargo:rustc-link-arg-bins=-Tlinkall.x");
    println!("cargo:rerun-if-changed=build.rs");
}
