//! `/readyz` of the real binary while its message store cannot be used, and
//! once it can again: a full disk, emulated by a small tmpfs mounted for the
//! test (which needs root, or CAP_SYS_ADMIN, as CI has).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use chat_protocol::{ClientEvent, ErrorCode, ServerEvent};
use common::binary::{start, user_add};
use common::{Client, Remote, PASSWORD, WAIT};

/// A tmpfs mounted on a directory, unmounted when dropped.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it) on `dir`, or
    /// returns `None` after [`chat_test_engines::missing`] where this
    /// process may not mount.
    fn mount(dir: &Path, size: &str) -> Option<Self> {
        let what = "mounting a tmpfs for the full-disk test";
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output();
        match mounted {
            Ok(out) if out.status.success() => Some(Self {
                dir: dir.to_owned(),
            }),
            Ok(out) => {
                let why = String::from_utf8_lossy(&out.stderr);
                let why = why.trim();
                chat_test_engines::missing(
                    what,
                    &format!("run the tests as root or with CAP_SYS_ADMIN; mount said: {why}"),
                );
                None
            }
            Err(e) => {
                chat_test_engines::missing(what, &format!("install mount (util-linux): {e}"));
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    /// Unmounts; lazily (`umount -l`) if the file system is still busy, as it
    /// is when a failed test left the server process just killed, not reaped.
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// Writes to `path` until the file system says it is full; returns the
/// bytes written.
fn fill(path: &Path) -> u64 {
    let mut file = std::fs::File::create(path).expect("filler file");
    let chunk = vec![0xA5u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match file.write(&chunk) {
            Ok(n) => written += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => return written,
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
}

/// Sends `text` with `client_id` and returns what answers it: the first
/// event other than a relayed message, within `WAIT`.
async fn answer_to(client: &mut Client, text: &str, client_id: &str) -> ServerEvent {
    client
        .send(ClientEvent::SendMessage {
            room: "r".into(),
            text: text.into(),
            client_id: Some(client_id.into()),
        })
        .await;
    tokio::time::timeout(WAIT, async {
        loop {
            match client.next_with_acks().await {
                ServerEvent::NewMessage(_) => {}
                other => return other,
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no answer to {client_id} within {WAIT:?}"))
}

#[tokio::test]
async fn on_a_full_disk_readyz_says_so_and_sends_fail_then_both_recover_losing_nothing() {
    let root = tempfile::tempdir().expect("tempdir");
    let fs = root.path().join("fs");
    std::fs::create_dir(&fs).expect("mount point");
    let Some(_tmpfs) = Tmpfs::mount(&fs, "8m") else {
        return;
    };
    let data_dir = fs.join("data");
    assert!(user_add(&data_dir, "ann", PASSWORD).await.status.success());
    // The log stays off the small file system, so that it never fills it.
    let (mut server, remote) = start(&data_dir, &root.path().join("server.log"), &[]).await;

    let (status, ready) = remote.readyz().await;
    assert_eq!(status, 200, "{ready}");
    let mut ann = remote.client_for("ann").await;
    ann.join("r").await;
    for i in 1..=5 {
        let seq = ann
            .send_acked("r", &format!("m{i}"), &format!("c{i}"))
            .await;
        assert_eq!(seq, i);
    }

    let filler = fs.join("filler");
    let filling = filler.clone();
    let written = tokio::task::spawn_blocking(move || fill(&filling))
        .await
        .expect("filler");
    assert!(written > 0, "the disk filled up without the filler");

    let not_ready = remote.readyz_becomes(503).await;
    assert_eq!(not_ready["status"], "not_ready", "{not_ready}");
    let reason = Remote::readyz_reason(&not_ready, "message_log")
        .unwrap_or_else(|| panic!("the message log is named as failing: {not_ready}"));
    assert!(reason.contains("disk full"), "{reason}");
    let (status, _, _) = remote.http("GET", "/healthz", &[], "").await;
    assert_eq!(status, 200, "alive all the same");

    match answer_to(&mut ann, "m6", "c6").await {
        ServerEvent::Error { code, message } => {
            assert_eq!(code, ErrorCode::Internal);
            assert!(message.contains("disk full"), "{message}");
        }
        other => panic!("expected an error and no ack on a full disk, got {other:?}"),
    }

    std::fs::remove_file(&filler).expect("remove the filler");
    let ready = remote.readyz_becomes(200).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    assert!(ready.get("failing").is_none(), "nothing fails: {ready}");
    // The refused message was not stored: its resend takes the next seq.
    assert_eq!(ann.send_acked("r", "m6", "c6").await, 6);
    assert_eq!(ann.send_acked("r", "m7", "c7").await, 7);

    // Everything acked is stored, once, without a gap.
    let mut later = remote.client_for("ann").await;
    let ServerEvent::Joined { history, .. } = later.send_wait_joined("r").await else {
        panic!("expected joined");
    };
    let stored: Vec<(u64, String)> = history.into_iter().map(|m| (m.seq, m.text)).collect();
    let expected: Vec<(u64, String)> = (1..=7).map(|i| (i, format!("m{i}"))).collect();
    assert_eq!(stored, expected);

    later.close().await;
    ann.close().await;
    // Stopped and reaped before the tmpfs is unmounted, so that it is not busy.
    server.start_kill().expect("stop the server");
    server.wait().await.expect("server reaped");
}
