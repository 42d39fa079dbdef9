//! `trellis key new` as a user runs it: a key file with mode 0600 whose public key is printed,
//! never an overwritten file, and a one-line error for a bad role.

use std::process::Command;
use trellis_node::node::KeyFile;

fn trellis(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(args)
        .output()
        .expect("trellis runs")
}

#[test]
fn key_new_writes_a_private_key_file_and_prints_its_public_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("org-key.json");
    let path = out.to_str().expect("utf-8 path");
    let run = trellis(&["key", "new", "--out", path, "--org", "91350100M000100Y43"]);
    assert!(run.status.success(), "{run:?}");
    let printed = String::from_utf8(run.stdout).expect("utf-8");
    let printed = printed.trim_end();
    assert_eq!(printed.len(), 64, "{printed}");
    assert!(printed.bytes().all(|b| b.is_ascii_hexdigit()));

    let key = KeyFile::load(&out).expect("a key file");
    assert_eq!(key.public_key, printed);
    assert_eq!(key.org, "91350100M000100Y43");
    assert_eq!(key.role, "member");
    let signer = key.signer().expect("its secret matches its public key");
    assert_eq!(hex::encode(signer.public_key().0), printed);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // Never overwritten: the second run fails and the first key stays.
    let before = std::fs::read(&out).expect("read");
    let again = trellis(&["key", "new", "--out", path]);
    assert!(!again.status.success());
    let err = String::from_utf8(again.stderr).expect("utf-8");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("never overwritten"), "{err}");
    assert_eq!(std::fs::read(&out).expect("read"), before);
}

#[test]
fn key_new_refuses_an_unknown_role() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("k.json");
    let run = trellis(&[
        "key",
        "new",
        "--out",
        out.to_str().expect("utf-8 path"),
        "--role",
        "admin",
    ]);
    assert!(!run.status.success());
    let err = String::from_utf8(run.stderr).expect("utf-8");
    assert!(err.contains("--role `admin`"), "{err}");
    assert!(!out.exists());
}
