//! The C# client of `clients/csharp/`, compiled with Mono's `mcs`.

use std::path::{Path, PathBuf};

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
