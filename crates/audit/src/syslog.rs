//! The SIEM-facing sink: RFC 5424 syslog over TCP.
//!
//! Why syslog rather than OTLP logs: every SIEM and log pipeline in use
//! (Splunk, QRadar, Sentinel through a forwarder, Elastic, rsyslog,
//! syslog-ng, Vector, Fluent Bit) accepts RFC 5424 over TCP, and it needs no
//! HTTP/2, gRPC or protobuf stack, so the sink is a few hundred lines on
//! tokio's TCP stream. Its weakness — no acknowledgement — is stated in the
//! receipt ([`crate::Durability::Transmitted`]); durability comes from the
//! other members of a fan-out. TLS (RFC 5425) is the next step.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use crate::{AuditError, AuditEvent, AuditSink, Durability, Effect, EventKind, Health, Receipt};

/// Options for [`SyslogSink::new`].
#[derive(Debug, Clone)]
pub struct SyslogOptions {
    addr: String,
    hostname: String,
    app_name: String,
    procid: String,
    facility: u8,
    enterprise_id: u32,
    timeout: Duration,
    max_event_bytes: usize,
}

fn header_field(option: &'static str, value: &str, max: usize) -> Result<(), AuditError> {
    if value.is_empty() || value.len() > max || !value.bytes().all(|b| (33..=126).contains(&b)) {
        return Err(AuditError::InvalidOption {
            option,
            reason: format!("{value:?} must be 1 to {max} printable US-ASCII characters"),
        });
    }
    Ok(())
}

impl SyslogOptions {
    /// Sending to `addr` (`host:port`) as `hostname` (RFC 5424 HOSTNAME;
    /// the gateway passes its own, this crate reads no environment).
    /// Defaults: APP-NAME `portcullis`, PROCID `-`, facility 13 (log audit),
    /// SD-ID `portcullis@32473` (32473 is the example enterprise number of
    /// RFC 5612: set your own), a 5 s timeout for connecting and writing,
    /// events up to 64 KiB.
    pub fn new(
        addr: impl Into<String>,
        hostname: impl Into<String>,
    ) -> Result<SyslogOptions, AuditError> {
        let hostname = hostname.into();
        header_field("hostname", &hostname, 255)?;
        Ok(SyslogOptions {
            addr: addr.into(),
            hostname,
            app_name: "portcullis".into(),
            procid: "-".into(),
            facility: 13,
            enterprise_id: 32473,
            timeout: Duration::from_secs(5),
            max_event_bytes: 64 << 10,
        })
    }

    /// The APP-NAME (1 to 48 printable US-ASCII characters).
    pub fn app_name(mut self, name: impl Into<String>) -> Result<SyslogOptions, AuditError> {
        let name = name.into();
        header_field("app_name", &name, 48)?;
        self.app_name = name;
        Ok(self)
    }

    /// The PROCID (1 to 128 printable US-ASCII characters), e.g. the replica.
    pub fn procid(mut self, procid: impl Into<String>) -> Result<SyslogOptions, AuditError> {
        let procid = procid.into();
        header_field("procid", &procid, 128)?;
        self.procid = procid;
        Ok(self)
    }

    /// The facility, 0 to 23.
    pub fn facility(mut self, facility: u8) -> Result<SyslogOptions, AuditError> {
        if facility > 23 {
            return Err(AuditError::InvalidOption {
                option: "facility",
                reason: format!("{facility} is not in 0..=23"),
            });
        }
        self.facility = facility;
        Ok(self)
    }

    /// The private enterprise number in the SD-ID `portcullis@<number>`.
    pub fn enterprise_id(mut self, number: u32) -> SyslogOptions {
        self.enterprise_id = number;
        self
    }

    /// The timeout for connecting and for writing one message.
    pub fn timeout(mut self, timeout: Duration) -> SyslogOptions {
        self.timeout = timeout;
        self
    }

    /// The largest encoded event accepted.
    pub fn max_event_bytes(mut self, bytes: usize) -> SyslogOptions {
        self.max_event_bytes = bytes;
        self
    }
}

/// Sends each event to a SIEM as an RFC 5424 syslog message over TCP, framed
/// by octet counting (RFC 6587 §3.4.1): `<length> <message>`.
///
/// The message is `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG`
/// with MSGID the event kind (`command`, `auth_failed`, ...), structured data
/// `[portcullis@32473 seq="…" session="…" effect="…"]`, and MSG the event's
/// canonical JSON after a UTF-8 byte order mark. Severity is notice, warning
/// for refusals and failed authentication, error for policy and gateway
/// errors.
///
/// A receipt means the message was written to the TCP connection
/// ([`Durability::Transmitted`]): syslog has no acknowledgement, so this sink
/// is not durable on its own. Put it in a [`crate::FanoutSink`] beside a
/// durable sink. A failed write drops the connection and fails the call; the
/// next call reconnects.
#[derive(Debug)]
pub struct SyslogSink {
    name: String,
    options: SyslogOptions,
    conn: Mutex<Option<TcpStream>>,
    seq: AtomicU64,
}

impl SyslogSink {
    /// A sink that connects on first use.
    ///
    /// # Example
    ///
    /// ```
    /// use portcullis_audit::{SyslogOptions, SyslogSink};
    /// let sink = SyslogSink::new(SyslogOptions::new("siem.example:6514", "gw-1.example")?);
    /// # Ok::<(), portcullis_audit::AuditError>(())
    /// ```
    pub fn new(options: SyslogOptions) -> SyslogSink {
        SyslogSink {
            name: format!("syslog:{}", options.addr),
            options,
            conn: Mutex::new(None),
            seq: AtomicU64::new(0),
        }
    }

    fn transport(&self, message: impl Into<String>) -> AuditError {
        AuditError::Transport {
            sink: self.name.clone(),
            message: message.into(),
        }
    }

    async fn connect(&self) -> Result<TcpStream, AuditError> {
        match tokio::time::timeout(self.options.timeout, TcpStream::connect(&self.options.addr))
            .await
        {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                Ok(s)
            }
            Ok(Err(e)) => Err(self.transport(format!("connect: {e}"))),
            Err(_) => Err(self.transport("connect: timed out")),
        }
    }

    /// Renders one framed message (`<len> <msg>`).
    fn frame(&self, event: &AuditEvent, json: &[u8], seq: u64) -> Vec<u8> {
        let severity: u8 = match &event.kind {
            EventKind::Command {
                effect: Effect::Deny,
                ..
            }
            | EventKind::AuthFailed { .. }
            | EventKind::ApprovalDenied { .. }
            | EventKind::ApprovalExpired { .. }
            | EventKind::TrailRecovered { .. } => 4,
            EventKind::PolicyError { .. } | EventKind::GatewayError { .. } => 3,
            _ => 5,
        };
        let pri = u16::from(self.options.facility) * 8 + u16::from(severity);
        let o = &self.options;
        let mut sd = format!("[portcullis@{} seq=\"{seq}\"", o.enterprise_id);
        if let Some(s) = &event.session {
            let _ = write!(sd, " session=\"{}\"", sd_escape(s));
        }
        if let Some(p) = &event.principal {
            let _ = write!(sd, " principal=\"{}\"", sd_escape(&p.id));
        }
        if let EventKind::Command { effect, .. } = &event.kind {
            let e = match effect {
                Effect::Allow => "allow",
                Effect::Deny => "deny",
                Effect::Hold => "hold",
            };
            let _ = write!(sd, " effect=\"{e}\"");
        }
        sd.push(']');
        let mut msg = format!(
            "<{pri}>1 {} {} {} {} {} {sd} \u{feff}",
            event.time,
            o.hostname,
            o.app_name,
            o.procid,
            event.kind.name()
        )
        .into_bytes();
        msg.extend_from_slice(json);
        let mut framed = format!("{} ", msg.len()).into_bytes();
        framed.extend_from_slice(&msg);
        framed
    }
}

/// Whether the collector still has the connection open: a closed one reads
/// as end of stream (a collector never sends anything).
fn peer_open(stream: &TcpStream) -> bool {
    use rustix::net::RecvFlags;
    // Peek without waiting, straight on the socket: tokio's own readiness
    // may not have seen the peer's FIN yet.
    let mut probe = [0u8; 1];
    match rustix::net::recv(
        stream,
        &mut probe[..],
        RecvFlags::PEEK | RecvFlags::DONTWAIT,
    ) {
        Ok((0, _)) => false,
        Ok(_) => true,
        Err(e) => e == rustix::io::Errno::AGAIN || e == rustix::io::Errno::INTR,
    }
}

/// Escapes an SD-PARAM value: `"`, `\` and `]` get a backslash (RFC 5424
/// §6.3.3).
fn sd_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[async_trait::async_trait]
impl AuditSink for SyslogSink {
    async fn record(&self, event: &AuditEvent) -> Result<Receipt, AuditError> {
        let json = event.canonical_bytes()?;
        if json.len() > self.options.max_event_bytes {
            return Err(AuditError::TooLarge {
                size: json.len(),
                limit: self.options.max_event_bytes,
            });
        }
        let mut conn = self.conn.lock().await;
        if conn.as_ref().is_some_and(|s| !peer_open(s)) {
            // The collector closed the connection: reconnect rather than
            // write into a socket whose bytes would be lost.
            *conn = None;
        }
        if conn.is_none() {
            *conn = Some(self.connect().await?);
        }
        let seq = self.seq.load(Ordering::Relaxed) + 1;
        let frame = self.frame(event, &json, seq);
        let Some(stream) = conn.as_mut() else {
            return Err(self.transport("not connected"));
        };
        let result = tokio::time::timeout(self.options.timeout, async {
            stream.write_all(&frame).await?;
            stream.flush().await
        })
        .await;
        match result {
            Ok(Ok(())) => {
                self.seq.store(seq, Ordering::Relaxed);
                Ok(Receipt {
                    sink: self.name.clone(),
                    seq,
                    hash: None,
                    durability: Durability::Transmitted,
                    members: Vec::new(),
                })
            }
            Ok(Err(e)) => {
                *conn = None;
                Err(self.transport(format!("write: {e}")))
            }
            Err(_) => {
                *conn = None;
                Err(self.transport("write: timed out"))
            }
        }
    }

    async fn flush(&self) -> Result<(), AuditError> {
        Ok(())
    }

    async fn health(&self) -> Health {
        let mut conn = self.conn.lock().await;
        if conn.as_ref().is_some_and(peer_open) {
            return Health::Ready;
        }
        *conn = None;
        match self.connect().await {
            Ok(s) => {
                *conn = Some(s);
                Health::Ready
            }
            Err(e) => Health::Unavailable(e.to_string()),
        }
    }

    fn name(&self) -> &str {
        &self.name
    }
}
