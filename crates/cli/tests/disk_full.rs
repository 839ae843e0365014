//! A real full disk under a running `stele serve`, and a real read-only
//! disk at its start: its data directory is a small tmpfs mounted for the test.
//!
//! Mounting needs root. Where it is refused the test says so and passes,
//! unless `STELE_REQUIRE_MOUNT=1` (which `.ci/run` sets after checking it
//! can mount) makes that a failure.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

/// Small enough to fill in a second, large enough for the store to open.
const TMPFS_BYTES: u64 = 2 * 1024 * 1024;
/// Taken up front, and freed to give the store room again.
const FILLER_BYTES: usize = 512 * 1024;

/// A tmpfs mounted at a directory, unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, size_bytes: u64) -> Option<Mount> {
        std::fs::create_dir_all(at).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_bytes}"), "tmpfs"])
            .arg(at)
            .status()
            .ok()?;
        status.success().then(|| Mount(at.to_path_buf()))
    }

    fn remount(&self, option: &str) {
        let status = Command::new("mount").args(["-o", &format!("remount,{option}")]).arg(&self.0).status().unwrap();
        assert!(status.success(), "mount -o remount,{option} failed");
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mounted_or_skip(at: &Path) -> Option<Mount> {
    let mount = Mount::tmpfs(at, TMPFS_BYTES);
    if mount.is_none() {
        assert!(
            std::env::var("STELE_REQUIRE_MOUNT").is_err(),
            "STELE_REQUIRE_MOUNT is set but a tmpfs cannot be mounted"
        );
        eprintln!("SKIPPED: cannot mount a tmpfs here (not root?); set STELE_REQUIRE_MOUNT=1 to make this fail");
    }
    mount
}

fn event(n: u64) -> Value {
    json!({ "type": "Filled", "data": { "n": n, "pad": "x".repeat(2000) } })
}

fn revisions(server: &support::Server, stream: &str) -> Vec<u64> {
    let reply = server.get(&format!("/streams/{stream}?limit=100000"));
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["events"].as_array().unwrap().iter().map(|e| e["revision"].as_u64().unwrap()).collect()
}

#[test]
fn a_full_disk_refuses_appends_keeps_reads_and_recovers_without_a_restart() {
    let root = tempfile::tempdir().unwrap();
    let Some(mount) = mounted_or_skip(&root.path().join("data")) else { return };
    let filler = mount.0.join("filler");
    std::fs::write(&filler, vec![1u8; FILLER_BYTES]).unwrap();
    let server = support::start_in(root);

    // Append until the disk is full.
    let mut acknowledged = 0u64;
    let refusal = loop {
        let reply = server.post_json("/streams/big", &event(acknowledged));
        match reply.status {
            201 => acknowledged += 1,
            _ => break reply,
        }
        assert!(acknowledged < 10_000, "the disk never filled");
    };
    assert!(acknowledged > 10, "only {acknowledged} appends fit");
    assert_eq!((refusal.status, refusal.error_code()), (503, "no_space".to_owned()), "{}", refusal.text());
    // Every acknowledged event is still there, reads work, the server lives.
    assert_eq!(revisions(&server, "big"), (0..acknowledged).collect::<Vec<_>>());
    assert_eq!(server.get("/health").status, 200);

    // Room again: appends work at once, with no restart.
    std::fs::remove_file(&filler).unwrap();
    let reply = server.post_json("/streams/big", &event(acknowledged));
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_eq!(reply.json()["first_revision"], acknowledged);

    // And a restart finds exactly what was acknowledged.
    let server = support::restart(server);
    assert_eq!(revisions(&server, "big"), (0..=acknowledged).collect::<Vec<_>>());
    drop(server);
    drop(mount);
}

#[test]
fn a_read_only_disk_is_refused_at_start_with_a_clear_error_and_loses_nothing() {
    let root = tempfile::tempdir().unwrap();
    let Some(mount) = mounted_or_skip(&root.path().join("data")) else { return };
    let mut server = support::start_in(root);
    for n in 0..5 {
        assert_eq!(server.post_json("/streams/ro", &event(n)).status, 201);
    }
    // Linux will not make a filesystem read-only under files open for
    // writing, so the store is closed first.
    assert!(server.stop_with_sigterm().success());
    mount.remount("ro");
    let output = Command::new(env!("CARGO_BIN_EXE_stele"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&mount.0)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "served from a read-only disk: {stderr}");
    assert!(stderr.contains("Read-only file system"), "the error does not say why: {stderr}");

    mount.remount("rw");
    let server = support::restart(server);
    assert_eq!(revisions(&server, "ro"), vec![0, 1, 2, 3, 4]);
    assert_eq!(server.post_json("/streams/ro", &event(5)).status, 201);
    drop(server);
    drop(mount);
}
