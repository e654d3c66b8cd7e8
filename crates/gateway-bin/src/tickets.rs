//! Ticket mode (`mode = "ticket"` on a review): for agents whose tool calls
//! time out, a reviewed statement is not held. Its first attempt is refused
//! at once with the approval request's id; once people approve the request,
//! the same principal's same statement (same text, same bound values, on the
//! same connection) runs **once** within the review's timeout; after that, or
//! after a denial or expiry, the next attempt files a new request.
//!
//! Keyed by a SHA-256 fingerprint of the exact statement and its parameters,
//! never by the masked text an approver sees, so two statements that differ
//! only in a masked value never share an approval.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use bytes::Bytes;

/// A statement's identity for ticket mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// Of `principal`'s `sql` with `params` on `connection` (each part
    /// length-prefixed, so no two different inputs run together).
    pub(crate) fn of(
        principal: &str,
        connection: &str,
        sql: &str,
        params: Option<&[Option<Bytes>]>,
    ) -> Fingerprint {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut part = |bytes: &[u8]| {
            ctx.update(&(bytes.len() as u64).to_be_bytes());
            ctx.update(bytes);
        };
        part(principal.as_bytes());
        part(connection.as_bytes());
        part(sql.as_bytes());
        for p in params.unwrap_or_default() {
            match p {
                Some(v) => part(v),
                None => part(b"\xffNULL"),
            }
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        Fingerprint(out)
    }
}

#[derive(Debug)]
enum Entry {
    /// A request is filed and waiting for people.
    Pending { id: String },
    /// Approved: runs once, until `until`.
    Approved { id: String, until: Instant },
}

/// What an attempt of a ticket-mode statement gets.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// An approval was waiting for it: run it now (the approval is used up).
    Run { id: String },
    /// Its request is still waiting for people.
    Waiting { id: String },
    /// No request yet (or the last one was used, denied or expired): file one.
    File,
}

/// The tickets of one gateway.
#[derive(Debug, Default)]
pub(crate) struct Tickets {
    entries: Mutex<HashMap<Fingerprint, Entry>>,
}

impl Tickets {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Fingerprint, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What this attempt gets; `Run` consumes the approval.
    pub(crate) fn attempt(&self, key: Fingerprint, now: Instant) -> Attempt {
        let mut entries = self.lock();
        match entries.get(&key) {
            Some(Entry::Pending { id }) => Attempt::Waiting { id: id.clone() },
            Some(Entry::Approved { until, .. }) if *until > now => match entries.remove(&key) {
                Some(Entry::Approved { id, .. }) => Attempt::Run { id },
                _ => Attempt::File,
            },
            Some(Entry::Approved { .. }) => {
                entries.remove(&key);
                Attempt::File
            }
            None => Attempt::File,
        }
    }

    /// A request was filed for `key`.
    pub(crate) fn filed(&self, key: Fingerprint, id: String) {
        self.lock().insert(key, Entry::Pending { id });
    }

    /// The request for `key` was approved: one run, until `until`.
    pub(crate) fn approved(&self, key: Fingerprint, id: String, until: Instant) {
        self.lock().insert(key, Entry::Approved { id, until });
    }

    /// The request for `key` was denied, expired or abandoned.
    pub(crate) fn ended(&self, key: Fingerprint, id: &str) {
        let mut entries = self.lock();
        if matches!(entries.get(&key), Some(Entry::Pending { id: p }) if p == id) {
            entries.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn an_approval_runs_once_then_a_new_request_is_needed() {
        let t = Tickets::default();
        let key = Fingerprint::of("agent:a", "shop", "DELETE FROM t WHERE id = $1", None);
        let now = Instant::now();
        assert_eq!(t.attempt(key, now), Attempt::File);
        t.filed(key, "apr-1".into());
        assert_eq!(t.attempt(key, now), Attempt::Waiting { id: "apr-1".into() });
        t.approved(key, "apr-1".into(), now + Duration::from_secs(60));
        assert_eq!(t.attempt(key, now), Attempt::Run { id: "apr-1".into() });
        assert_eq!(t.attempt(key, now), Attempt::File);
    }

    #[test]
    fn an_approval_expires_and_a_denial_ends_the_request() {
        let t = Tickets::default();
        let key = Fingerprint::of("agent:a", "shop", "DELETE FROM t", None);
        let now = Instant::now();
        t.approved(key, "apr-1".into(), now + Duration::from_secs(1));
        assert_eq!(t.attempt(key, now + Duration::from_secs(2)), Attempt::File);
        t.filed(key, "apr-2".into());
        t.ended(key, "apr-other");
        assert_eq!(t.attempt(key, now), Attempt::Waiting { id: "apr-2".into() });
        t.ended(key, "apr-2");
        assert_eq!(t.attempt(key, now), Attempt::File);
    }

    #[test]
    fn fingerprints_tell_principals_connections_texts_and_values_apart() {
        let p = |v: &'static [u8]| vec![Some(Bytes::from_static(v))];
        let base = Fingerprint::of(
            "agent:a",
            "shop",
            "DELETE FROM t WHERE id = $1",
            Some(&p(b"1")),
        );
        for other in [
            Fingerprint::of(
                "agent:b",
                "shop",
                "DELETE FROM t WHERE id = $1",
                Some(&p(b"1")),
            ),
            Fingerprint::of(
                "agent:a",
                "prod",
                "DELETE FROM t WHERE id = $1",
                Some(&p(b"1")),
            ),
            Fingerprint::of(
                "agent:a",
                "shop",
                "DELETE FROM t WHERE id = $2",
                Some(&p(b"1")),
            ),
            Fingerprint::of(
                "agent:a",
                "shop",
                "DELETE FROM t WHERE id = $1",
                Some(&p(b"2")),
            ),
            Fingerprint::of(
                "agent:a",
                "shop",
                "DELETE FROM t WHERE id = $1",
                Some(&[None]),
            ),
            Fingerprint::of("agent:a", "shop", "DELETE FROM t WHERE id = $1", None),
            // Parts never run together.
            Fingerprint::of(
                "agent:as",
                "hop",
                "DELETE FROM t WHERE id = $1",
                Some(&p(b"1")),
            ),
        ] {
            assert_ne!(base, other);
        }
        assert_eq!(
            base,
            Fingerprint::of(
                "agent:a",
                "shop",
                "DELETE FROM t WHERE id = $1",
                Some(&p(b"1"))
            )
        );
    }
}
