//! Running real PostgreSQL clients.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};

use crate::{Error, find_client_binary};

/// A real client program (`psql`, `pgbench`) to run against a DSN.
///
/// The DSN is passed as the connection argument (`psql DSN …`,
/// `pgbench … DSN`); `psql` runs with `-X` (no `~/.psqlrc`) so that a
/// developer's own settings never change a test's output.
///
/// # Example
///
/// ```no_run
/// use portcullis_testkit::Client;
/// let out = Client::psql("postgres://u:p@127.0.0.1:5432/postgres")?
///     .args(["-v", "ON_ERROR_STOP=1", "-f", "-"])
///     .stdin("select 1;")
///     .run()?;
/// println!("{} {}", out.status, out.stdout);
/// # Ok::<(), portcullis_testkit::Error>(())
/// ```
#[derive(Debug)]
pub struct Client {
    program: PathBuf,
    dsn: String,
    dsn_last: bool,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    stdin: Option<Vec<u8>>,
}

/// What a client printed, and how it exited.
#[derive(Debug, Clone)]
pub struct ClientOutput {
    /// The exit status.
    pub status: ExitStatus,
    /// Standard output, decoded lossily.
    pub stdout: String,
    /// Standard error, decoded lossily.
    pub stderr: String,
}

impl ClientOutput {
    /// Whether the client exited with status 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

impl Client {
    /// `psql` against `dsn`.
    pub fn psql(dsn: &str) -> Result<Client, Error> {
        let mut c = Client::new(find_client_binary("psql")?, dsn, false);
        c.args.push("-X".into());
        Ok(c)
    }

    /// `pgbench` against `dsn` (the DSN goes last, as pgbench wants).
    pub fn pgbench(dsn: &str) -> Result<Client, Error> {
        Ok(Client::new(find_client_binary("pgbench")?, dsn, true))
    }

    fn new(program: PathBuf, dsn: &str, dsn_last: bool) -> Client {
        Client {
            program,
            dsn: dsn.to_owned(),
            dsn_last,
            args: Vec::new(),
            env: Vec::new(),
            stdin: None,
        }
    }

    /// Adds one argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Client {
        self.args.push(arg.into());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Client
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable for the client (e.g. `PGAPPNAME`).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Client {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Bytes written to the client's standard input (closed after them).
    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Client {
        self.stdin = Some(input.into());
        self
    }

    /// Runs the client to completion.
    pub fn run(self) -> Result<ClientOutput, Error> {
        let mut cmd = Command::new(&self.program);
        if self.dsn_last {
            cmd.args(&self.args).arg(&self.dsn);
        } else {
            cmd.arg(&self.dsn).args(&self.args);
        }
        for var in ["PGPASSWORD", "PGSERVICE", "PGSSLMODE", "PGOPTIONS"] {
            cmd.env_remove(var);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::io("running", &self.program, e))?;
        // Write stdin from a thread so a client that prints a lot before
        // reading all of its input cannot deadlock us.
        let writer = match (self.stdin, child.stdin.take()) {
            (Some(input), Some(mut pipe)) => Some(std::thread::spawn(move || {
                // A client that exits early closes the pipe; that is its answer.
                let _ = pipe.write_all(&input);
            })),
            _ => None,
        };
        let out = child
            .wait_with_output()
            .map_err(|e| Error::io("waiting for", &self.program, e))?;
        if let Some(w) = writer {
            let _ = w.join();
        }
        Ok(ClientOutput {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}
