//! The PostgreSQL sink.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{Client, NoTls};

use crate::chain::{ChainHash, ChainHead, ChainKey, parse_line, render_line, validate_chain_id};
use crate::verify::{Location, Verifier, VerifyOptions, VerifyReport};
use crate::{AuditError, AuditEvent, AuditSink, Durability, Health, Receipt, TimelineEntry};

/// Options for [`PostgresSink::connect`].
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    config: tokio_postgres::Config,
    replica: String,
    table: String,
    max_batch: usize,
    max_event_bytes: usize,
    batch_timeout: Duration,
    key: Option<ChainKey>,
}

impl PostgresOptions {
    /// Options for writing the chain of gateway replica `replica` (1 to 64 of
    /// `A-Z a-z 0-9 . _ -`) to the database at `dsn` (a `postgres://` URL or
    /// a `key=value` string). Defaults: table `portcullis_audit`, batches of
    /// up to 1000 events, events up to 1 MiB, a 10 s connect timeout unless
    /// the DSN sets one.
    ///
    /// The connection is made without TLS; reach a remote database through a
    /// local socket or a TLS tunnel until TLS support lands.
    pub fn new(dsn: &str, replica: impl Into<String>) -> Result<PostgresOptions, AuditError> {
        let mut config: tokio_postgres::Config =
            dsn.parse()
                .map_err(|e: tokio_postgres::Error| AuditError::InvalidOption {
                    option: "dsn",
                    reason: e.to_string(),
                })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        let replica = replica.into();
        validate_chain_id(&replica)?;
        Ok(PostgresOptions {
            config,
            replica,
            table: "portcullis_audit".into(),
            max_batch: 1000,
            max_event_bytes: 1 << 20,
            batch_timeout: Duration::from_secs(30),
            key: None,
        })
    }

    /// The table's name: `[a-z_][a-z0-9_]*`, at most 63 bytes.
    pub fn table(mut self, table: impl Into<String>) -> Result<PostgresOptions, AuditError> {
        let table = table.into();
        let ok = !table.is_empty()
            && table.len() <= 63
            && table
                .bytes()
                .enumerate()
                .all(|(i, b)| b == b'_' || b.is_ascii_lowercase() || (i > 0 && b.is_ascii_digit()));
        if !ok {
            return Err(AuditError::InvalidOption {
                option: "table",
                reason: format!("{table:?} must match [a-z_][a-z0-9_]* and be at most 63 bytes"),
            });
        }
        self.table = table;
        Ok(self)
    }

    /// The most events inserted in one transaction.
    pub fn max_batch(mut self, events: usize) -> PostgresOptions {
        self.max_batch = events.max(1);
        self
    }

    /// The largest encoded event accepted.
    pub fn max_event_bytes(mut self, bytes: usize) -> PostgresOptions {
        self.max_event_bytes = bytes;
        self
    }

    /// Keys the chains written and read with these options: HMAC-SHA-256
    /// with this key (see [`ChainKey`]).
    pub fn key(mut self, key: ChainKey) -> PostgresOptions {
        self.key = Some(key);
        self
    }

    /// How long one batch (reconnecting if needed, inserting, committing)
    /// may take before it fails and the connection is dropped (default
    /// 30 s): a hung server then surfaces as errors, not as stuck calls.
    pub fn batch_timeout(mut self, timeout: Duration) -> PostgresOptions {
        self.batch_timeout = timeout;
        self
    }
}

#[derive(Debug)]
struct Pending {
    event: Vec<u8>,
    time: String,
    session: Option<String>,
    kind: &'static str,
    reply: oneshot::Sender<Result<Receipt, AuditError>>,
}

#[derive(Debug)]
enum Request {
    Record(Pending),
    Flush(oneshot::Sender<Result<(), AuditError>>),
    Probe(oneshot::Sender<Health>),
}

/// The audit chain in an append-only PostgreSQL table.
///
/// The table (created if missing, with triggers refusing `UPDATE`, `DELETE`
/// and `TRUNCATE`) holds one hash chain per gateway replica, keyed by
/// `(replica, seq)`, so several replicas share one database. Events are
/// inserted in batches, one transaction per batch: whatever queued while the
/// previous transaction committed, up to [`PostgresOptions::max_batch`]. A
/// receipt is returned after the commit.
///
/// When the connection breaks (a server restart), the batch in flight and
/// every batch until the server is back fail with errors — never a silent
/// loss — and the sink reconnects on the next batch, rereading the chain's
/// head from the table, so the chain continues where the database says it
/// ends.
#[derive(Debug)]
pub struct PostgresSink {
    name: String,
    options: PostgresOptions,
    tx: mpsc::UnboundedSender<Request>,
}

fn lock_set(m: &Mutex<Option<String>>, v: Option<String>) {
    if let Ok(mut g) = m.lock() {
        *g = v;
    }
}

impl PostgresSink {
    /// Connects, creates the table if missing, reads the replica's chain head,
    /// and starts the writer task on the current tokio runtime.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use portcullis_audit::{AuditEvent, AuditSink, EventKind, PostgresOptions, PostgresSink};
    /// # async fn run() -> Result<(), portcullis_audit::AuditError> {
    /// let options = PostgresOptions::new("postgres://audit:pw@127.0.0.1/audit", "gw-1")?;
    /// let sink = PostgresSink::connect(options).await?;
    /// let receipt = sink
    ///     .record(&AuditEvent::new(EventKind::GatewayError { message: "example".into() }))
    ///     .await?; // committed once this returns
    /// let report = sink.verify().await?;
    /// assert!(report.is_intact());
    /// # Ok(()) }
    /// ```
    pub async fn connect(options: PostgresOptions) -> Result<PostgresSink, AuditError> {
        let (client, head) = open_connection(&options).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let failure = Arc::new(Mutex::new(None));
        let writer = PgWriter {
            name: format!("postgres:{}/{}", options.table, options.replica),
            options: options.clone(),
            client: Some(client),
            head,
            failure,
        };
        tokio::spawn(writer.run(rx));
        Ok(PostgresSink {
            name: format!("postgres:{}/{}", options.table, options.replica),
            options,
            tx,
        })
    }

    /// Verifies this replica's chain as stored in the table (on a separate
    /// connection). Locations are `table/replica:seq`.
    pub async fn verify(&self) -> Result<VerifyReport, AuditError> {
        let mut verify = VerifyOptions::default();
        if let Some(key) = &self.options.key {
            verify = verify.key(key.clone());
        }
        verify_postgres(&self.options, &verify).await
    }
}

/// Verifies the chain of `options`' replica in `options`' table. Needs only
/// `SELECT` on the table, so an auditor's read-only role can run it.
pub async fn verify_postgres(
    options: &PostgresOptions,
    verify: &VerifyOptions,
) -> Result<VerifyReport, AuditError> {
    let mut client = connect_plain(options).await?;
    let source = format!("{}/{}", options.table, options.replica);
    let mut v = Verifier::new(verify);
    v.begin_source();
    let tx = client.transaction().await.map_err(AuditError::postgres)?;
    let sql = format!(
        "SELECT seq, prev_hash, hash, event FROM {} WHERE replica = $1 ORDER BY seq",
        options.table
    );
    let stmt = tx.prepare(&sql).await.map_err(AuditError::postgres)?;
    let portal = tx
        .bind(&stmt, &[&options.replica])
        .await
        .map_err(AuditError::postgres)?;
    let mut line = String::new();
    loop {
        let rows = tx
            .query_portal(&portal, 5000)
            .await
            .map_err(AuditError::postgres)?;
        if rows.is_empty() {
            break;
        }
        for row in rows {
            let seq: i64 = row.try_get(0).map_err(AuditError::postgres)?;
            let prev: String = row.try_get(1).map_err(AuditError::postgres)?;
            let hash: String = row.try_get(2).map_err(AuditError::postgres)?;
            let event: String = row.try_get(3).map_err(AuditError::postgres)?;
            assemble_line(&mut line, &options.replica, seq, &prev, &event, &hash);
            v.line(
                Location {
                    source: source.clone(),
                    line: u64::try_from(seq).unwrap_or(0),
                },
                line.as_bytes(),
            );
        }
    }
    tx.commit().await.map_err(AuditError::postgres)?;
    Ok(v.finish())
}

/// The stored record as the line the JSON Lines sink would have written
/// (without its newline), so the same checks apply.
fn assemble_line(line: &mut String, replica: &str, seq: i64, prev: &str, event: &str, hash: &str) {
    line.clear();
    line.push_str("{\"chain\":");
    line.push_str(&serde_json::to_string(replica).unwrap_or_default());
    line.push_str(",\"seq\":");
    line.push_str(&seq.to_string());
    line.push_str(",\"prev_hash\":");
    line.push_str(&serde_json::to_string(prev).unwrap_or_default());
    line.push_str(",\"event\":");
    line.push_str(event);
    line.push_str(",\"hash\":");
    line.push_str(&serde_json::to_string(hash).unwrap_or_default());
    line.push('}');
}

/// The events of session `session` in `options`' table, from every replica,
/// in time order; each record's own hash is checked as it is read (see
/// [`crate::session_timeline`] for a JSON Lines trail). Locations are
/// `table/replica:seq`.
pub async fn postgres_session_timeline(
    options: &PostgresOptions,
    session: &str,
) -> Result<Vec<TimelineEntry>, AuditError> {
    let client = connect_plain(options).await?;
    let t = &options.table;
    let rows = client
        .query(
            &format!(
                "SELECT replica, seq, prev_hash, hash, event FROM {t}
                 WHERE session_id = $1 ORDER BY event_time, replica, seq"
            ),
            &[&session],
        )
        .await
        .map_err(AuditError::postgres)?;
    let mut entries = Vec::with_capacity(rows.len());
    let mut line = String::new();
    for row in rows {
        let replica: String = row.try_get(0).map_err(AuditError::postgres)?;
        let seq: i64 = row.try_get(1).map_err(AuditError::postgres)?;
        let prev: String = row.try_get(2).map_err(AuditError::postgres)?;
        let hash: String = row.try_get(3).map_err(AuditError::postgres)?;
        let event: String = row.try_get(4).map_err(AuditError::postgres)?;
        let at = Location {
            source: format!("{t}/{replica}"),
            line: u64::try_from(seq).unwrap_or(0),
        };
        assemble_line(&mut line, &replica, seq, &prev, &event, &hash);
        let parsed = parse_line(line.as_bytes(), options.key.as_ref())
            .map_err(|e| format!("{e:?}"))
            .and_then(|rec| {
                serde_json::from_str::<AuditEvent>(rec.event).map_err(|e| e.to_string())
            });
        match parsed {
            Ok(event) => entries.push(TimelineEntry {
                seq: at.line,
                at,
                event,
            }),
            Err(reason) => {
                return Err(AuditError::Unreadable {
                    location: at.to_string(),
                    reason,
                });
            }
        }
    }
    Ok(entries)
}

/// A connection, with no schema changes (enough to read the table).
async fn connect_plain(options: &PostgresOptions) -> Result<Client, AuditError> {
    let (client, connection) = options
        .config
        .connect(NoTls)
        .await
        .map_err(AuditError::postgres)?;
    tokio::spawn(async move {
        // The error surfaces on the client's next request.
        let _ = connection.await;
    });
    Ok(client)
}

/// A connection for writing: the table created if missing, and the chain's
/// head read from it.
async fn open_connection(options: &PostgresOptions) -> Result<(Client, ChainHead), AuditError> {
    let mut client = connect_plain(options).await?;
    let t = &options.table;
    let tx = client.transaction().await.map_err(AuditError::postgres)?;
    tx.batch_execute(&format!(
        "SELECT pg_advisory_xact_lock(hashtext('portcullis-audit:{t}'));
         CREATE TABLE IF NOT EXISTS {t} (
             replica     text        NOT NULL,
             seq         bigint      NOT NULL,
             recorded_at timestamptz NOT NULL DEFAULT now(),
             event_time  timestamptz NOT NULL,
             session_id  text,
             kind        text        NOT NULL,
             prev_hash   text        NOT NULL,
             hash        text        NOT NULL,
             event       text        NOT NULL,
             PRIMARY KEY (replica, seq)
         );
         CREATE INDEX IF NOT EXISTS {t}_session ON {t} (session_id) WHERE session_id IS NOT NULL;
         CREATE OR REPLACE FUNCTION {t}_append_only() RETURNS trigger LANGUAGE plpgsql AS
             $fn$ BEGIN RAISE EXCEPTION 'the audit table {t} is append-only'; END $fn$;
         CREATE OR REPLACE TRIGGER {t}_no_update BEFORE UPDATE OR DELETE ON {t}
             FOR EACH ROW EXECUTE FUNCTION {t}_append_only();
         CREATE OR REPLACE TRIGGER {t}_no_truncate BEFORE TRUNCATE ON {t}
             FOR EACH STATEMENT EXECUTE FUNCTION {t}_append_only();"
    ))
    .await
    .map_err(AuditError::postgres)?;
    tx.commit().await.map_err(AuditError::postgres)?;
    let row = client
        .query_opt(
            &format!("SELECT seq, hash FROM {t} WHERE replica = $1 ORDER BY seq DESC LIMIT 1"),
            &[&options.replica],
        )
        .await
        .map_err(AuditError::postgres)?;
    let head = match row {
        None => ChainHead::EMPTY,
        Some(row) => {
            let seq: i64 = row.try_get(0).map_err(AuditError::postgres)?;
            let hash: String = row.try_get(1).map_err(AuditError::postgres)?;
            let location = format!("{t}/{}:{seq}", options.replica);
            ChainHead {
                seq: u64::try_from(seq).map_err(|_| AuditError::Unreadable {
                    location: location.clone(),
                    reason: "negative sequence number".into(),
                })?,
                hash: ChainHash::from_hex(&hash).ok_or(AuditError::Unreadable {
                    location,
                    reason: "invalid hash".into(),
                })?,
            }
        }
    };
    Ok((client, head))
}

struct PgWriter {
    name: String,
    options: PostgresOptions,
    client: Option<Client>,
    head: ChainHead,
    failure: Arc<Mutex<Option<String>>>,
}

impl PgWriter {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Request>) {
        let mut batch = Vec::new();
        while let Some(first) = rx.recv().await {
            match first {
                Request::Flush(reply) => {
                    let _ = reply.send(Ok(()));
                    continue;
                }
                Request::Probe(reply) => {
                    let h = self.probe().await;
                    let _ = reply.send(h);
                    continue;
                }
                Request::Record(p) => batch.push(p),
            }
            let mut after = Vec::new();
            while batch.len() < self.options.max_batch {
                match rx.try_recv() {
                    Ok(Request::Record(p)) => batch.push(p),
                    Ok(other) => {
                        after.push(other);
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.write(&mut batch).await;
            for req in after {
                match req {
                    Request::Flush(reply) => {
                        let _ = reply.send(Ok(()));
                    }
                    Request::Probe(reply) => {
                        let h = self.probe().await;
                        let _ = reply.send(h);
                    }
                    Request::Record(p) => {
                        batch.push(p);
                        self.write(&mut batch).await;
                    }
                }
            }
        }
    }

    async fn ensure_client(&mut self) -> Result<(), AuditError> {
        if self.client.as_ref().is_some_and(|c| !c.is_closed()) {
            return Ok(());
        }
        self.client = None;
        let (client, head) = open_connection(&self.options).await?;
        self.client = Some(client);
        self.head = head;
        Ok(())
    }

    async fn probe(&mut self) -> Health {
        let result = match self.ensure_client().await {
            Ok(()) => match &self.client {
                Some(c) => c
                    .simple_query("SELECT 1")
                    .await
                    .map(|_| ())
                    .map_err(AuditError::postgres),
                None => Err(AuditError::Closed),
            },
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                lock_set(&self.failure, None);
                Health::Ready
            }
            Err(e) => {
                self.client = None;
                let reason = e.to_string();
                lock_set(&self.failure, Some(reason.clone()));
                Health::Unavailable(reason)
            }
        }
    }

    async fn write(&mut self, batch: &mut Vec<Pending>) {
        let outcome =
            match tokio::time::timeout(self.options.batch_timeout, self.try_write(batch)).await {
                Ok(r) => r,
                Err(_) => Err(AuditError::Transport {
                    sink: self.name.clone(),
                    message: format!("batch not done within {:?}", self.options.batch_timeout),
                }),
            };
        match outcome {
            Ok(receipts) => {
                lock_set(&self.failure, None);
                for (p, r) in batch.drain(..).zip(receipts) {
                    let _ = p.reply.send(Ok(r));
                }
            }
            Err(e) => {
                // The commit's outcome is unknown: reconnect and reread the
                // head before the next batch.
                self.client = None;
                let reason = e.to_string();
                lock_set(&self.failure, Some(reason.clone()));
                for p in batch.drain(..) {
                    let _ = p.reply.send(Err(AuditError::Transport {
                        sink: self.name.clone(),
                        message: format!("batch not committed: {reason}"),
                    }));
                }
            }
        }
    }

    async fn try_write(&mut self, batch: &[Pending]) -> Result<Vec<Receipt>, AuditError> {
        self.ensure_client().await?;
        let mut head = self.head;
        let n = batch.len();
        let mut seqs = Vec::with_capacity(n);
        let mut times = Vec::with_capacity(n);
        let mut sessions = Vec::with_capacity(n);
        let mut kinds = Vec::with_capacity(n);
        let mut prevs = Vec::with_capacity(n);
        let mut hashes = Vec::with_capacity(n);
        let mut events = Vec::with_capacity(n);
        let mut receipts = Vec::with_capacity(n);
        let mut scratch = Vec::new();
        for p in batch {
            let seq = head.seq + 1;
            scratch.clear();
            let hash = render_line(
                &mut scratch,
                self.options.key.as_ref(),
                &self.options.replica,
                seq,
                &head.hash,
                &p.event,
            );
            seqs.push(
                i64::try_from(seq)
                    .map_err(|_| AuditError::Unavailable("sequence overflow".into()))?,
            );
            times.push(p.time.as_str());
            sessions.push(p.session.as_deref());
            kinds.push(p.kind);
            prevs.push(head.hash.to_hex());
            hashes.push(hash.to_hex());
            events.push(
                std::str::from_utf8(&p.event).map_err(|e| AuditError::Unreadable {
                    location: "event".into(),
                    reason: e.to_string(),
                })?,
            );
            receipts.push(Receipt {
                sink: self.name.clone(),
                seq,
                hash: Some(hash),
                durability: Durability::Committed,
                members: Vec::new(),
            });
            head = ChainHead { seq, hash };
        }
        let client = self.client.as_mut().ok_or(AuditError::Closed)?;
        let tx = client.transaction().await.map_err(AuditError::postgres)?;
        tx.execute(
            &format!(
                "INSERT INTO {} (replica, seq, event_time, session_id, kind, prev_hash, hash, event)
                 SELECT $1, s, et::timestamptz, sid, k, ph, h, ev
                 FROM unnest($2::int8[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
                      AS u(s, et, sid, k, ph, h, ev)",
                self.options.table
            ),
            &[
                &self.options.replica,
                &seqs,
                &times,
                &sessions,
                &kinds,
                &prevs,
                &hashes,
                &events,
            ],
        )
        .await.map_err(AuditError::postgres)?;
        tx.commit().await.map_err(AuditError::postgres)?;
        self.head = head;
        Ok(receipts)
    }
}

#[async_trait::async_trait]
impl AuditSink for PostgresSink {
    async fn record(&self, event: &AuditEvent) -> Result<Receipt, AuditError> {
        let bytes = event.canonical_bytes()?;
        if bytes.len() > self.options.max_event_bytes {
            return Err(AuditError::TooLarge {
                size: bytes.len(),
                limit: self.options.max_event_bytes,
            });
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Record(Pending {
                event: bytes,
                time: event.time.to_string(),
                session: event.session.clone(),
                kind: event.kind.name(),
                reply,
            }))
            .map_err(|_| AuditError::Closed)?;
        rx.await.map_err(|_| AuditError::Closed)?
    }

    async fn flush(&self) -> Result<(), AuditError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Flush(reply))
            .map_err(|_| AuditError::Closed)?;
        rx.await.map_err(|_| AuditError::Closed)?
    }

    async fn health(&self) -> Health {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Request::Probe(reply)).is_err() {
            return Health::Unavailable("writer task stopped".into());
        }
        rx.await
            .unwrap_or_else(|_| Health::Unavailable("writer task stopped".into()))
    }

    fn name(&self) -> &str {
        &self.name
    }
}

impl std::fmt::Debug for PgWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgWriter")
            .field("name", &self.name)
            .field("head", &self.head)
            .finish_non_exhaustive()
    }
}
