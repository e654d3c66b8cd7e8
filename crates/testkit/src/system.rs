//! Where the PostgreSQL binaries are, and which user runs them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::Error;

/// The folder holding the PostgreSQL server binaries (`initdb`, `pg_ctl`,
/// `postgres`): `pg_config --bindir` when it holds them, else the newest of
/// Debian's per-version folders `/usr/lib/postgresql/NN/bin`.
///
/// # Example
///
/// ```no_run
/// let bindir = portcullis_testkit::pg_bindir()?;
/// assert!(bindir.join("initdb").exists());
/// # Ok::<(), portcullis_testkit::Error>(())
/// ```
pub fn pg_bindir() -> Result<PathBuf, Error> {
    static BINDIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    BINDIR
        .get_or_init(find_bindir)
        .clone()
        .ok_or(Error::ServerNotInstalled)
}

fn has_server(dir: &Path) -> bool {
    ["initdb", "pg_ctl", "postgres"]
        .iter()
        .all(|b| dir.join(b).is_file())
}

fn find_bindir() -> Option<PathBuf> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_server(&dir) {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has_server(&bin).then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, p)| p)
}

/// Finds a client program (`psql`, `pgbench`, …): in the server's bindir
/// first, then on `PATH`.
///
/// # Example
///
/// ```no_run
/// let psql = portcullis_testkit::find_client_binary("psql")?;
/// # Ok::<(), portcullis_testkit::Error>(())
/// ```
pub fn find_client_binary(name: &str) -> Result<PathBuf, Error> {
    if let Ok(dir) = pg_bindir() {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    Err(Error::ClientNotInstalled(name.to_owned()))
}

/// The user and group the server binaries run as: `None` to run them as the
/// current user, `Some((uid, gid))` of the `postgres` user when we are root.
pub(crate) fn server_user() -> Result<Option<(u32, u32)>, Error> {
    if !rustix::process::geteuid().is_root() {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd")
        .map_err(|e| Error::io("reading", "/etc/passwd", e))?;
    passwd
        .lines()
        .find_map(|line| {
            let mut f = line.split(':');
            if f.next()? != "postgres" {
                return None;
            }
            let _password = f.next()?;
            let uid = f.next()?.parse().ok()?;
            let gid = f.next()?.parse().ok()?;
            Some(Some((uid, gid)))
        })
        .ok_or(Error::NoUnprivilegedUser)
}

/// A command for a server binary, set to run as `user` when given.
pub(crate) fn server_command(program: &Path, user: Option<(u32, u32)>, cwd: &Path) -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(program);
    cmd.current_dir(cwd);
    // Keep the server away from whatever PG* variables the caller has set.
    for var in [
        "PGDATA",
        "PGPORT",
        "PGHOST",
        "PGUSER",
        "PGPASSWORD",
        "PGDATABASE",
    ] {
        cmd.env_remove(var);
    }
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

/// Runs `cmd`, turning a non-zero exit into [`Error::CommandFailed`].
pub(crate) fn run_checked(cmd: &mut Command) -> Result<std::process::Output, Error> {
    let command = format!("{:?}", cmd.get_program());
    let out = cmd
        .output()
        .map_err(|e| Error::io("running", cmd.get_program(), e))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(Error::CommandFailed {
            command,
            status: out.status.to_string(),
            detail: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        })
    }
}
