//! Ticket mode (`mode = "ticket"` on a review): for agents whose tool calls
//! time out, a reviewed statement is not held. Its first attempt is refused
//! at once with the approval request's id; once people approve the request,
//! the same principal's same statement (same text, same bound values, through
//! the same configured connection, from any session) runs **once** within the
//! review's timeout; after that, or after a denial or expiry, the next
//! attempt files a new request.
//!
//! Keyed by a SHA-256 fingerprint of the exact statement and its parameters,
//! never by the masked text an approver sees, so two statements that differ
//! only in a masked value never share an approval.
//!
//! The requests and their one use live in the approval store (see
//! [`crate::approvals::ApprovalStore::ticket_attempt`]): with replicas
//! sharing one store, the retry may land on any replica, and of replicas
//! racing for one approval exactly one runs the statement.

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

    /// As the shared store keeps it (never shown: a digest of a statement
    /// with its values could confirm a guessed value).
    pub(crate) fn hex(&self) -> String {
        hex::encode(self.0)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
