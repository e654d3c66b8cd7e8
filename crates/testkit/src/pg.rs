//! A throwaway PostgreSQL cluster.

use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::system::{pg_bindir, run_checked, server_command, server_user};
use crate::{Client, Error};

/// Bumped whenever the template's contents change, so an old cached template
/// is never reused.
const TEMPLATE_VERSION: u32 = 1;

/// How many times a start is retried on a port another process took first.
const PORT_ATTEMPTS: usize = 8;

const PG_HBA: &str = "\
# Written by portcullis-testkit.
# The socket directory is private to the cluster (mode 0700), so local trust
# reaches only the cluster's owner and root; TCP always requires SCRAM.
local all all                trust
host  all all 127.0.0.1/32   scram-sha-256
host  all all ::1/128        scram-sha-256
";

/// Settings for a cluster before it starts. See [`PgCluster::builder`].
#[derive(Debug, Clone)]
pub struct PgClusterBuilder {
    superuser: String,
    password: String,
    settings: Vec<(String, String)>,
}

/// A throwaway PostgreSQL server in a temporary directory.
///
/// It listens on `127.0.0.1` on a free port, where every connection must
/// authenticate with SCRAM-SHA-256, and on a socket directory inside its
/// temporary directory. Dropping it stops the server (immediate shutdown)
/// and removes the directory, also during a panic's unwinding.
///
/// Starting a cluster copies a template made by one `initdb --no-sync`,
/// cached per machine, user and PostgreSQL version, so a start takes a
/// fraction of a second and clusters start in parallel.
#[derive(Debug)]
pub struct PgCluster {
    // Declared first so that it is dropped (and the server stopped) before
    // the directory is removed.
    running: bool,
    port: u16,
    superuser: String,
    password: String,
    bindir: PathBuf,
    user: Option<(u32, u32)>,
    dir: tempfile::TempDir,
}

impl Default for PgClusterBuilder {
    fn default() -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        PgClusterBuilder {
            superuser: "postgres".to_owned(),
            password: format!(
                "testkit-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ),
            settings: Vec::new(),
        }
    }
}

impl PgClusterBuilder {
    /// The superuser's name (default `postgres`).
    pub fn superuser(mut self, name: impl Into<String>) -> Self {
        self.superuser = name.into();
        self
    }

    /// The superuser's password (default: a generated one; see
    /// [`PgCluster::password`]).
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = password.into();
        self
    }

    /// An extra server setting written to `postgresql.conf`, e.g.
    /// `("max_connections", "300")`. The value is quoted for you. Later
    /// settings override earlier ones and the testkit's defaults.
    pub fn setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((name.into(), value.into()));
        self
    }

    /// Starts the cluster and waits until it accepts connections.
    pub fn start(self) -> Result<PgCluster, Error> {
        PgCluster::create(self)
    }
}

impl PgCluster {
    /// Starts a cluster with the defaults: superuser `postgres` with a
    /// generated password.
    ///
    /// # Example
    ///
    /// ```no_run
    /// let pg = portcullis_testkit::PgCluster::start()?;
    /// println!("{}", pg.dsn());
    /// # Ok::<(), portcullis_testkit::Error>(())
    /// ```
    pub fn start() -> Result<PgCluster, Error> {
        PgClusterBuilder::default().start()
    }

    /// A builder, to choose the superuser, its password, and server settings.
    pub fn builder() -> PgClusterBuilder {
        PgClusterBuilder::default()
    }

    /// The TCP host: always `127.0.0.1`.
    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the server's unix socket.
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The superuser's name.
    pub fn superuser(&self) -> &str {
        &self.superuser
    }

    /// The superuser's password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// A `postgres://` URL for the superuser over TCP, database `postgres`.
    pub fn dsn(&self) -> String {
        self.dsn_for(&self.superuser, &self.password, "postgres")
    }

    /// A `postgres://` URL over TCP for any user, password and database.
    pub fn dsn_for(&self, user: &str, password: &str, database: &str) -> String {
        format!(
            "postgres://{}:{}@{}:{}/{}",
            percent_encode(user),
            percent_encode(password),
            self.host(),
            self.port,
            percent_encode(database)
        )
    }

    /// Runs SQL as the superuser over the unix socket (`psql -v
    /// ON_ERROR_STOP=1 -tA`) and returns what it printed; for seeding data.
    ///
    /// # Example
    ///
    /// ```no_run
    /// let pg = portcullis_testkit::PgCluster::start()?;
    /// let n = pg.execute("create table t(x int); insert into t values (1); select count(*) from t")?;
    /// assert_eq!(n.trim(), "1");
    /// # Ok::<(), portcullis_testkit::Error>(())
    /// ```
    pub fn execute(&self, sql: &str) -> Result<String, Error> {
        let out = Client::psql(&self.socket_conninfo())?
            .args(["-v", "ON_ERROR_STOP=1", "-tA", "-f", "-"])
            .stdin(sql)
            .run()?;
        if out.success() {
            Ok(out.stdout)
        } else {
            Err(Error::CommandFailed {
                command: "psql (as superuser, over the socket)".to_owned(),
                status: out.status.to_string(),
                detail: out.stderr,
            })
        }
    }

    /// Stops the server (fast shutdown) and starts it again on the same port.
    pub fn restart(&mut self) -> Result<(), Error> {
        self.stop()?;
        self.start_again()
    }

    /// Stops the server (fast shutdown), keeping its data; see
    /// [`PgCluster::start_again`].
    pub fn stop(&mut self) -> Result<(), Error> {
        if self.running {
            self.pg_ctl(&["-m", "fast", "-w", "stop"])?;
            self.running = false;
        }
        Ok(())
    }

    /// Starts a stopped server again on the same port.
    pub fn start_again(&mut self) -> Result<(), Error> {
        if !self.running {
            self.pg_ctl_start()?;
            self.running = true;
        }
        Ok(())
    }

    /// Makes every TCP connection authenticate with `method` (as written in
    /// `pg_hba.conf`: `scram-sha-256`, `md5`, `password`, `trust`) instead
    /// of SCRAM-SHA-256, and reloads the server. The unix socket keeps
    /// `trust`, so [`PgCluster::execute`] still works. For `md5` to really
    /// ask for an MD5 hash the role's password must be stored as MD5
    /// (`SET password_encryption = 'md5'; ALTER ROLE ... PASSWORD ...`):
    /// PostgreSQL answers `md5` with SCRAM for a SCRAM-stored password.
    ///
    /// # Example
    ///
    /// ```no_run
    /// let pg = portcullis_testkit::PgCluster::start()?;
    /// pg.set_host_auth("password")?; // the server now asks for cleartext
    /// # Ok::<(), portcullis_testkit::Error>(())
    /// ```
    pub fn set_host_auth(&self, method: &str) -> Result<(), Error> {
        let hba = PG_HBA.replace("scram-sha-256", method);
        let path = self.data_dir().join("pg_hba.conf");
        std::fs::write(&path, hba).map_err(|e| Error::io("writing", &path, e))?;
        self.execute("SELECT pg_reload_conf()")?;
        // The postmaster reloads on SIGHUP, a moment after the call returns.
        std::thread::sleep(std::time::Duration::from_millis(300));
        Ok(())
    }

    /// The server log so far, for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    fn socket_conninfo(&self) -> String {
        format!(
            "host={} port={} user={} dbname=postgres",
            quote_conninfo(&self.socket_dir().to_string_lossy()),
            self.port,
            quote_conninfo(&self.superuser)
        )
    }

    fn create(b: PgClusterBuilder) -> Result<PgCluster, Error> {
        let bindir = pg_bindir()?;
        let user = server_user()?;
        let template = template(&bindir, user)?;
        let dir = tempfile::Builder::new()
            .prefix("portcullis-pg-")
            .tempdir()
            .map_err(|e| Error::io("creating a temporary directory in", std::env::temp_dir(), e))?;
        let data = dir.path().join("data");
        run_checked(Command::new("cp").arg("-a").arg(&template).arg(&data))?;
        let sock = dir.path().join("sock");
        std::fs::create_dir(&sock).map_err(|e| Error::io("creating", &sock, e))?;
        if let Some((uid, gid)) = user {
            for p in [dir.path(), sock.as_path()] {
                std::os::unix::fs::chown(p, Some(uid), Some(gid))
                    .map_err(|e| Error::io("changing the owner of", p, e))?;
            }
        }

        let mut conf = String::from("\n# Written by portcullis-testkit.\n");
        let defaults = [
            ("listen_addresses", "127.0.0.1".to_owned()),
            (
                "unix_socket_directories",
                sock.to_string_lossy().into_owned(),
            ),
            ("password_encryption", "scram-sha-256".to_owned()),
            // Throwaway data: durability only slows tests down.
            ("fsync", "off".to_owned()),
            ("synchronous_commit", "off".to_owned()),
            ("full_page_writes", "off".to_owned()),
            // The SQLSTATE in every log line, so a test can see what was sent.
            ("log_line_prefix", "%m [%p] %e ".to_owned()),
        ];
        for (k, v) in defaults
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .chain(b.settings.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        {
            let _ = writeln!(conf, "{k} = '{}'", v.replace('\'', "''"));
        }
        append(&data.join("postgresql.conf"), &conf)?;

        let mut cluster = PgCluster {
            running: false,
            port: 0,
            superuser: b.superuser,
            password: b.password,
            bindir,
            user,
            dir,
        };
        let mut last_err = None;
        for _ in 0..PORT_ATTEMPTS {
            cluster.port = free_port()?;
            append(
                &data.join("postgresql.conf"),
                &format!("port = {}\n", cluster.port),
            )?;
            match cluster.pg_ctl_start() {
                Ok(()) => {
                    cluster.running = true;
                    last_err = None;
                    break;
                }
                Err(e) if cluster.log().contains("could not bind") => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        if let Some(e) = last_err {
            return Err(e);
        }
        cluster.set_superuser_password()?;
        Ok(cluster)
    }

    fn set_superuser_password(&self) -> Result<(), Error> {
        let role = quote_ident(&self.superuser);
        let password = quote_literal(&self.password);
        let sql = if self.superuser == "postgres" {
            format!("ALTER ROLE {role} PASSWORD {password};")
        } else {
            format!("CREATE ROLE {role} SUPERUSER LOGIN PASSWORD {password};")
        };
        // Connect as the bootstrap superuser `postgres` over the socket.
        let conninfo = format!(
            "host={} port={} user=postgres dbname=postgres",
            quote_conninfo(&self.socket_dir().to_string_lossy()),
            self.port
        );
        let out = Client::psql(&conninfo)?
            .args(["-v", "ON_ERROR_STOP=1", "-qc", &sql])
            .run()?;
        if out.success() {
            Ok(())
        } else {
            Err(Error::CommandFailed {
                command: "psql (setting the superuser's password)".to_owned(),
                status: out.status.to_string(),
                detail: out.stderr,
            })
        }
    }

    fn pg_ctl_start(&self) -> Result<(), Error> {
        let log = self.dir.path().join("log");
        let log = log.to_string_lossy();
        self.pg_ctl(&["-l", &log, "-w", "-t", "60", "start"])
            .map_err(|e| Error::StartFailed {
                dir: self.dir.path().to_owned(),
                detail: format!("{e}\n{}", tail(&self.log(), 20)),
            })
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<(), Error> {
        let data = self.data_dir();
        let mut cmd = server_command(&self.bindir.join("pg_ctl"), self.user, self.dir.path());
        cmd.arg("-D").arg(&data).arg("-s").args(args);
        run_checked(&mut cmd).map(|_| ())
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.running {
            // Immediate: the data is thrown away next.
            let _ = self.pg_ctl(&["-m", "immediate", "-w", "stop"]);
        }
    }
}

/// The template data directory for this PostgreSQL and this user, made once
/// per machine by `initdb --no-sync` and shared by every cluster.
fn template(bindir: &Path, user: Option<(u32, u32)>) -> Result<PathBuf, Error> {
    static TEMPLATE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    TEMPLATE
        .get_or_init(|| make_template(bindir, user).map_err(|e| e.to_string()))
        .clone()
        .map_err(|detail| Error::CommandFailed {
            command: "initdb (making the template cluster)".to_owned(),
            status: "failed".to_owned(),
            detail,
        })
}

fn make_template(bindir: &Path, user: Option<(u32, u32)>) -> Result<PathBuf, Error> {
    let uid = rustix::process::geteuid().as_raw();
    let cache = std::env::temp_dir().join(format!("portcullis-testkit-{uid}"));
    std::fs::create_dir_all(&cache).map_err(|e| Error::io("creating", &cache, e))?;
    let key: String = bindir
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let template = cache.join(format!("template-v{TEMPLATE_VERSION}-{key}"));
    if template.join("PG_VERSION").is_file() {
        return Ok(template);
    }

    // Build it in a private directory, then rename it into place: a rename is
    // atomic, so a process racing us either sees no template or a whole one.
    let work = tempfile::Builder::new()
        .prefix("initdb-")
        .tempdir_in(&cache)
        .map_err(|e| Error::io("creating a temporary directory in", &cache, e))?;
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(work.path(), Some(uid), Some(gid))
            .map_err(|e| Error::io("changing the owner of", work.path(), e))?;
    }
    let data = work.path().join("data");
    let mut cmd = server_command(&bindir.join("initdb"), user, work.path());
    cmd.arg("-D").arg(&data).args([
        "--no-sync",
        "--no-instructions",
        "-U",
        "postgres",
        "-E",
        "UTF8",
        "--locale=C",
        "--auth-local=trust",
        "--auth-host=scram-sha-256",
    ]);
    run_checked(&mut cmd)?;
    let hba = data.join("pg_hba.conf");
    std::fs::write(&hba, PG_HBA).map_err(|e| Error::io("writing", &hba, e))?;
    match std::fs::rename(&data, &template) {
        Ok(()) => Ok(template),
        // Another process won the race; theirs is as good as ours.
        Err(_) if template.join("PG_VERSION").is_file() => Ok(template),
        Err(e) => Err(Error::io("renaming the template to", &template, e)),
    }
}

fn append(path: &Path, text: &str) -> Result<(), Error> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| Error::io("opening", path, e))?;
    f.write_all(text.as_bytes())
        .map_err(|e| Error::io("writing", path, e))
}

fn free_port() -> Result<u16, Error> {
    let l = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::io("binding a free port on", "127.0.0.1", e))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::io("reading the address of", "127.0.0.1", e))
}

fn tail(s: &str, lines: usize) -> String {
    let all: Vec<&str> = s.lines().collect();
    let skip = all.len().saturating_sub(lines);
    all.into_iter().skip(skip).collect::<Vec<_>>().join("\n")
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn quote_conninfo(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_keeps_unreserved_and_escapes_the_rest() {
        assert_eq!(percent_encode("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(percent_encode("p@ss:w/rd %"), "p%40ss%3Aw%2Frd%20%25");
    }

    #[test]
    fn quoting_doubles_the_quote_character() {
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_conninfo("a'b\\c"), "'a\\'b\\\\c'");
    }
}
