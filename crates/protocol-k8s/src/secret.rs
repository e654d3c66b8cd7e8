//! Masking of Secret values in JSON responses, streamed: a list is rewritten
//! one item at a time and a watch one event at a time, each bounded, so no
//! response is ever buffered whole.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

/// What a byte stream can be asked to do to its bytes, one chunk at a time.
/// The gateway implements it with its streaming masker; a transform must be
/// chunk-invariant (the output does not depend on how the input was split)
/// and keep only a bounded tail between calls.
pub trait StreamTransform: Send {
    /// Transforms `chunk`, appending what can be released to `out`.
    fn transform(&mut self, chunk: &[u8], out: &mut Vec<u8>);
    /// Release everything held back now, and go on: the caller knows a
    /// boundary no match may span (the end of a watch event), or waited long
    /// enough for more output (idle exec output). A transform that holds
    /// nothing back does nothing.
    fn flush(&mut self, out: &mut Vec<u8>);
    /// The stream ended: append whatever is still held back.
    fn finish(&mut self, out: &mut Vec<u8>);
    /// How many input bytes the transform holds back now (fed, not yet in
    /// its output), if it can tell: `Some(0)` lets the relay skip the idle
    /// flush and release a keystroke's echo at once. The default, `None`,
    /// is read as "maybe some".
    fn pending(&self) -> Option<usize> {
        None
    }
}

/// The transform that changes nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Identity;

impl StreamTransform for Identity {
    fn transform(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(chunk);
    }
    fn flush(&mut self, _out: &mut Vec<u8>) {}
    fn finish(&mut self, _out: &mut Vec<u8>) {}
    fn pending(&self) -> Option<usize> {
        Some(0)
    }
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// What replaces a value that is not text (binary Secret data).
const REDACTED: &str = "[REDACTED]";

/// Masks one Secret object in place: every `data` value is base64-decoded,
/// passed to `masker` and re-encoded (binary values are replaced by
/// `[REDACTED]`, as is a value that is not valid base64); every `stringData`
/// value is passed to `masker`; the `last-applied-configuration` annotation
/// is masked the same way inside its JSON.
///
/// # Example
///
/// ```
/// use portcullis_k8s::mask_secret_object;
/// let mut s = serde_json::json!({"kind": "Secret", "data": {"password": "aHVudGVyMg=="}});
/// mask_secret_object(&mut s, &|v: &str| "*".repeat(v.len()));
/// assert_eq!(s["data"]["password"], "KioqKioqKg=="); // base64 of "*******"
/// ```
pub fn mask_secret_object(object: &mut Value, masker: &dyn Fn(&str) -> String) {
    let Some(obj) = object.as_object_mut() else {
        return;
    };
    if let Some(Value::Object(data)) = obj.get_mut("data") {
        for v in data.values_mut() {
            let masked = match v.as_str().map(|s| STANDARD.decode(s.trim())) {
                Some(Ok(bytes)) => match String::from_utf8(bytes) {
                    Ok(text) => masker(&text),
                    Err(_) => REDACTED.to_owned(),
                },
                _ => REDACTED.to_owned(),
            };
            *v = Value::String(STANDARD.encode(masked));
        }
    }
    if let Some(Value::Object(data)) = obj.get_mut("stringData") {
        for v in data.values_mut() {
            let masked = match v.as_str() {
                Some(text) => masker(text),
                None => REDACTED.to_owned(),
            };
            *v = Value::String(masked);
        }
    }
    let annotations = obj
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
        .and_then(Value::as_object_mut);
    if let Some(Value::String(applied)) = annotations.and_then(|a| a.get_mut(LAST_APPLIED)) {
        *applied = match serde_json::from_str::<Value>(applied) {
            Ok(mut inner) => {
                mask_secret_object(&mut inner, masker);
                serde_json::to_string(&inner).unwrap_or_else(|_| REDACTED.to_owned())
            }
            Err(_) => masker(applied),
        };
    }
}

/// The shape of a response body: one object, a list, or a watch (of
/// `secrets` for [`SecretStream`], of pods and workloads for [`EnvStream`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretBody {
    /// One object (get, create, update, patch, delete): the whole body is
    /// one Secret (or a Status).
    Object,
    /// A list: the `items` of the root object are Secrets (or the `rows`
    /// of a Table, each holding one in `object`).
    List,
    /// A watch: newline-delimited events whose `object` is a Secret.
    Watch,
}

/// A Secret response could not be masked; the stream must end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretMaskError {
    /// One object is larger than the configured bound.
    #[error("object longer than {limit} bytes")]
    TooLarge {
        /// The bound.
        limit: usize,
    },
    /// The body is not well-formed JSON (at this byte offset).
    #[error("malformed json at byte {offset}")]
    Malformed {
        /// Offset in the body.
        offset: u64,
    },
}

const MAX_DEPTH: usize = 256;
const MAX_KEY: usize = 64;

/// A streaming rewriter of `secrets` response bodies: bytes go in as they
/// arrive, bytes with every Secret value masked come out. Each object (the
/// body, a list item or a watch event) is held until it is complete and no
/// longer than a bound; everything between objects passes straight through.
///
/// # Example
///
/// ```
/// use portcullis_k8s::{SecretBody, SecretStream};
/// let mask = |_: &str| "x".to_string();
/// let mut s = SecretStream::new(SecretBody::List, 1 << 20);
/// let body = br#"{"kind":"SecretList","items":[{"data":{"k":"c2VjcmV0"}},{"data":{"k":"YQ=="}}]}"#;
/// let mut out = Vec::new();
/// for chunk in body.chunks(7) {
///     s.feed(chunk, &mask, &mut out).unwrap();
/// }
/// s.finish().unwrap();
/// let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
/// assert_eq!(v["items"][0]["data"]["k"], "eA=="); // base64 of "x"
/// assert_eq!(v["items"][1]["data"]["k"], "eA==");
/// ```
#[derive(Debug)]
pub struct SecretStream {
    split: Splitter,
}

impl SecretStream {
    /// A rewriter for a body of this shape, holding at most `limit` bytes.
    pub fn new(body: SecretBody, limit: usize) -> Self {
        SecretStream {
            split: Splitter::new(body, limit),
        }
    }

    /// Feeds the next chunk of the body, appending released bytes to `out`.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        masker: &dyn Fn(&str) -> String,
        out: &mut Vec<u8>,
    ) -> Result<(), SecretMaskError> {
        let body = self.split.body;
        self.split.feed(
            chunk,
            &|v: &mut Value| match body {
                SecretBody::Object => mask_secret_object(v, masker),
                SecretBody::List => {
                    // A list item is a Secret; a Table row holds one in `object`.
                    mask_secret_object(v, masker);
                    if let Some(o) = v.get_mut("object") {
                        mask_secret_object(o, masker);
                    }
                }
                SecretBody::Watch => {
                    if let Some(o) = v.get_mut("object") {
                        mask_secret_object(o, masker);
                    }
                }
            },
            out,
        )
    }

    /// The body ended: an object still open is an error.
    pub fn finish(&mut self) -> Result<(), SecretMaskError> {
        self.split.finish()
    }
}

/// Masks environment variable values by name, anywhere in one object: every
/// `env` array whose entries are `{"name": ..., "value": ...}` (a pod's
/// containers, init and ephemeral containers, and the pod template of a
/// Deployment, StatefulSet, DaemonSet, ReplicaSet, Job or CronJob, a list
/// item or a Table row's object), and the same inside the
/// `last-applied-configuration` annotation. `masker` gets the name and the
/// value and returns what to show instead, or `None` to leave the value.
/// Returns how many values it replaced.
///
/// # Example
///
/// ```
/// use portcullis_k8s::mask_env_values;
/// let mut pod = serde_json::json!({"spec": {"containers": [{"name": "app", "env": [
///     {"name": "DB_PASSWORD", "value": "short"},
///     {"name": "LOG_LEVEL", "value": "debug"}]}]}});
/// let n = mask_env_values(&mut pod, &|name: &str, _value: &str| {
///     name.ends_with("_PASSWORD").then(|| "[MASKED]".to_string())
/// });
/// assert_eq!(n, 1);
/// assert_eq!(pod["spec"]["containers"][0]["env"][0]["value"], "[MASKED]");
/// assert_eq!(pod["spec"]["containers"][0]["env"][1]["value"], "debug");
/// ```
pub fn mask_env_values(object: &mut Value, masker: &dyn Fn(&str, &str) -> Option<String>) -> usize {
    let mut n = 0;
    let mut stack = vec![object];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(map) => {
                for (key, val) in map.iter_mut() {
                    if key == "env"
                        && let Value::Array(entries) = val
                    {
                        for entry in entries.iter_mut() {
                            n += mask_env_entry(entry, masker);
                        }
                        continue;
                    }
                    if key == LAST_APPLIED
                        && let Value::String(applied) = val
                    {
                        if let Ok(mut inner) = serde_json::from_str::<Value>(applied) {
                            let found = mask_env_values(&mut inner, masker);
                            if found > 0 {
                                n += found;
                                *applied = serde_json::to_string(&inner)
                                    .unwrap_or_else(|_| REDACTED.to_owned());
                            }
                        }
                        continue;
                    }
                    stack.push(val);
                }
            }
            Value::Array(items) => stack.extend(items.iter_mut()),
            _ => {}
        }
    }
    n
}

/// One `{"name", "value"}` entry of an `env` array.
fn mask_env_entry(entry: &mut Value, masker: &dyn Fn(&str, &str) -> Option<String>) -> usize {
    let Some(map) = entry.as_object_mut() else {
        return 0;
    };
    let name = match map.get("name") {
        Some(Value::String(n)) => n.clone(),
        _ => return 0,
    };
    match map.get_mut("value") {
        Some(Value::String(value)) => match masker(&name, value) {
            Some(masked) => {
                *value = masked;
                1
            }
            None => 0,
        },
        _ => 0,
    }
}

/// A streaming rewriter that masks environment values by name
/// ([`mask_env_values`]) in the bodies of pods and the workloads that hold
/// pod templates: one object, a list (item by item, or Table row by row) or
/// a watch (event by event), each object bounded, nothing held whole.
///
/// # Example
///
/// ```
/// use portcullis_k8s::{EnvStream, SecretBody};
/// let mask = |name: &str, _: &str| name.contains("TOKEN").then(|| "x".to_string());
/// let mut s = EnvStream::new(SecretBody::Watch, 1 << 20);
/// let body = b"{\"type\":\"ADDED\",\"object\":{\"spec\":{\"containers\":[{\"env\":[{\"name\":\"API_TOKEN\",\"value\":\"abc\"}]}]}}}\n";
/// let mut out = Vec::new();
/// for chunk in body.chunks(5) {
///     s.feed(chunk, &mask, &mut out).unwrap();
/// }
/// s.finish().unwrap();
/// assert!(String::from_utf8(out).unwrap().contains(r#""value":"x""#));
/// ```
#[derive(Debug)]
pub struct EnvStream {
    split: Splitter,
}

impl EnvStream {
    /// A rewriter for a body of this shape, holding at most `limit` bytes.
    pub fn new(body: SecretBody, limit: usize) -> Self {
        EnvStream {
            split: Splitter::new(body, limit),
        }
    }

    /// Feeds the next chunk of the body, appending released bytes to `out`.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        masker: &dyn Fn(&str, &str) -> Option<String>,
        out: &mut Vec<u8>,
    ) -> Result<(), SecretMaskError> {
        self.split.feed(
            chunk,
            &|v: &mut Value| {
                mask_env_values(v, masker);
            },
            out,
        )
    }

    /// The body ended: an object still open is an error.
    pub fn finish(&mut self) -> Result<(), SecretMaskError> {
        self.split.finish()
    }
}

/// Splits a JSON body into the objects a rewriter works on (the body, a
/// list item, a watch event), holding each (bounded) until it is complete and
/// passing everything between objects straight through.
#[derive(Debug)]
struct Splitter {
    body: SecretBody,
    limit: usize,
    offset: u64,
    stack: Vec<u8>,
    in_string: bool,
    escape: bool,
    // Root-object key tracking (List mode).
    expecting_key: bool,
    key: Option<Vec<u8>>,
    key_bad: bool,
    last_key_items: bool,
    in_items: bool,
    capture: Option<Vec<u8>>,
}

impl Splitter {
    fn new(body: SecretBody, limit: usize) -> Self {
        Splitter {
            body,
            limit,
            offset: 0,
            stack: Vec::new(),
            in_string: false,
            escape: false,
            expecting_key: false,
            key: None,
            key_bad: false,
            last_key_items: false,
            in_items: false,
            capture: None,
        }
    }

    fn capture_depth(&self) -> usize {
        match self.body {
            SecretBody::Object | SecretBody::Watch => 0,
            SecretBody::List => 2,
        }
    }

    fn malformed(&self) -> SecretMaskError {
        SecretMaskError::Malformed {
            offset: self.offset,
        }
    }

    /// Feeds the next chunk of the body, appending released bytes to `out`;
    /// each complete object goes through `rewrite`.
    fn feed(
        &mut self,
        chunk: &[u8],
        rewrite: &dyn Fn(&mut Value),
        out: &mut Vec<u8>,
    ) -> Result<(), SecretMaskError> {
        let mut pass_from = 0usize;
        for (i, &b) in chunk.iter().enumerate() {
            self.offset += 1;
            if let Some(cap) = self.capture.as_mut() {
                if cap.len() >= self.limit {
                    return Err(SecretMaskError::TooLarge { limit: self.limit });
                }
                cap.push(b);
            }
            if self.in_string {
                if self.escape {
                    self.escape = false;
                } else if b == b'\\' {
                    self.escape = true;
                    if self.key.is_some() {
                        self.key_bad = true;
                    }
                } else if b == b'"' {
                    self.in_string = false;
                    if let Some(key) = self.key.take() {
                        if self.key_bad {
                            // An escaped root key could spell "items": refuse.
                            return Err(self.malformed());
                        }
                        self.last_key_items = key == b"items" || key == b"rows";
                    }
                } else if let Some(key) = self.key.as_mut() {
                    if key.len() < MAX_KEY {
                        key.push(b);
                    } else {
                        self.key_bad = true;
                    }
                }
                continue;
            }
            match b {
                b'"' => {
                    self.in_string = true;
                    if self.stack.len() == 1
                        && self.stack.last() == Some(&b'{')
                        && self.expecting_key
                    {
                        self.key = Some(Vec::new());
                        self.key_bad = false;
                    }
                }
                b':' if self.stack.len() == 1 => self.expecting_key = false,
                b',' if self.stack.len() == 1 => {
                    self.expecting_key = self.stack.last() == Some(&b'{');
                }
                b'{' | b'[' => {
                    let depth = self.stack.len();
                    let items_level = self.body != SecretBody::List || self.in_items;
                    if self.capture.is_none()
                        && depth == self.capture_depth()
                        && items_level
                        && b == b'{'
                    {
                        // Release what passed before this object, hold the object.
                        out.extend_from_slice(chunk.get(pass_from..i).unwrap_or_default());
                        self.capture = Some(vec![b]);
                    }
                    if depth == 1 && b == b'[' && self.last_key_items && !self.expecting_key {
                        self.in_items = true;
                    }
                    if depth >= MAX_DEPTH {
                        return Err(self.malformed());
                    }
                    self.stack.push(b);
                    if depth == 0 {
                        self.expecting_key = b == b'{';
                    }
                }
                b'}' | b']' => {
                    let open = if b == b'}' { b'{' } else { b'[' };
                    if self.stack.pop() != Some(open) {
                        return Err(self.malformed());
                    }
                    let depth = self.stack.len();
                    if depth == 1 && self.in_items {
                        self.in_items = false;
                    }
                    if depth == self.capture_depth()
                        && let Some(cap) = self.capture.take()
                    {
                        self.emit(&cap, rewrite, out)?;
                        pass_from = i + 1;
                    }
                }
                b' ' | b'\t' | b'\r' | b'\n' => {}
                _ if self.stack.is_empty() && self.capture.is_none() => {
                    // A scalar at the root: allowed only outside Object bodies
                    // would be odd; pass it through, it holds no Secret.
                }
                _ => {}
            }
        }
        if self.capture.is_none() {
            out.extend_from_slice(chunk.get(pass_from..).unwrap_or_default());
        }
        Ok(())
    }

    fn emit(
        &self,
        object: &[u8],
        rewrite: &dyn Fn(&mut Value),
        out: &mut Vec<u8>,
    ) -> Result<(), SecretMaskError> {
        let mut v: Value = serde_json::from_slice(object).map_err(|_| self.malformed())?;
        rewrite(&mut v);
        serde_json::to_writer(&mut *out, &v).map_err(|_| self.malformed())
    }

    /// The body ended: an object still open is an error.
    fn finish(&mut self) -> Result<(), SecretMaskError> {
        if self.capture.is_some() || !self.stack.is_empty() || self.in_string {
            return Err(self.malformed());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(body: SecretBody, input: &[u8], chunk: usize) -> Result<Vec<u8>, SecretMaskError> {
        let mask = |v: &str| format!("M{}", v.len());
        let mut s = SecretStream::new(body, 4096);
        let mut out = Vec::new();
        for c in input.chunks(chunk.max(1)) {
            s.feed(c, &mask, &mut out)?;
        }
        s.finish()?;
        Ok(out)
    }

    #[test]
    fn list_items_masked_for_every_chunking() {
        let input = br#"{"kind":"SecretList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[{"metadata":{"name":"a","annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"data\":{\"p\":\"aHVudGVy\"}}"}},"data":{"p":"aHVudGVy","bin":"/w=="},"stringData":{"s":"plain"}},{"metadata":{"name":"b"},"data":{"q":"c2VjcmV0"}}]}"#;
        let first = run(SecretBody::List, input, input.len()).unwrap();
        let v: Value = serde_json::from_slice(&first).unwrap();
        assert_eq!(v["items"][0]["data"]["p"], STANDARD.encode("M6"));
        assert_eq!(v["items"][0]["data"]["bin"], STANDARD.encode(REDACTED));
        assert_eq!(v["items"][0]["stringData"]["s"], "M5");
        assert_eq!(v["items"][1]["data"]["q"], STANDARD.encode("M6"));
        assert_eq!(v["metadata"]["resourceVersion"], "1");
        let applied = v["items"][0]["metadata"]["annotations"][LAST_APPLIED]
            .as_str()
            .unwrap();
        assert!(!applied.contains("aHVudGVy"), "{applied}");
        for chunk in 1..input.len() {
            assert_eq!(
                run(SecretBody::List, input, chunk).unwrap(),
                first,
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn items_key_only_at_root() {
        // "items" nested in metadata must not open capture; the real items do.
        let input =
            br#"{"metadata":{"items":[{"data":{"x":"YQ=="}}]},"items":[{"data":{"k":"YQ=="}}]}"#;
        let v: Value = serde_json::from_slice(&run(SecretBody::List, input, 3).unwrap()).unwrap();
        assert_eq!(v["items"][0]["data"]["k"], STANDARD.encode("M1"));
        // An escaped root key is refused rather than guessed.
        assert!(
            run(
                SecretBody::List,
                br#"{"ite\u006ds":[{"data":{"k":"YQ=="}}]}"#,
                5
            )
            .is_err()
        );
    }

    #[test]
    fn object_and_watch() {
        let v: Value = serde_json::from_slice(
            &run(SecretBody::Object, br#"{"data":{"k":"YWJj"}}"#, 2).unwrap(),
        )
        .unwrap();
        assert_eq!(v["data"]["k"], STANDARD.encode("M3"));
        let input = b"{\"type\":\"ADDED\",\"object\":{\"data\":{\"k\":\"YWJj\"}}}\n{\"type\":\"MODIFIED\",\"object\":{\"data\":{\"k\":\"YQ==\"}}}\n";
        let out = run(SecretBody::Watch, input, 4).unwrap();
        let lines: Vec<Value> = out
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["object"]["data"]["k"], STANDARD.encode("M1"));
    }

    fn run_env(body: SecretBody, input: &[u8], chunk: usize) -> Result<Vec<u8>, SecretMaskError> {
        let mask = |name: &str, value: &str| {
            name.to_ascii_uppercase()
                .contains("PASSWORD")
                .then(|| format!("M{}", value.len()))
        };
        let mut s = EnvStream::new(body, 4096);
        let mut out = Vec::new();
        for c in input.chunks(chunk.max(1)) {
            s.feed(c, &mask, &mut out)?;
        }
        s.finish()?;
        Ok(out)
    }

    #[test]
    fn env_values_masked_by_name_everywhere_for_every_chunking() {
        let applied = r#"{"spec":{"template":{"spec":{"containers":[{"env":[{"name":"DB_PASSWORD","value":"swordfish"}]}]}}}}"#;
        let deployment = serde_json::json!({
            "metadata": {"name": "api", "annotations": {LAST_APPLIED: applied}},
            "spec": {"template": {"spec": {
                "initContainers": [{"env": [{"name": "INIT_PASSWORD", "value": "abc"}]}],
                "containers": [{"env": [
                    {"name": "db_password", "value": "swordfish"},
                    {"name": "PASSWORD_FROM", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                    {"name": "LEVEL", "value": "debug"}]}]}}}
        });
        let list = serde_json::to_vec(&serde_json::json!({
            "kind": "DeploymentList", "metadata": {}, "items": [deployment.clone(), deployment.clone()]
        }))
        .unwrap();
        let table = serde_json::to_vec(&serde_json::json!({
            "kind": "Table", "columnDefinitions": [], "rows": [{"cells": ["api"], "object": deployment}]
        }))
        .unwrap();
        for input in [&list, &table] {
            let whole = run_env(SecretBody::List, input, input.len()).unwrap();
            let text = String::from_utf8(whole.clone()).unwrap();
            assert!(!text.contains("swordfish"), "{text}");
            assert!(
                text.contains("debug") && text.contains("secretKeyRef"),
                "{text}"
            );
            assert!(text.contains(r#""value":"M3""#), "{text}");
            for chunk in [1, 2, 7, 64] {
                assert_eq!(
                    run_env(SecretBody::List, input, chunk).unwrap(),
                    whole,
                    "chunk {chunk}"
                );
            }
        }
        let watch = b"{\"type\":\"ADDED\",\"object\":{\"spec\":{\"containers\":[{\"env\":[{\"name\":\"X_PASSWORD\",\"value\":\"swordfish\"}]}]}}}\n";
        let out = run_env(SecretBody::Watch, watch, 3).unwrap();
        assert!(!String::from_utf8_lossy(&out).contains("swordfish"));
        assert!(out.ends_with(b"\n"));
        // Bounded and fail closed as the Secret rewriter is.
        assert!(run_env(SecretBody::Object, br#"{"spec":{"env":["#, 2).is_err());
    }

    #[test]
    fn bounded_and_fail_closed() {
        let big = format!(r#"{{"data":{{"k":"{}"}}}}"#, "A".repeat(5000));
        assert_eq!(
            run(SecretBody::Object, big.as_bytes(), 100),
            Err(SecretMaskError::TooLarge { limit: 4096 })
        );
        assert!(run(SecretBody::Object, br#"{"data":{"k":"YQ=="}"#, 3).is_err());
        assert!(run(SecretBody::Object, br#"{"data":]"#, 3).is_err());
        assert!(run(SecretBody::Object, &vec![b'['; MAX_DEPTH + 2], 64).is_err());
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn run(body: SecretBody, input: &[u8], cuts: &[usize]) -> Result<Vec<u8>, SecretMaskError> {
        let mask = |v: &str| format!("<{}>", v.len());
        let mut s = SecretStream::new(body, 1 << 16);
        let mut out = Vec::new();
        let mut rest = input;
        for &c in cuts {
            let (a, b) = rest.split_at(c.min(rest.len()));
            s.feed(a, &mask, &mut out)?;
            rest = b;
        }
        s.feed(rest, &mask, &mut out)?;
        s.finish()?;
        Ok(out)
    }

    proptest! {
        /// Chunk invariance, and no value survives: any list of secrets,
        /// split anywhere, comes out the same, with every value masked.
        #[test]
        fn list_masking_is_chunk_invariant(
            values in proptest::collection::vec("[a-zA-Z0-9]{1,12}", 1..5),
            cuts in proptest::collection::vec(0usize..40, 0..8),
        ) {
            let items: Vec<Value> = values
                .iter()
                .map(|v| serde_json::json!({"metadata": {"name": v}, "data": {"k": STANDARD.encode(format!("secret-{v}"))}}))
                .collect();
            let body = serde_json::to_vec(&serde_json::json!({"kind": "SecretList", "items": items})).unwrap();
            let whole = run(SecretBody::List, &body, &[]).unwrap();
            prop_assert_eq!(&run(SecretBody::List, &body, &cuts).unwrap(), &whole);
            let v: Value = serde_json::from_slice(&whole).unwrap();
            for (i, val) in values.iter().enumerate() {
                let expected = STANDARD.encode(format!("<{}>", val.len() + 7));
                prop_assert_eq!(v["items"][i]["data"]["k"].as_str(), Some(expected.as_str()));
            }
        }

        /// Arbitrary bytes never panic, in any mode.
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512), cut in 0usize..512) {
            for mode in [SecretBody::Object, SecretBody::List, SecretBody::Watch] {
                let _ = run(mode, &body, &[cut]);
            }
        }
    }
}
