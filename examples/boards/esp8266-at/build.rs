//! Linker script for the firmware. The settings' rebuild triggers are in
//! the shared application's build script (../app/build.rs).

fn main() {
    // esp-hal's linker script: the memory map and the bootloader's app
    // descriptor.
    println!("cargo:rustc-link-arg-bins=-Tlinkall.x");
    println!("cargo:rerun-if-changed=build.rs");
}
