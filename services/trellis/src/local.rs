//! What the CLI makes on this machine: files (secrets with mode 0600, never overwriting one),
//! key seeds from the OS, free local ports, and `trellis key new`'s key files.

use anyhow::{Context, Result, bail};
use std::path::Path;
use trellis_node::node::KeyFile;

/// The roles a key file may name (`KeyFile::role`): a validator's consensus key, or an
/// account's role in the genesis and on the beacon.
pub const KEY_ROLES: [&str; 5] = ["member", "operator", "regulator", "bank", "validator"];

/// Writes a new ed25519 key file at `out` (mode 0600; an existing file is never overwritten)
/// and returns it. Its name is the file's stem; `org` is the organisation it belongs to (a
/// unified social credit code, or empty for an applicant's own key).
pub fn new_key_file(out: &Path, role: &str, org: &str) -> Result<KeyFile> {
    if !KEY_ROLES.contains(&role) {
        bail!("--role `{role}` is not one of {}", KEY_ROLES.join(", "));
    }
    if out.exists() {
        bail!("{} exists; a key file is never overwritten", out.display());
    }
    let name = out
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| anyhow::anyhow!("--out {} names no file", out.display()))?;
    let key = KeyFile::new(name, role, org, random_seed()?);
    write_secret(out, &serde_json::to_string_pretty(&key)?)?;
    Ok(key)
}

/// A port that is free now and stays likely free until the node binds it. Ports come from below
/// the kernel's ephemeral range: a port the kernel hands out for `bind(0)` is also one it may
/// give an outgoing connection (a started node dialling its peers) before the node that was
/// assigned it starts, and then that node cannot bind it.
pub fn free_port() -> Result<u16> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    let low = ephemeral_low.saturating_sub(12_000).max(1_024);
    let span = ephemeral_low.saturating_sub(low).max(1);
    // Start where another process (another test binary, another devnet) is unlikely to.
    let seed = std::process::id().wrapping_mul(2_654_435_761) % span;
    for _ in 0..span {
        let offset = (seed + NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) % span;
        let Ok(port) = u16::try_from(low + offset) else {
            continue;
        };
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("no free port")?;
    Ok(l.local_addr()?.port())
}

pub fn write_secret(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}

pub fn write(path: &Path, contents: &str) -> Result<()> {
    std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))
}

pub fn random_seed() -> Result<[u8; 32]> {
    let mut seed = [0u8; 32];
    getrandom(&mut seed)?;
    Ok(seed)
}

/// Key material comes from the OS; reading /dev/urandom keeps the dependency list short.
fn getrandom(buf: &mut [u8]) -> Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .context("cannot read /dev/urandom")
}
