//! A bounded cache of SQL decisions, so a repeated statement skips the parse.
//!
//! Keyed by the statement text, the principal (id, kind, groups), the
//! resource (name, kind, labels), the session's search path (and which
//! relations the catalog holds) and the risks the embedder added; it lives inside one [`Policy`](crate::Policy)
//! value, so the policy version is part of the key by construction (a reloaded
//! policy starts with an empty cache). Sharded `std::sync::Mutex`es, each
//! shard a fixed number of slots evicted by CLOCK (second chance). The hash
//! is std's keyed SipHash with a random key per cache, so a client cannot
//! choose texts that collide; a full key comparison follows every hash hit.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::Mutex;

use crate::facts::Risk;
use crate::policy::Decision;
use crate::request::{Principal, Request, Resource};
use crate::search_path::SearchPath;

const SHARDS: usize = 16;

/// The longest statement text kept (longer ones are decided every time).
pub(crate) const MAX_CACHED_BYTES: usize = 16 * 1024;

#[derive(Debug)]
struct Slot {
    hash: u64,
    sql: Box<str>,
    principal: Principal,
    resource: Resource,
    search_path: Option<SearchPath>,
    relations: Option<u64>,
    risks: Vec<Risk>,
    decision: Decision,
    referenced: bool,
}

#[derive(Debug, Default)]
struct Shard {
    index: HashMap<u64, usize>,
    slots: Vec<Slot>,
    hand: usize,
}

/// The cache.
#[derive(Debug)]
pub(crate) struct DecisionCache {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    hasher: RandomState,
}

impl DecisionCache {
    /// Entries kept unless the policy says otherwise.
    pub(crate) const DEFAULT_ENTRIES: usize = 4096;

    /// A cache of about `entries` decisions (0 disables it).
    pub(crate) fn new(entries: usize) -> Self {
        let per_shard = entries.div_ceil(SHARDS);
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard,
            hasher: RandomState::new(),
        }
    }

    /// About how many entries it keeps.
    pub(crate) fn capacity(&self) -> usize {
        self.per_shard.saturating_mul(SHARDS)
    }

    fn key_hash(&self, sql: &str, req: &Request<'_>) -> u64 {
        let mut h = self.hasher.build_hasher();
        let (p, r) = (req.principal, req.resource);
        sql.hash(&mut h);
        p.id.hash(&mut h);
        p.kind.hash(&mut h);
        p.groups.hash(&mut h);
        r.name.hash(&mut h);
        r.kind.hash(&mut h);
        r.labels.hash(&mut h);
        // Only when given (the common embedding gives none of them).
        if let Some(path) = req.search_path {
            path.hash(&mut h);
        }
        if let Some(r) = req.relations {
            r.id().hash(&mut h);
        }
        if !req.risks.is_empty() {
            req.risks.hash(&mut h);
        }
        h.finish()
    }

    fn shard(&self, hash: u64) -> Option<std::sync::MutexGuard<'_, Shard>> {
        let i = usize::try_from(hash % SHARDS as u64).unwrap_or(0);
        self.shards
            .get(i)
            .map(|m| m.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// The decision for this key, computed by `decide` on a miss.
    pub(crate) fn get_or_insert(
        &self,
        sql: &str,
        req: &Request<'_>,
        decide: impl FnOnce() -> Decision,
    ) -> Decision {
        if self.per_shard == 0 || sql.len() > MAX_CACHED_BYTES {
            return decide();
        }
        let (p, r) = (req.principal, req.resource);
        let relations = req.relations.map(|r| r.id());
        let hash = self.key_hash(sql, req);
        if let Some(mut shard) = self.shard(hash)
            && let Some(&i) = shard.index.get(&hash)
            && let Some(slot) = shard.slots.get_mut(i)
            && &*slot.sql == sql
            && slot.principal == *p
            && slot.resource == *r
            && slot.search_path.as_ref() == req.search_path
            && slot.relations == relations
            && slot.risks == req.risks
        {
            slot.referenced = true;
            return slot.decision.clone();
        }
        let decision = decide();
        if let Some(mut shard) = self.shard(hash) {
            shard.insert(
                self.per_shard,
                Slot {
                    hash,
                    sql: sql.into(),
                    principal: p.clone(),
                    resource: r.clone(),
                    search_path: req.search_path.cloned(),
                    relations,
                    risks: req.risks.to_vec(),
                    decision: decision.clone(),
                    referenced: false,
                },
            );
        }
        decision
    }
}

impl Shard {
    fn insert(&mut self, capacity: usize, slot: Slot) {
        if let Some(&i) = self.index.get(&slot.hash) {
            // Same hash (this key, or a colliding one): replace it.
            if let Some(s) = self.slots.get_mut(i) {
                *s = slot;
            }
            return;
        }
        if self.slots.len() < capacity {
            self.index.insert(slot.hash, self.slots.len());
            self.slots.push(slot);
            return;
        }
        // CLOCK: the first slot not referenced since the hand last passed.
        let n = self.slots.len();
        for _ in 0..=n {
            let i = self.hand % n.max(1);
            self.hand = (i + 1) % n.max(1);
            let Some(s) = self.slots.get_mut(i) else {
                return;
            };
            if s.referenced {
                s.referenced = false;
                continue;
            }
            self.index.remove(&s.hash);
            self.index.insert(slot.hash, i);
            *s = slot;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::CommandFacts;
    use crate::policy::{Effect, MaskDirectives};
    use crate::request::{PrincipalKind, ResourceKind};

    fn d(reason: &str) -> Decision {
        Decision {
            effect: Effect::Allow,
            rule_id: None,
            reason: reason.into(),
            facts: CommandFacts::None,
            mask: MaskDirectives::default(),
        }
    }

    #[test]
    fn hits_misses_and_bound() {
        let c = DecisionCache::new(32);
        let p = Principal::new("a", PrincipalKind::Agent);
        let q = Principal::new("a", PrincipalKind::Agent).with_groups(["g"]);
        let r = Resource::new("db", ResourceKind::Postgres);
        let mut calls = 0;
        for _ in 0..3 {
            c.get_or_insert("SELECT 1", &Request::sql(&p, &r, "SELECT 1"), || {
                calls += 1;
                d("one")
            });
        }
        assert_eq!(calls, 1, "repeated statements are decided once");
        // Another principal (groups differ) is another key.
        let got = c.get_or_insert("SELECT 1", &Request::sql(&q, &r, "SELECT 1"), || d("two"));
        assert_eq!(got.reason, "two");
        // Another search path, or other relations, is another key.
        let path = SearchPath::Known(vec!["shop".into()]);
        let req = Request::sql(&p, &r, "SELECT 1").with_search_path(&path);
        assert_eq!(
            c.get_or_insert("SELECT 1", &req, || d("three")).reason,
            "three"
        );
        assert_eq!(c.get_or_insert("SELECT 1", &req, || d("x")).reason, "three");
        let unknown = SearchPath::Unknown;
        let req = Request::sql(&p, &r, "SELECT 1").with_search_path(&unknown);
        assert_eq!(
            c.get_or_insert("SELECT 1", &req, || d("four")).reason,
            "four"
        );
        let rel = crate::Relations::new();
        let req = req.with_relations(&rel);
        assert_eq!(
            c.get_or_insert("SELECT 1", &req, || d("five")).reason,
            "five"
        );
        let risks = [Risk::MaskedColumnPredicate];
        let req = req.with_risks(&risks);
        assert_eq!(c.get_or_insert("SELECT 1", &req, || d("six")).reason, "six");
        assert_eq!(c.get_or_insert("SELECT 1", &req, || d("x")).reason, "six");
        // Many distinct statements: the cache stays bounded.
        for i in 0..10_000 {
            let sql = format!("SELECT {i}");
            c.get_or_insert(&sql, &Request::sql(&p, &r, &sql), || d("x"));
        }
        let total: usize = c.shards.iter().map(|s| s.lock().unwrap().slots.len()).sum();
        assert!(total <= 32, "{total} entries");
        // Disabled cache decides every time.
        let off = DecisionCache::new(0);
        let mut n = 0;
        for _ in 0..2 {
            off.get_or_insert("SELECT 1", &Request::sql(&p, &r, "SELECT 1"), || {
                n += 1;
                d("x")
            });
        }
        assert_eq!(n, 2);
    }
}
