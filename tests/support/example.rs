//! Building an example once and running it as a user would, every process
//! bounded in time.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The features this test was built with plus `required`, so the library
/// is not rebuilt with another feature set (`cargo test` usually built the
/// example already).
fn features(required: &[&'static str]) -> Vec<&'static str> {
    let mut features = required.to_vec();
    macro_rules! feature {
        ($($name:literal),*) => {
            $(if cfg!(feature = $name) && !features.contains(&$name) { features.push($name); })*
        };
    }
    feature!(
        "defmt",
        "log",
        "p384",
        "ed25519",
        "rsa",
        "flespi",
        "alloc",
        "embassy-time"
    );
    features
}

/// Builds `examples/{name}.rs` and returns its executable's path.
pub fn build_example(name: &str, required: &[&'static str]) -> PathBuf {
    let mut cargo = Command::new(env!("CARGO"));
    // Without the variables cargo sets for this test: build scripts that
    // watch one (ring watches CARGO_MANIFEST_DIR) would otherwise rebuild
    // dependencies here, and again in the next `cargo test`.
    for (var, _) in std::env::vars_os() {
        let var = var.to_string_lossy();
        if var.starts_with("CARGO_PKG_")
            || var.starts_with("CARGO_BIN_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
            ]
            .contains(&var.as_ref())
        {
            cargo.env_remove(var.as_ref());
        }
    }
    cargo
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--quiet", "--example", name])
        // Names the executable, wherever CARGO_TARGET_DIR puts it.
        .arg("--message-format=json-render-diagnostics");
    let features = features(required);
    if !features.is_empty() {
        cargo.arg("--features").arg(features.join(","));
    }
    let mut child = cargo
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run cargo");
    let stdout = reader(child.stdout.take().expect("cargo's stdout"));
    let status = wait_bounded(&mut child, Duration::from_secs(900))
        .unwrap_or_else(|| panic!("cargo build --example {name} took more than 900 s"));
    let messages = stdout.join().expect("cargo's output");
    assert!(status.success(), "cargo build --example {name}: {status}");
    let name_field = format!(r#""name":"{name}""#);
    messages
        .lines()
        .filter(|line| line.contains(r#""reason":"compiler-artifact""#))
        .filter(|line| line.contains(r#""kind":["example"]"#) && line.contains(&name_field))
        .find_map(|line| {
            let start = line.find(r#""executable":""#)? + r#""executable":""#.len();
            let end = start + line[start..].find('"')?;
            Some(PathBuf::from(&line[start..end]))
        })
        .expect("cargo names the executable of the example")
}

/// Reads a pipe to its end on a thread (a full pipe never blocks the child).
pub fn reader(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Waits for `child` at most `limit`; kills it and returns `None` after that.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait for a child process") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
