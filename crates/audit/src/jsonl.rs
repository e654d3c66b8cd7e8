//! The hash-chained JSON Lines sink.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::{Notify, oneshot};

use crate::chain::{ChainHead, ChainKey, parse_line, render_line, validate_chain_id};
use crate::{Ack, AuditError, AuditEvent, AuditSink, Durability, EventKind, Health, Receipt};

/// When the JSON Lines sink fsyncs: its durability level.
///
/// [`Commit::Flushed`] (the default) and [`Commit::Durable`] use a group
/// commit without a timer: the writer thread writes whatever is queued at
/// once, and a second thread fsyncs whatever has been written at once; what
/// arrives while a write or an fsync is in progress goes into the next one
/// (leader and follower, as PostgreSQL's WAL). Nothing waits for a clock
/// when the sink is idle, and under load one `fdatasync` covers a whole
/// batch. [`Commit::PerRecord`] and [`Commit::Group`] are the earlier modes,
/// kept for comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Commit {
    /// `flushed`: the record is written to the file (in order,
    /// hash-chained) before its receipt ([`Durability::Written`]), and
    /// fsynced by the group commit within the sink's sync window
    /// ([`JsonlOptions::sync_window`], 10 ms by default). A crash of the
    /// process loses nothing acknowledged (the data is in the kernel); a
    /// crash of the machine loses at most the records acknowledged during
    /// one window: when the oldest acknowledged record still unsynced is a
    /// window old, further receipts wait for the fsync.
    #[default]
    Flushed,
    /// `durable`: the record is written and fsynced before its receipt
    /// ([`Durability::Fsynced`]); concurrent records share one `fdatasync`.
    Durable,
    /// One `fdatasync` per record, before its receipt, one record at a time.
    PerRecord,
    /// Group commit: at most one `fdatasync` per window. Records arriving
    /// until the window after the previous commit's start has passed are
    /// written together and covered by one `fdatasync`; each receipt is
    /// returned after that fsync. A record waits at most about the window
    /// plus one fsync; a record arriving after a quiet spell is committed at
    /// once.
    Group(Duration),
}

impl Commit {
    /// The levels with a writer and a syncer thread (no timer).
    fn pipelined(self) -> bool {
        matches!(self, Commit::Flushed | Commit::Durable)
    }
}

/// Options for [`JsonlSink::open`].
#[derive(Debug, Clone)]
pub struct JsonlOptions {
    chain: String,
    commit: Commit,
    max_file_bytes: u64,
    max_event_bytes: usize,
    min_free_bytes: u64,
    max_batch: usize,
    key: Option<ChainKey>,
    sync_window: Duration,
    queue_capacity: usize,
}

impl JsonlOptions {
    /// Options for the chain `chain` (1 to 64 of `A-Z a-z 0-9 . _ -`; use one
    /// chain per gateway replica). Defaults: [`Commit::Flushed`] with a
    /// 10 ms sync window, a queue of 4096 events, rotation at 64 MiB, events
    /// up to 1 MiB, unhealthy below 16 MiB free.
    pub fn new(chain: impl Into<String>) -> JsonlOptions {
        JsonlOptions {
            chain: chain.into(),
            commit: Commit::Flushed,
            max_file_bytes: 64 << 20,
            max_event_bytes: 1 << 20,
            min_free_bytes: 16 << 20,
            max_batch: 8192,
            key: None,
            sync_window: Duration::from_millis(10),
            queue_capacity: 4096,
        }
    }

    /// For [`Commit::Flushed`]: the longest a record may be acknowledged
    /// without being fsynced; between 1 µs and 10 s (default 10 ms).
    pub fn sync_window(mut self, window: Duration) -> JsonlOptions {
        self.sync_window = window;
        self
    }

    /// How many events may wait to be written. [`AuditSink::submit`] (and
    /// so [`AuditSink::record`]) waits while this many are queued;
    /// [`AuditSink::enqueue`], which cannot wait, is refused with
    /// [`AuditError::Overloaded`] at twice this many. At least 1.
    pub fn queue_capacity(mut self, events: usize) -> JsonlOptions {
        self.queue_capacity = events.max(1);
        self
    }

    /// Keys the chain: each record's hash is HMAC-SHA-256 with this key
    /// (see [`ChainKey`]). A trail must keep one mode for its whole life.
    pub fn key(mut self, key: ChainKey) -> JsonlOptions {
        self.key = Some(key);
        self
    }

    /// When to fsync.
    pub fn commit(mut self, commit: Commit) -> JsonlOptions {
        self.commit = commit;
        self
    }

    /// Starts a new file once the current one would exceed this size. The
    /// chain carries across files.
    pub fn max_file_bytes(mut self, bytes: u64) -> JsonlOptions {
        self.max_file_bytes = bytes;
        self
    }

    /// The largest encoded event accepted.
    pub fn max_event_bytes(mut self, bytes: usize) -> JsonlOptions {
        self.max_event_bytes = bytes;
        self
    }

    /// [`AuditSink::health`] reports unavailable when the file system has
    /// less free space than this.
    pub fn min_free_bytes(mut self, bytes: u64) -> JsonlOptions {
        self.min_free_bytes = bytes;
        self
    }

    /// The most records covered by one group commit.
    pub fn max_batch(mut self, records: usize) -> JsonlOptions {
        self.max_batch = records.max(1);
        self
    }
}

/// A torn last line found when a trail was opened: a write that a crash cut
/// short. It was never acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The file.
    pub path: PathBuf,
    /// Its 1-based line number.
    pub line: u64,
    /// Its length in bytes.
    pub bytes: u64,
}

/// What [`JsonlSink::open`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// The chain's head when it was opened, after any recovery record.
    pub head: ChainHead,
    /// The trail files that existed.
    pub files: usize,
    /// A torn last line, if the previous writer crashed mid-write. The sink
    /// left it in place, started a new file, and recorded a
    /// `trail_recovered` event naming it; the chain continues from the last
    /// complete record.
    pub torn_tail: Option<TornTail>,
}

/// The trail files of `chain` in `dir`, in chain order (`<chain>-<file
/// number, 10 digits>.jsonl`).
///
/// # Example
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// assert!(portcullis_audit::trail_files(dir.path(), "gw-1")?.is_empty());
/// # Ok(()) }
/// ```
pub fn trail_files(dir: &Path, chain: &str) -> Result<Vec<PathBuf>, AuditError> {
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| AuditError::io("read directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| AuditError::io("read directory", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name
            .strip_prefix(chain)
            .and_then(|r| r.strip_prefix('-'))
            .and_then(|r| r.strip_suffix(".jsonl"))
        else {
            continue;
        };
        if rest.len() == 10 && rest.bytes().all(|b| b.is_ascii_digit()) {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

fn file_name(chain: &str, index: u64) -> String {
    format!("{chain}-{index:010}.jsonl")
}

/// The number in a trail file's name.
fn file_index(path: &Path) -> u64 {
    path.file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.rsplit('-').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The embedded default sink: one JSON object per line, hash-chained, in
/// files rotated by size.
///
/// Each line is `{"chain":…,"seq":…,"prev_hash":…,"event":{…},"hash":…}`
/// where `hash` is SHA-256 over the line up to `,"hash":` (the canonical
/// event bytes and `prev_hash`, with the chain id and sequence number). A
/// receipt is returned only once the record is as durable as the level
/// says (see [`Commit`]): written for `flushed`, fsynced for the others.
/// After a write or fsync fails, the sink refuses every further record and
/// reports itself unavailable: the file's state is then unknown.
///
/// One writer thread owns the file (and, for the `flushed` and `durable`
/// levels, a second thread fsyncs it), so the sink does not depend on the
/// tokio runtime's flavour; `record` only waits on a channel. Events are
/// written in the order they were handed over ([`AuditSink::submit`],
/// [`AuditSink::enqueue`]), through a bounded queue
/// ([`JsonlOptions::queue_capacity`]). An exclusive
/// `flock` on `.<chain>.lock` in the directory keeps a second writer (another
/// process, or a second `open`) off the same chain.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use portcullis_audit::{AuditEvent, AuditSink, Commit, EventKind, JsonlOptions, JsonlSink};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let options = JsonlOptions::new("gw-1").commit(Commit::Group(Duration::from_millis(5)));
/// let (sink, report) = JsonlSink::open(dir.path(), options)?;
/// assert!(report.torn_tail.is_none());
/// let receipt = sink
///     .record(&AuditEvent::new(EventKind::AuthFailed {
///         method: "api_key".into(),
///         reason: "unknown key".into(),
///     }))
///     .await?;
/// drop(sink);
/// let files = portcullis_audit::trail_files(dir.path(), "gw-1")?;
/// let report = portcullis_audit::verify(&files);
/// assert!(report.is_intact());
/// assert_eq!(report.head().map(|h| h.seq), Some(receipt.seq()));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct JsonlSink {
    name: String,
    dir: PathBuf,
    max_event_bytes: usize,
    min_free_bytes: u64,
    queue_capacity: usize,
    tx: Option<mpsc::Sender<Request>>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    // Held (flock) while the sink is open; released when it is dropped,
    // after the writer thread has finished.
    _lock: File,
}

/// Counters of a [`JsonlSink`], since it was opened: how well the group
/// commit batches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JsonlStats {
    /// Records written.
    pub records: u64,
    /// `write` calls on trail files (one per batch, more when it rotates).
    pub writes: u64,
    /// `fdatasync` calls on trail files.
    pub fsyncs: u64,
}

#[derive(Debug)]
enum Request {
    Record {
        event: Vec<u8>,
        reply: oneshot::Sender<Result<Receipt, AuditError>>,
    },
    Flush {
        reply: oneshot::Sender<Result<(), AuditError>>,
    },
}

/// What the sink, its writer and its syncer share.
#[derive(Debug)]
struct Shared {
    state: Mutex<SyncState>,
    /// Wakes the syncer: something was written, or the sink closes.
    syncer_wake: Condvar,
    /// Wakes a writer waiting for the sync window: an fsync finished.
    writer_wake: Condvar,
    /// Events queued and not yet taken by the writer.
    depth: AtomicUsize,
    /// Told when the writer takes events off the queue.
    room: Notify,
    records: AtomicU64,
    writes: AtomicU64,
    fsyncs: AtomicU64,
    /// `flushed`: how long the syncer lets records gather before an fsync
    /// nobody waits for (half the sync window), so a steady stream of
    /// records costs one fsync per half window, not one per write.
    flush_delay: Option<Duration>,
}

/// One trail file, shared by the writer (appends) and the syncer (fsyncs).
#[derive(Debug)]
struct Segment {
    file: File,
    path: PathBuf,
}

#[derive(Debug, Default)]
struct SyncState {
    /// Why the sink stopped accepting records, once it has.
    failed: Option<String>,
    /// The last sequence number written.
    written: u64,
    /// The last sequence number fsynced.
    synced: u64,
    /// The file being appended to.
    current: Option<Arc<Segment>>,
    /// Files rotated away from whose data is not yet fsynced.
    retired: Vec<Arc<Segment>>,
    /// Replies that wait for an fsync, in sequence order.
    waiters: VecDeque<Waiter>,
    /// When the oldest record written after the last fsync began was
    /// acknowledged.
    unsynced_since: Option<Instant>,
    /// The same for the records the fsync in progress covers.
    syncing_since: Option<Instant>,
    closing: bool,
}

#[derive(Debug)]
enum Waiter {
    Record {
        seq: u64,
        receipt: Receipt,
        reply: oneshot::Sender<Result<Receipt, AuditError>>,
    },
    Flush {
        seq: u64,
        reply: oneshot::Sender<Result<(), AuditError>>,
    },
}

impl Waiter {
    fn seq(&self) -> u64 {
        match self {
            Waiter::Record { seq, .. } | Waiter::Flush { seq, .. } => *seq,
        }
    }

    fn succeed(self) {
        match self {
            Waiter::Record { receipt, reply, .. } => {
                let _ = reply.send(Ok(receipt));
            }
            Waiter::Flush { reply, .. } => {
                let _ = reply.send(Ok(()));
            }
        }
    }

    fn fail(self, err: AuditError) {
        match self {
            Waiter::Record { reply, .. } => {
                let _ = reply.send(Err(err));
            }
            Waiter::Flush { reply, .. } => {
                let _ = reply.send(Err(err));
            }
        }
    }
}

impl Shared {
    fn new(flush_delay: Option<Duration>) -> Shared {
        Shared {
            flush_delay,
            state: Mutex::new(SyncState::default()),
            syncer_wake: Condvar::new(),
            writer_wake: Condvar::new(),
            depth: AtomicUsize::new(0),
            room: Notify::new(),
            records: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SyncState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn failure(&self) -> Option<String> {
        self.lock().failed.clone()
    }

    fn set_failed(&self, reason: String) {
        let mut st = self.lock();
        st.failed.get_or_insert(reason);
        self.writer_wake.notify_all();
        self.syncer_wake.notify_all();
    }
}

impl JsonlSink {
    /// Opens (or creates) the trail of `options`' chain in `dir`, continuing
    /// its chain. A torn last line is reported in the [`OpenReport`] and
    /// recovered from; any other damage near the head is an
    /// [`AuditError::Corrupt`] (run `verify`).
    pub fn open(dir: &Path, options: JsonlOptions) -> Result<(JsonlSink, OpenReport), AuditError> {
        validate_chain_id(&options.chain)?;
        if let Commit::Group(d) = options.commit
            && (d.is_zero() || d > Duration::from_secs(10))
        {
            return Err(AuditError::InvalidOption {
                option: "group commit window",
                reason: "must be between 1 ns and 10 s".into(),
            });
        }
        if options.sync_window < Duration::from_micros(1)
            || options.sync_window > Duration::from_secs(10)
        {
            return Err(AuditError::InvalidOption {
                option: "sync window",
                reason: "must be between 1 µs and 10 s".into(),
            });
        }
        std::fs::create_dir_all(dir).map_err(|e| AuditError::io("create directory", dir, e))?;
        // One writer per chain: a second one would fork the chain.
        let lock_path = dir.join(format!(".{}.lock", options.chain));
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| AuditError::io("open lock", &lock_path, e))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
            |e| {
                AuditError::io(
                    "lock (another writer has this chain open?)",
                    &lock_path,
                    e.into(),
                )
            },
        )?;
        let (writer, report) = Writer::open(dir, &options)?;
        let (tx, rx) = mpsc::channel();
        let flush_delay = (options.commit == Commit::Flushed).then(|| options.sync_window / 2);
        let shared = Arc::new(Shared::new(flush_delay));
        {
            let mut st = shared.lock();
            st.written = writer.head.seq;
            st.synced = writer.head.seq;
            st.current = Some(Arc::clone(&writer.file));
        }
        let syncer = if options.commit.pipelined() {
            let shared = Arc::clone(&shared);
            Some(
                std::thread::Builder::new()
                    .name(format!("audit-sync-{}", options.chain))
                    .spawn(move || sync_loop(&shared))
                    .map_err(|e| AuditError::io("spawn syncer thread for", dir, e))?,
            )
        } else {
            None
        };
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("audit-{}", options.chain))
            .spawn(move || writer.run(rx, &thread_shared, syncer))
            .map_err(|e| AuditError::io("spawn writer thread for", dir, e))?;
        Ok((
            JsonlSink {
                name: format!("jsonl:{}", options.chain),
                dir: dir.to_owned(),
                max_event_bytes: options.max_event_bytes,
                min_free_bytes: options.min_free_bytes,
                queue_capacity: options.queue_capacity,
                tx: Some(tx),
                shared,
                thread: Some(thread),
                _lock: lock,
            },
            report,
        ))
    }

    /// Counters since the sink was opened.
    ///
    /// # Example
    ///
    /// ```
    /// use portcullis_audit::{AuditEvent, AuditSink, Commit, EventKind, JsonlOptions, JsonlSink};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let (sink, _) = JsonlSink::open(dir.path(), JsonlOptions::new("gw-1").commit(Commit::Durable))?;
    /// sink.record(&AuditEvent::new(EventKind::GatewayError { message: "x".into() })).await?;
    /// let stats = sink.stats();
    /// assert_eq!(stats.records, 1);
    /// assert!(stats.fsyncs >= 1);
    /// # Ok(()) }
    /// ```
    pub fn stats(&self) -> JsonlStats {
        JsonlStats {
            records: self.shared.records.load(Ordering::Relaxed),
            writes: self.shared.writes.load(Ordering::Relaxed),
            fsyncs: self.shared.fsyncs.load(Ordering::Relaxed),
        }
    }

    fn encode(&self, event: &AuditEvent) -> Result<Vec<u8>, AuditError> {
        let event = event.canonical_bytes()?;
        if event.len() > self.max_event_bytes {
            return Err(AuditError::TooLarge {
                size: event.len(),
                limit: self.max_event_bytes,
            });
        }
        if let Some(reason) = self.shared.failure() {
            return Err(AuditError::Unavailable(reason));
        }
        Ok(event)
    }

    fn send(&self, req: Request) -> Result<(), AuditError> {
        match &self.tx {
            Some(tx) => {
                self.shared.depth.fetch_add(1, Ordering::AcqRel);
                tx.send(req).map_err(|_| {
                    self.shared.depth.fetch_sub(1, Ordering::AcqRel);
                    self.unavailable()
                })
            }
            None => Err(AuditError::Closed),
        }
    }

    /// Waits while the queue holds `queue_capacity` events or more.
    async fn room(&self) {
        loop {
            let notified = self.shared.room.notified();
            if self.shared.depth.load(Ordering::Acquire) < self.queue_capacity {
                return;
            }
            notified.await;
        }
    }

    fn unavailable(&self) -> AuditError {
        match self.shared.failure() {
            Some(reason) => AuditError::Unavailable(reason),
            None => AuditError::Closed,
        }
    }
}

impl Drop for JsonlSink {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[async_trait::async_trait]
impl AuditSink for JsonlSink {
    async fn record(&self, event: &AuditEvent) -> Result<Receipt, AuditError> {
        self.submit(event).await?.await
    }

    async fn flush(&self) -> Result<(), AuditError> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Flush { reply })?;
        rx.await.map_err(|_| self.unavailable())?
    }

    async fn health(&self) -> Health {
        if let Some(reason) = self.shared.failure() {
            return Health::Unavailable(reason);
        }
        if self.thread.as_ref().is_none_or(|t| t.is_finished()) {
            return Health::Unavailable("writer thread stopped".into());
        }
        match rustix::fs::statvfs(&self.dir) {
            Ok(st) => {
                let free = st.f_bavail.saturating_mul(st.f_frsize);
                if free < self.min_free_bytes {
                    Health::Unavailable(format!("only {free} bytes free in {}", self.dir.display()))
                } else {
                    Health::Ready
                }
            }
            Err(e) => Health::Unavailable(format!("statvfs {}: {e}", self.dir.display())),
        }
    }

    fn name(&self) -> &str {
        &self.name
    }

    async fn submit(&self, event: &AuditEvent) -> Result<Ack, AuditError> {
        let event = self.encode(event)?;
        self.room().await;
        let (reply, rx) = oneshot::channel();
        self.send(Request::Record { event, reply })?;
        Ok(Ack::waiting(rx))
    }

    fn enqueue(&self, event: &AuditEvent) -> Result<Ack, AuditError> {
        let event = self.encode(event)?;
        let depth = self.shared.depth.load(Ordering::Acquire);
        if depth >= self.queue_capacity.saturating_mul(2) {
            return Err(AuditError::Overloaded { capacity: depth });
        }
        let (reply, rx) = oneshot::channel();
        self.send(Request::Record { event, reply })?;
        Ok(Ack::waiting(rx))
    }
}

/// The syncer thread of the `flushed` and `durable` levels: fsyncs whatever
/// has been written, at once, and answers the replies that waited for it.
/// Records written while an fsync runs are covered by the next one.
fn sync_loop(shared: &Shared) {
    let mut st = shared.lock();
    loop {
        while st.failed.is_none() && st.written == st.synced && st.retired.is_empty() && !st.closing
        {
            st = shared
                .syncer_wake
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if let Some(reason) = st.failed.clone() {
            for w in st.waiters.drain(..) {
                w.fail(AuditError::Unavailable(reason.clone()));
            }
            return;
        }
        if st.written == st.synced && st.retired.is_empty() {
            // Closing, and everything written is fsynced.
            return;
        }
        if let Some(delay) = shared.flush_delay {
            // `flushed`: nobody waits for this fsync, so let the records of
            // up to half the window join it (the writer holds back new
            // acknowledgements once the window is used up).
            while st.failed.is_none() && !st.closing && st.waiters.is_empty() {
                let Some(since) = st.unsynced_since else {
                    break;
                };
                let left = (since + delay).saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                st = shared
                    .syncer_wake
                    .wait_timeout(st, left)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
        }
        let target = st.written;
        let mut files = std::mem::take(&mut st.retired);
        files.extend(st.current.clone());
        st.syncing_since = st.unsynced_since.take();
        drop(st);
        let mut result = Ok(());
        for seg in &files {
            shared.fsyncs.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = seg.file.sync_data() {
                result = Err(AuditError::io("fsync", seg.path.clone(), e));
                break;
            }
        }
        st = shared.lock();
        st.syncing_since = None;
        match result {
            Ok(()) => {
                st.synced = target;
                while st.waiters.front().is_some_and(|w| w.seq() <= target) {
                    if let Some(w) = st.waiters.pop_front() {
                        w.succeed();
                    }
                }
            }
            Err(e) => {
                let reason = e.to_string();
                st.failed.get_or_insert(reason);
                if let Some(w) = st.waiters.pop_front() {
                    w.fail(e);
                }
                // The loop's top fails the rest and ends.
            }
        }
        shared.writer_wake.notify_all();
    }
}

struct Writer {
    name: String,
    dir: PathBuf,
    chain: String,
    commit: Commit,
    max_file_bytes: u64,
    max_batch: usize,
    sync_window: Duration,
    file: Arc<Segment>,
    index: u64,
    size: u64,
    head: ChainHead,
    scratch: Vec<u8>,
    key: Option<ChainKey>,
}

type IoFailure = (&'static str, PathBuf, std::io::Error);

fn sync_dir(dir: &Path) -> Result<(), AuditError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| AuditError::io("fsync directory", dir, e))
}

/// The last complete record in `files`, searching backwards; `None` if there
/// is none.
fn last_record(
    files: &[PathBuf],
    chain: &str,
    key: Option<&ChainKey>,
) -> Result<Option<ChainHead>, AuditError> {
    for path in files.iter().rev() {
        let data = std::fs::read(path).map_err(|e| AuditError::io("read", path, e))?;
        let complete = match data.iter().rposition(|&b| b == b'\n') {
            Some(i) => data.get(..i).unwrap_or_default(),
            None => continue,
        };
        let line_no = complete.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
        let last = complete.rsplit(|&b| b == b'\n').next().unwrap_or_default();
        let rec = parse_line(last, key).map_err(|e| AuditError::Corrupt {
            path: path.clone(),
            line: line_no,
            reason: format!("{e:?}"),
        })?;
        if rec.chain != chain {
            return Err(AuditError::Corrupt {
                path: path.clone(),
                line: line_no,
                reason: format!("record of chain {:?}", rec.chain),
            });
        }
        return Ok(Some(ChainHead {
            seq: rec.seq,
            hash: rec.hash,
        }));
    }
    Ok(None)
}

impl Writer {
    fn open(dir: &Path, options: &JsonlOptions) -> Result<(Writer, OpenReport), AuditError> {
        let chain = options.chain.clone();
        let mut files = trail_files(dir, &chain)?;
        let existing = files.len();
        remove_stale_temporaries(dir, &chain)?;
        // Files left empty by a crash right after a rotation hold nothing.
        while let Some(last) = files.last() {
            let len = std::fs::metadata(last)
                .map_err(|e| AuditError::io("stat", last, e))?
                .len();
            if len != 0 {
                break;
            }
            std::fs::remove_file(last).map_err(|e| AuditError::io("remove empty", last, e))?;
            files.pop();
        }
        sync_dir(dir)?;
        let head = last_record(&files, &chain, options.key.as_ref())?.unwrap_or(ChainHead::EMPTY);
        let mut torn = None;
        if let Some(last) = files.last() {
            let data = std::fs::read(last).map_err(|e| AuditError::io("read", last, e))?;
            let cut = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            let tail = data.get(cut..).unwrap_or_default();
            if !tail.is_empty() {
                let line = data
                    .get(..cut)
                    .unwrap_or_default()
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count() as u64
                    + 1;
                torn = Some((
                    last.clone(),
                    line,
                    tail.len() as u64,
                    hex::encode(Sha256::digest(tail)),
                ));
            }
        }
        let next_index = files.last().map_or(1, |p| file_index(p) + 1);
        let mut torn_tail = None;
        let writer = match (torn, files.last()) {
            (None, Some(last)) => {
                let file = OpenOptions::new()
                    .append(true)
                    .open(last)
                    .map_err(|e| AuditError::io("open", last, e))?;
                let size = file
                    .metadata()
                    .map_err(|e| AuditError::io("stat", last, e))?
                    .len();
                Writer::with_file(dir, options, file, last.clone(), size, head)
            }
            (None, None) => {
                let path = dir.join(file_name(&chain, next_index));
                let file = create_file(&path)?;
                sync_dir(dir)?;
                Writer::with_file(dir, options, file, path, 0, head)
            }
            (Some((torn_path, line, bytes, sha256)), _) => {
                // The recovery record goes into a new file, written under a
                // temporary name and renamed, so that a crash now leaves
                // either the whole record or nothing.
                let event = AuditEvent::new(EventKind::TrailRecovered {
                    file: torn_path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    line,
                    bytes,
                    sha256,
                });
                let mut buf = Vec::new();
                let seq = head.seq + 1;
                let hash = render_line(
                    &mut buf,
                    options.key.as_ref(),
                    &chain,
                    seq,
                    &head.hash,
                    &event.canonical_bytes()?,
                );
                let path = dir.join(file_name(&chain, next_index));
                let tmp = dir.join(format!(".{}.tmp", file_name(&chain, next_index)));
                let mut file = OpenOptions::new()
                    .create(true)
                    .truncate(true)
                    .write(true)
                    .open(&tmp)
                    .map_err(|e| AuditError::io("create", &tmp, e))?;
                file.write_all(&buf)
                    .map_err(|e| AuditError::io("write", &tmp, e))?;
                file.sync_data()
                    .map_err(|e| AuditError::io("fsync", &tmp, e))?;
                drop(file);
                std::fs::rename(&tmp, &path).map_err(|e| AuditError::io("rename", &tmp, e))?;
                sync_dir(dir)?;
                let file = OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .map_err(|e| AuditError::io("open", &path, e))?;
                torn_tail = Some(TornTail {
                    path: torn_path,
                    line,
                    bytes,
                });
                Writer::with_file(
                    dir,
                    options,
                    file,
                    path,
                    buf.len() as u64,
                    ChainHead { seq, hash },
                )
            }
        };
        let report = OpenReport {
            head: writer.head,
            files: existing,
            torn_tail,
        };
        Ok((writer, report))
    }

    fn with_file(
        dir: &Path,
        options: &JsonlOptions,
        file: File,
        path: PathBuf,
        size: u64,
        head: ChainHead,
    ) -> Writer {
        Writer {
            name: format!("jsonl:{}", options.chain),
            dir: dir.to_owned(),
            chain: options.chain.clone(),
            commit: options.commit,
            max_file_bytes: options.max_file_bytes,
            max_batch: options.max_batch,
            sync_window: options.sync_window,
            index: file_index(&path),
            file: Arc::new(Segment { file, path }),
            size,
            head,
            scratch: Vec::new(),
            key: options.key.clone(),
        }
    }

    fn write(&mut self, buf: &[u8]) -> Result<(), IoFailure> {
        if buf.is_empty() {
            return Ok(());
        }
        (&self.file.file)
            .write_all(buf)
            .map_err(|e| ("write", self.file.path.clone(), e))?;
        self.size += buf.len() as u64;
        Ok(())
    }

    fn write_and_sync(&mut self, buf: &[u8], shared: &Shared) -> Result<(), IoFailure> {
        if buf.is_empty() {
            return Ok(());
        }
        self.write(buf)?;
        shared.writes.fetch_add(1, Ordering::Relaxed);
        shared.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.file
            .file
            .sync_data()
            .map_err(|e| ("fsync", self.file.path.clone(), e))
    }

    /// Starts the next file. For the pipelined levels the old file's data
    /// is handed to the syncer, which fsyncs it with the next batch.
    fn rotate(&mut self, shared: &Shared) -> Result<(), IoFailure> {
        let index = self.index + 1;
        let path = self.dir.join(file_name(&self.chain, index));
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|e| ("create", path.clone(), e))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| ("fsync directory", self.dir.clone(), e))?;
        let old = std::mem::replace(&mut self.file, Arc::new(Segment { file, path }));
        {
            let mut st = shared.lock();
            st.current = Some(Arc::clone(&self.file));
            if self.commit.pipelined() {
                st.retired.push(old);
            }
        }
        self.index = index;
        self.size = 0;
        Ok(())
    }

    fn run(mut self, rx: mpsc::Receiver<Request>, shared: &Shared, syncer: Option<JoinHandle<()>>) {
        let mut batch = Vec::new();
        let mut last_commit = Instant::now();
        while let Ok(first) = rx.recv() {
            batch.push(first);
            if let Commit::Group(window) = self.commit {
                // Sleep rather than wait on the channel, so that senders
                // during the window do not each wake this thread; then take
                // everything that arrived.
                let left = (last_commit + window).saturating_duration_since(Instant::now());
                if !left.is_zero() {
                    std::thread::sleep(left);
                }
            }
            if self.commit != Commit::PerRecord {
                // Everything that queued up while the last batch was
                // written (and, for the old modes, fsynced) goes together.
                while batch.len() < self.max_batch {
                    match rx.try_recv() {
                        Ok(req) => batch.push(req),
                        Err(_) => break,
                    }
                }
            }
            shared.depth.fetch_sub(batch.len(), Ordering::AcqRel);
            shared.room.notify_waiters();
            last_commit = Instant::now();
            match shared.failure() {
                Some(reason) => {
                    for req in batch.drain(..) {
                        reply_err(req, || AuditError::Unavailable(reason.clone()));
                    }
                }
                None => {
                    if let Err((op, path, e)) = self.process(&mut batch, shared) {
                        shared.set_failed(format!("{op} {}: {e}", path.display()));
                        for req in batch.drain(..) {
                            reply_err(req, || {
                                AuditError::io(
                                    op,
                                    path.clone(),
                                    std::io::Error::new(e.kind(), e.to_string()),
                                )
                            });
                        }
                    }
                }
            }
        }
        // The sink was dropped: the syncer fsyncs what is written, then ends.
        shared.lock().closing = true;
        shared.syncer_wake.notify_all();
        if let Some(syncer) = syncer {
            let _ = syncer.join();
        }
    }

    /// Writes (and, for the old modes, syncs) the batch; on success drains
    /// it, replying to each request or handing it to the syncer.
    fn process(&mut self, batch: &mut Vec<Request>, shared: &Shared) -> Result<(), IoFailure> {
        let pipelined = self.commit.pipelined();
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        let mut receipts = Vec::with_capacity(batch.len());
        let mut head = self.head;
        let durability = match self.commit {
            Commit::Flushed => Durability::Written,
            _ => Durability::Fsynced,
        };
        for req in batch.iter() {
            let Request::Record { event, .. } = req else {
                continue;
            };
            let seq = head.seq + 1;
            let line_start = buf.len();
            let hash = render_line(
                &mut buf,
                self.key.as_ref(),
                &self.chain,
                seq,
                &head.hash,
                event,
            );
            let line_len = (buf.len() - line_start) as u64;
            let pending = self.size + line_start as u64;
            if pending > 0 && pending + line_len > self.max_file_bytes {
                let line = buf.split_off(line_start);
                if pipelined {
                    self.write(&buf)?;
                    shared.writes.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.write_and_sync(&buf, shared)?;
                }
                buf = line;
                self.rotate(shared)?;
            }
            head = ChainHead { seq, hash };
            receipts.push(Receipt {
                sink: self.name.clone(),
                seq,
                hash: Some(hash),
                durability,
                members: Vec::new(),
            });
        }
        if pipelined {
            self.write(&buf)?;
            if !buf.is_empty() {
                shared.writes.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            self.write_and_sync(&buf, shared)?;
        }
        shared
            .records
            .fetch_add(receipts.len() as u64, Ordering::Relaxed);
        self.head = head;
        if buf.capacity() <= 16 << 20 {
            self.scratch = buf;
        }
        if pipelined {
            self.hand_over(batch, receipts, shared);
            return Ok(());
        }
        let mut receipts = receipts.into_iter();
        for req in batch.drain(..) {
            match req {
                Request::Record { reply, .. } => {
                    if let Some(r) = receipts.next() {
                        let _ = reply.send(Ok(r));
                    }
                }
                Request::Flush { reply } => {
                    let _ = reply.send(Ok(()));
                }
            }
        }
        Ok(())
    }

    /// For the pipelined levels, after the batch is written: tells the
    /// syncer, then answers `flushed` records at once and queues the replies
    /// that wait for the fsync.
    fn hand_over(&self, batch: &mut Vec<Request>, receipts: Vec<Receipt>, shared: &Shared) {
        let flushed = self.commit == Commit::Flushed;
        let mut st = shared.lock();
        if flushed {
            // The bound of the `flushed` level: no record is acknowledged
            // while one acknowledged a window ago is still not fsynced.
            loop {
                let oldest = match (st.syncing_since, st.unsynced_since) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                let Some(oldest) = oldest else { break };
                let left = (oldest + self.sync_window).saturating_duration_since(Instant::now());
                if left.is_zero() && st.failed.is_none() {
                    st = shared
                        .writer_wake
                        .wait_timeout(st, self.sync_window)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|e| e.into_inner().0);
                } else {
                    break;
                }
            }
        }
        if let Some(reason) = st.failed.clone() {
            drop(st);
            for req in batch.drain(..) {
                reply_err(req, || AuditError::Unavailable(reason.clone()));
            }
            return;
        }
        if self.head.seq > st.written {
            st.written = self.head.seq;
            // `flushed`: the syncer needs waking only for the first record
            // after an fsync (it then waits out its delay by itself).
            let first = st.unsynced_since.is_none();
            if flushed {
                st.unsynced_since.get_or_insert_with(Instant::now);
            }
            if !flushed || first {
                shared.syncer_wake.notify_one();
            }
        }
        let synced = st.synced;
        let mut now = Vec::new();
        let mut receipts = receipts.into_iter();
        for req in batch.drain(..) {
            match req {
                Request::Record { reply, .. } => {
                    let Some(receipt) = receipts.next() else {
                        continue;
                    };
                    if flushed {
                        now.push((reply, receipt));
                    } else {
                        st.waiters.push_back(Waiter::Record {
                            seq: receipt.seq,
                            receipt,
                            reply,
                        });
                    }
                }
                Request::Flush { reply } => {
                    if self.head.seq <= synced {
                        let _ = reply.send(Ok(()));
                    } else {
                        st.waiters.push_back(Waiter::Flush {
                            seq: self.head.seq,
                            reply,
                        });
                        // Someone waits: no delay.
                        shared.syncer_wake.notify_one();
                    }
                }
            }
        }
        drop(st);
        for (reply, receipt) in now {
            let _ = reply.send(Ok(receipt));
        }
    }
}

fn reply_err(req: Request, err: impl Fn() -> AuditError) {
    match req {
        Request::Record { reply, .. } => {
            let _ = reply.send(Err(err()));
        }
        Request::Flush { reply } => {
            let _ = reply.send(Err(err()));
        }
    }
}

/// Removes recovery files that a crash left under their temporary name.
fn remove_stale_temporaries(dir: &Path, chain: &str) -> Result<(), AuditError> {
    let entries = std::fs::read_dir(dir).map_err(|e| AuditError::io("read directory", dir, e))?;
    let prefix = format!(".{chain}-");
    for entry in entries {
        let entry = entry.map_err(|e| AuditError::io("read directory", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let ours = name
            .strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix(".jsonl.tmp"))
            .is_some_and(|n| n.len() == 10 && n.bytes().all(|b| b.is_ascii_digit()));
        if ours {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|e| AuditError::io("remove", &path, e))?;
        }
    }
    Ok(())
}

fn create_file(path: &Path) -> Result<File, AuditError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| AuditError::io("create", path, e))
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("path", &self.file.path)
            .field("head", &self.head)
            .finish_non_exhaustive()
    }
}
