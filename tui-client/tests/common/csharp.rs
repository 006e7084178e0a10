//! The C# client of `clients/csharp/`, compiled with Mono's `mcs`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use chat_server::Config;

use super::TestServer;

const INSTALL: &str = "apt-get install -y --no-install-recommends mono-mcs mono-runtime \
                       libmono-system-net-http4.0-cil libmono-system-runtime-serialization4.0-cil \
                       ca-certificates-mono";

/// Whether `program` runs at all (`--version` is enough for mcs, mono and cert-sync).
pub fn installed(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Whether Mono is missing: a skip with a note, or a failure in CI.
pub fn mono_missing() -> bool {
    let missing = !(installed("mcs") && installed("mono"));
    if missing {
        chat_test_engines::missing("Mono (`mcs` and `mono`), for the C# client", INSTALL);
    }
    missing
}

/// What a C# test starts from: the program built, and a server (configured
/// by `configure`) where alice and bob are registered. `None` where Mono is
/// missing (outside CI).
pub async fn setup(
    configure: impl FnOnce(&mut Config),
) -> Option<(tempfile::TempDir, PathBuf, TestServer)> {
    if mono_missing() {
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = build(dir.path());
    let server = TestServer::with(configure).await;
    server.register("alice").await;
    server.register("bob").await;
    Some((dir, exe, server))
}

/// Compiles every `.cs` file of clients/csharp into `dir`; returns the program.
pub fn build(dir: &Path) -> PathBuf {
    let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("../clients/csharp");
    let mut files: Vec<String> = std::fs::read_dir(&sources)
        .expect("clients/csharp")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".cs"))
        .collect();
    files.sort();
    let exe = dir.join("chat-client.exe");
    let out = std::process::Command::new("mcs")
        .current_dir(&sources)
        .args([
            "-nologo",
            "-langversion:6",
            "-warnaserror+",
            "-r:System.Net.Http",
            "-r:System.Runtime.Serialization",
        ])
        .arg(format!("-out:{}", exe.display()))
        .args(&files)
        .output()
        .expect("mcs runs");
    assert!(
        out.status.success(),
        "mcs failed (are libmono-system-net-http4.0-cil and \
         libmono-system-runtime-serialization4.0-cil installed?):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}
