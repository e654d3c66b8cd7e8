//! Approvals and live sessions shared by several replicas through one
//! PostgreSQL database (`[approvals] postgres_dsn_env`).
//!
//! - `portcullis_approvals` holds every request as JSON with its state and a
//!   version; a decision is a read, a check of the rules, and a write that
//!   succeeds only if no one else wrote in between (retried otherwise).
//!   A ticket-mode request also carries its statement's fingerprint in the
//!   `ticket` column (never in the JSON an approver sees); a retry on any
//!   replica finds it there, and its one use is such a versioned write, so
//!   of replicas racing for one approval exactly one runs the statement.
//!   When a request finishes, `NOTIFY portcullis_approvals '<id>'` wakes the
//!   replica holding the session, which resolves its ticket. Every replica
//!   also sweeps its own held tickets every few seconds, so a notification
//!   lost with a dropped connection only delays a release, never causes one.
//! - `portcullis_sessions` lists each replica's live sessions (refreshed
//!   every second; rows not refreshed for 10 s are ignored). A kill of a
//!   session held by another replica is `NOTIFY portcullis_sessions
//!   '<replica>/<session> <by>'`; that replica ends the session at once.
//!
//! The tables are created if missing. Whoever can write to this database
//! can release statements and end sessions: give it the protection of the
//! audit database.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, Config};

use super::{Backend, Change, DecideError, Decided, Record, State, StoreError, unix_now};
use crate::tickets::Fingerprint;

/// Rows not refreshed for this long belong to a replica that is gone.
pub(crate) const SESSION_STALE_SECS: i64 = 10;

const SCHEMA: &str = "
BEGIN;
SELECT pg_advisory_xact_lock(7274917);
CREATE TABLE IF NOT EXISTS portcullis_approvals (
    id text PRIMARY KEY,
    state text NOT NULL,
    created_at bigint NOT NULL,
    expires_at bigint NOT NULL,
    version bigint NOT NULL DEFAULT 0,
    record jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS portcullis_approvals_state ON portcullis_approvals (state, expires_at);
ALTER TABLE portcullis_approvals ADD COLUMN IF NOT EXISTS ticket text;
CREATE INDEX IF NOT EXISTS portcullis_approvals_ticket ON portcullis_approvals (ticket)
    WHERE ticket IS NOT NULL;
CREATE TABLE IF NOT EXISTS portcullis_sessions (
    replica text NOT NULL,
    id text NOT NULL,
    principal text NOT NULL,
    kind text NOT NULL,
    connection text NOT NULL,
    started_at bigint NOT NULL,
    seen_at bigint NOT NULL,
    PRIMARY KEY (replica, id)
);
COMMIT;
";

/// A message from another replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Notice {
    /// Request `id` finished: resolve its ticket if held here.
    Finished(String),
    /// End session `session` of replica `replica`, by `by`.
    Kill {
        replica: String,
        session: String,
        by: String,
    },
    /// The listening connection was (re)established: notifications may
    /// have been missed, sweep.
    Reconnected,
}

/// Opens a connection (TLS unless the DSN says `sslmode=disable`).
async fn connect(dsn: &str) -> Result<(Client, BoxConnection), String> {
    let config: Config = dsn
        .parse()
        .map_err(|e| format!("approvals: the PostgreSQL DSN is not valid: {e}"))?;
    let fail = |e: tokio_postgres::Error| format!("approvals: connecting to PostgreSQL: {e}");
    if config.get_ssl_mode() == tokio_postgres::config::SslMode::Disable {
        let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(fail)?;
        Ok((client, Box::new(connection)))
    } else {
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => "localhost".to_owned(),
        };
        let tls = crate::catalog_tls::RustlsConnect::new(crate::serve::client_tls()?, &host);
        let (client, connection) = config.connect(tls).await.map_err(fail)?;
        Ok((client, Box::new(connection)))
    }
}

/// A connection's task, whatever its TLS: polled for messages.
type BoxConnection = Box<dyn PollMessages>;

trait PollMessages: Send + Unpin {
    fn poll(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<AsyncMessage, tokio_postgres::Error>>>;
}

impl<S, T> PollMessages for tokio_postgres::Connection<S, T>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    fn poll(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<AsyncMessage, tokio_postgres::Error>>> {
        self.poll_message(cx)
    }
}

/// Drives a connection until it ends, passing on its notifications.
async fn drive(mut connection: BoxConnection, tx: Option<mpsc::UnboundedSender<Notice>>) {
    loop {
        match std::future::poll_fn(|cx| connection.poll(cx)).await {
            Some(Ok(AsyncMessage::Notification(n))) => {
                if let (Some(tx), Some(notice)) = (&tx, parse_notice(n.channel(), n.payload())) {
                    let _ = tx.send(notice);
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                tracing::warn!(error = %e, "approvals: PostgreSQL connection failed");
                return;
            }
            None => return,
        }
    }
}

fn parse_notice(channel: &str, payload: &str) -> Option<Notice> {
    match channel {
        "portcullis_approvals" => Some(Notice::Finished(payload.to_owned())),
        "portcullis_sessions" => {
            let (target, by) = payload.split_once(' ')?;
            let (replica, session) = target.split_once('/')?;
            Some(Notice::Kill {
                replica: replica.to_owned(),
                session: session.to_owned(),
                by: by.to_owned(),
            })
        }
        _ => None,
    }
}

/// The shared store: one connection for queries; a second one listens.
#[derive(Debug)]
pub(crate) struct Postgres {
    client: Arc<Client>,
    replica: String,
}

/// A live session as the registry lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct SessionRow {
    /// `<replica>/<session>`.
    pub(crate) session: String,
    pub(crate) replica: String,
    pub(crate) principal: String,
    pub(crate) kind: String,
    pub(crate) connection: String,
    pub(crate) seconds: i64,
}

impl Postgres {
    /// Connects, creates the tables if missing, and starts listening; the
    /// notices arrive on the returned channel (reconnecting as needed).
    pub(crate) async fn start(
        dsn: &str,
        replica: &str,
    ) -> Result<(Arc<Postgres>, mpsc::UnboundedReceiver<Notice>), String> {
        if replica.is_empty() || replica.contains(['/', ' ']) {
            return Err(format!(
                "approvals: replica name {replica:?} must be non-empty, without '/' or spaces"
            ));
        }
        let (client, connection) = connect(dsn).await?;
        tokio::spawn(drive(connection, None));
        client
            .batch_execute(SCHEMA)
            .await
            .map_err(|e| format!("approvals: creating the tables: {e}"))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let dsn = dsn.to_owned();
        // The listening connection, reconnected after a failure.
        let (first_tx, first_rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
        tokio::spawn(async move {
            let mut first = Some(first_tx);
            loop {
                let listening = async {
                    let (client, connection) = connect(&dsn).await?;
                    let task = tokio::spawn(drive(connection, Some(tx.clone())));
                    client
                        .batch_execute("LISTEN portcullis_approvals; LISTEN portcullis_sessions")
                        .await
                        .map_err(|e| format!("approvals: LISTEN: {e}"))?;
                    Ok::<_, String>((client, task))
                };
                match listening.await {
                    Ok((client, task)) => {
                        if let Some(f) = first.take() {
                            let _ = f.send(Ok(()));
                        } else if tx.send(Notice::Reconnected).is_err() {
                            return;
                        }
                        let _ = task.await;
                        drop(client);
                    }
                    Err(e) => {
                        if let Some(f) = first.take() {
                            let _ = f.send(Err(e));
                            return;
                        }
                        tracing::warn!(error = %e, "approvals: cannot listen; retrying");
                    }
                }
                if tx.is_closed() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        first_rx
            .await
            .map_err(|_| "approvals: the listener stopped".to_owned())??;
        Ok((
            Arc::new(Postgres {
                client: Arc::new(client),
                replica: replica.to_owned(),
            }),
            rx,
        ))
    }

    fn err(e: &tokio_postgres::Error) -> StoreError {
        StoreError(format!("PostgreSQL: {e}"))
    }

    fn parse(text: &str) -> Result<Record, StoreError> {
        serde_json::from_str(text).map_err(|e| StoreError(format!("a stored request: {e}")))
    }

    /// Publishes this replica's live sessions (and forgets its ended ones).
    pub(crate) async fn publish_sessions(
        &self,
        live: &[(String, String, String, String, i64)],
    ) -> Result<(), StoreError> {
        let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
        let ids: Vec<&str> = live.iter().map(|s| s.0.as_str()).collect();
        self.client
            .execute(
                "DELETE FROM portcullis_sessions WHERE replica = $1 AND NOT (id = ANY($2))",
                &[&self.replica, &ids],
            )
            .await
            .map_err(|e| Postgres::err(&e))?;
        for (id, principal, kind, connection, started_at) in live {
            self.client
                .execute(
                    "INSERT INTO portcullis_sessions \
                     (replica, id, principal, kind, connection, started_at, seen_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (replica, id) DO UPDATE SET seen_at = EXCLUDED.seen_at",
                    &[
                        &self.replica,
                        id,
                        principal,
                        kind,
                        connection,
                        started_at,
                        &now,
                    ],
                )
                .await
                .map_err(|e| Postgres::err(&e))?;
        }
        Ok(())
    }

    /// Every replica's live sessions.
    pub(crate) async fn sessions(&self) -> Result<Vec<SessionRow>, StoreError> {
        let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
        let rows = self
            .client
            .query(
                "SELECT replica, id, principal, kind, connection, started_at \
                 FROM portcullis_sessions WHERE seen_at > $1 ORDER BY replica, started_at, id",
                &[&(now - SESSION_STALE_SECS)],
            )
            .await
            .map_err(|e| Postgres::err(&e))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let replica: String = r.try_get(0).map_err(|e| Postgres::err(&e))?;
            let id: String = r.try_get(1).map_err(|e| Postgres::err(&e))?;
            let started: i64 = r.try_get(5).map_err(|e| Postgres::err(&e))?;
            out.push(SessionRow {
                session: format!("{replica}/{id}"),
                replica,
                principal: r.try_get(2).map_err(|e| Postgres::err(&e))?,
                kind: r.try_get(3).map_err(|e| Postgres::err(&e))?,
                connection: r.try_get(4).map_err(|e| Postgres::err(&e))?,
                seconds: now.saturating_sub(started).max(0),
            });
        }
        Ok(out)
    }

    /// Asks the replica holding `replica/session` to end it; false if no
    /// live replica lists it.
    pub(crate) async fn kill(
        &self,
        replica: &str,
        session: &str,
        by: &str,
    ) -> Result<bool, StoreError> {
        let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
        let found = self
            .client
            .query_opt(
                "SELECT 1 FROM portcullis_sessions WHERE replica = $1 AND id = $2 AND seen_at > $3",
                &[&replica, &session, &(now - SESSION_STALE_SECS)],
            )
            .await
            .map_err(|e| Postgres::err(&e))?;
        if found.is_none() {
            return Ok(false);
        }
        self.client
            .execute(
                "SELECT pg_notify('portcullis_sessions', $1)",
                &[&format!("{replica}/{session} {by}")],
            )
            .await
            .map_err(|e| Postgres::err(&e))?;
        Ok(true)
    }
}

#[async_trait]
impl Backend for Postgres {
    fn insert(
        &self,
        record: Record,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), StoreError>> + Send>> {
        let client_result = serde_json::to_string(&record)
            .map_err(|e| StoreError(format!("a request cannot be stored: {e}")));
        let client = self.client.clone();
        Box::pin(async move {
            let json = client_result?;
            let created = i64::try_from(record.created_at).unwrap_or(i64::MAX);
            let expires = i64::try_from(record.expires_at).unwrap_or(i64::MAX);
            let ticket = record.ticket_key.as_ref().map(Fingerprint::hex);
            client
                .execute(
                    "INSERT INTO portcullis_approvals \
                     (id, state, created_at, expires_at, record, ticket) \
                     VALUES ($1, $2, $3, $4, ($5::text)::jsonb, $6)",
                    &[
                        &record.id,
                        &record.state.as_str(),
                        &created,
                        &expires,
                        &json,
                        &ticket,
                    ],
                )
                .await
                .map_err(|e| Postgres::err(&e))?;
            Ok(())
        })
    }

    async fn get(&self, id: &str) -> Result<Option<Record>, StoreError> {
        let row = self
            .client
            .query_opt(
                "SELECT record::text FROM portcullis_approvals WHERE id = $1",
                &[&id],
            )
            .await
            .map_err(|e| Postgres::err(&e))?;
        match row {
            Some(r) => Ok(Some(Postgres::parse(
                &r.try_get::<_, String>(0).map_err(|e| Postgres::err(&e))?,
            )?)),
            None => Ok(None),
        }
    }

    async fn list(&self, pending: bool, limit: usize) -> Result<Vec<Record>, StoreError> {
        let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = if pending {
            self.client
                .query(
                    "SELECT record::text FROM portcullis_approvals \
                     WHERE state = 'pending' AND expires_at > $1 \
                     ORDER BY expires_at, id LIMIT $2",
                    &[&now, &limit],
                )
                .await
        } else {
            self.client
                .query(
                    "SELECT record::text FROM portcullis_approvals \
                     WHERE state <> 'pending' ORDER BY created_at DESC, id DESC LIMIT $1",
                    &[&limit],
                )
                .await
        }
        .map_err(|e| Postgres::err(&e))?;
        rows.iter()
            .map(|r| Postgres::parse(&r.try_get::<_, String>(0).map_err(|e| Postgres::err(&e))?))
            .collect()
    }

    async fn update(
        &self,
        id: &str,
        change: &Change<'_>,
    ) -> Result<(Decided, Record), DecideError> {
        let store = |e: tokio_postgres::Error| DecideError::Store(e.to_string());
        for _ in 0..16 {
            let row = self
                .client
                .query_opt(
                    "SELECT version, record::text FROM portcullis_approvals WHERE id = $1",
                    &[&id],
                )
                .await
                .map_err(store)?
                .ok_or_else(|| DecideError::NotFound(id.to_owned()))?;
            let version: i64 = row.try_get(0).map_err(store)?;
            let mut record = Postgres::parse(&row.try_get::<_, String>(1).map_err(store)?)
                .map_err(|e| DecideError::Store(e.0))?;
            let decided = change(&mut record)?;
            let json = serde_json::to_string(&record)
                .map_err(|e| DecideError::Store(format!("a request cannot be stored: {e}")))?;
            let written = self
                .client
                .execute(
                    "UPDATE portcullis_approvals SET record = ($3::text)::jsonb, state = $4, \
                     version = version + 1 WHERE id = $1 AND version = $2",
                    &[&id, &version, &json, &record.state.as_str()],
                )
                .await
                .map_err(store)?;
            if written == 1 {
                if record.state != State::Pending {
                    self.client
                        .execute("SELECT pg_notify('portcullis_approvals', $1)", &[&id])
                        .await
                        .map_err(store)?;
                }
                return Ok((decided, record));
            }
        }
        Err(DecideError::Store(format!(
            "approval {id} changed too often to be decided; try again"
        )))
    }

    async fn set_preview(&self, id: &str, preview: &str) -> Result<(), StoreError> {
        let preview = preview.to_owned();
        self.update(id, &|r: &mut Record| {
            r.preview = Some(preview.clone());
            Ok(Decided::Recorded { have: 0, need: 0 })
        })
        .await
        .map(|_| ())
        .map_err(|e| StoreError(e.to_string()))
    }

    async fn tickets(&self, key: &Fingerprint) -> Result<Vec<Record>, StoreError> {
        let rows = self
            .client
            .query(
                "SELECT record::text FROM portcullis_approvals \
                 WHERE ticket = $1 AND (state = 'pending' OR (state = 'approved' \
                 AND (record->'ticket'->'used_at') IS NULL)) \
                 ORDER BY created_at DESC, id DESC LIMIT 16",
                &[&key.hex()],
            )
            .await
            .map_err(|e| Postgres::err(&e))?;
        rows.iter()
            .map(|r| Postgres::parse(&r.try_get::<_, String>(0).map_err(|e| Postgres::err(&e))?))
            .collect()
    }
}
