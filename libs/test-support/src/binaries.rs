//! Locating the workspace binaries, building them first so tests never run stale code.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The packages whose binaries the black-box tests spawn.
const PACKAGES: [&str; 2] = ["gatehouse", "gatehouse-echo"];

/// Environment variable naming a directory of prebuilt `gatehouse` and
/// `gatehouse-echo` binaries to use instead of building the workspace's.
pub const BIN_DIR_ENV: &str = "GATEHOUSE_TEST_BIN_DIR";

/// The workspace root (where the root `Cargo.toml` lives).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Path of the workspace binary `name` (`gatehouse` or `gatehouse-echo`).
///
/// The first call in a process runs `cargo build --bins` for the gateway and
/// the echo upstream, in the profile the running test was built with, so
/// `cargo test` alone is enough to test the current sources. Panics with
/// cargo's output when the build fails.
///
/// When [`BIN_DIR_ENV`] names a directory, the binaries are taken from there
/// and nothing is built (to test a build made elsewhere, such as a release
/// artefact or a snapshot of the sources).
pub fn binary(name: &str) -> PathBuf {
    static PROFILE_DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = PROFILE_DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os(BIN_DIR_ENV).filter(|d| !d.is_empty()) {
            return PathBuf::from(dir);
        }
        let dir = profile_dir();
        build(&dir);
        dir
    });
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(path.is_file(), "binary {name} not found at {} after building {PACKAGES:?}", path.display());
    path
}

/// `target/<profile>`, derived from the running test executable, which lives
/// in `target/<profile>/deps/`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path is readable");
    let deps = exe.parent().expect("the test executable has a parent directory");
    let dir = if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().expect("deps/ has a parent directory")
    } else {
        deps
    };
    dir.to_path_buf()
}

fn build(profile_dir: &Path) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root()).args(["build", "--bins"]);
    for package in PACKAGES {
        cmd.args(["-p", package]);
    }
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(other) => {
            cmd.args(["--profile", other]);
        }
    }
    // Keep the binaries next to the test executable even when the target
    // directory was chosen by something other than the environment.
    if let Some(target) = profile_dir.parent() {
        cmd.env("CARGO_TARGET_DIR", target);
    }
    let output = cmd.output().unwrap_or_else(|e| panic!("failed to run cargo to build {PACKAGES:?}: {e}"));
    assert!(
        output.status.success(),
        "building {PACKAGES:?} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}
