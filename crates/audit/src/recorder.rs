//! Terminal session recordings in asciicast v2.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::Duration;

use serde::Serialize;

/// The header line of an asciicast v2 recording.
#[derive(Debug, Clone, Serialize)]
pub struct AsciicastHeader {
    version: u8,
    /// Terminal width in columns.
    pub width: u16,
    /// Terminal height in rows.
    pub height: u16,
    /// When the recording started, seconds since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
    /// The command recorded (e.g. the `kubectl exec` command line, masked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// A title.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Captured environment (`TERM`, `SHELL`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

impl AsciicastHeader {
    /// A header for a terminal of `width` × `height`.
    pub fn new(width: u16, height: u16) -> AsciicastHeader {
        AsciicastHeader {
            version: 2,
            width,
            height,
            timestamp: None,
            command: None,
            title: None,
            env: BTreeMap::new(),
        }
    }
}

/// A pending partial UTF-8 sequence of one stream, at most 3 bytes.
#[derive(Debug, Default)]
struct Utf8Carry {
    bytes: Vec<u8>,
}

impl Utf8Carry {
    /// Decodes `input` after the carried bytes; keeps an incomplete sequence
    /// at the end for the next call and replaces invalid bytes with U+FFFD.
    fn decode(&mut self, input: &[u8]) -> String {
        let mut buf = std::mem::take(&mut self.bytes);
        buf.extend_from_slice(input);
        let mut out = String::with_capacity(buf.len());
        let mut rest: &[u8] = &buf;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        Some(n) => {
                            out.push('\u{fffd}');
                            rest = after.get(n..).unwrap_or_default();
                        }
                        None => {
                            self.bytes = after.to_vec();
                            break;
                        }
                    }
                }
            }
        }
        out
    }

    fn finish(&mut self) -> Option<String> {
        if self.bytes.is_empty() {
            None
        } else {
            self.bytes.clear();
            Some("\u{fffd}".to_owned())
        }
    }
}

/// Writes a terminal session as asciicast v2: a header line, then one
/// `[time, code, data]` line per event, `code` being `"o"` (output), `"i"`
/// (input), `"r"` (resize, data `"COLSxROWS"`) or `"m"` (marker).
///
/// Times are given by the caller (elapsed since the session started), so the
/// recorder does no clock reads; a time earlier than the previous one is
/// written as the previous one. Bytes are decoded as UTF-8 per stream: a
/// character split across two chunks is written whole with the second, and
/// invalid bytes become U+FFFD. Output recorded here should be the masked
/// stream the client saw.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use portcullis_audit::{AsciicastHeader, Recorder};
///
/// let mut rec = Recorder::new(Vec::new(), &AsciicastHeader::new(80, 24))?;
/// rec.output(Duration::from_millis(10), b"$ ls\r\n")?;
/// rec.input(Duration::from_millis(500), b"exit\r")?;
/// let cast = String::from_utf8(rec.finish()?).unwrap();
/// assert!(cast.starts_with(r#"{"version":2,"width":80,"height":24}"#));
/// assert!(cast.contains(r#"[0.010000,"o","$ ls\r\n"]"#));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Recorder<W: Write> {
    out: W,
    last: Duration,
    output: Utf8Carry,
    input: Utf8Carry,
}

impl<W: Write> Recorder<W> {
    /// Writes the header line and returns the recorder.
    pub fn new(mut out: W, header: &AsciicastHeader) -> io::Result<Recorder<W>> {
        let mut line = serde_json::to_vec(header).map_err(io::Error::other)?;
        line.push(b'\n');
        out.write_all(&line)?;
        Ok(Recorder {
            out,
            last: Duration::ZERO,
            output: Utf8Carry::default(),
            input: Utf8Carry::default(),
        })
    }

    fn event(&mut self, at: Duration, code: &str, data: &str) -> io::Result<()> {
        if at > self.last {
            self.last = at;
        }
        let data = serde_json::to_string(data).map_err(io::Error::other)?;
        let secs = self.last.as_secs();
        let micros = self.last.subsec_micros();
        writeln!(self.out, "[{secs}.{micros:06},\"{code}\",{data}]")
    }

    /// Bytes the terminal showed (after masking).
    pub fn output(&mut self, at: Duration, bytes: &[u8]) -> io::Result<()> {
        let s = self.output.decode(bytes);
        if s.is_empty() {
            return Ok(());
        }
        self.event(at, "o", &s)
    }

    /// Bytes the user typed.
    pub fn input(&mut self, at: Duration, bytes: &[u8]) -> io::Result<()> {
        let s = self.input.decode(bytes);
        if s.is_empty() {
            return Ok(());
        }
        self.event(at, "i", &s)
    }

    /// The terminal was resized.
    pub fn resize(&mut self, at: Duration, cols: u16, rows: u16) -> io::Result<()> {
        self.event(at, "r", &format!("{cols}x{rows}"))
    }

    /// A marker (a label at a point in time).
    pub fn marker(&mut self, at: Duration, label: &str) -> io::Result<()> {
        self.event(at, "m", label)
    }

    /// Writes any incomplete trailing character as U+FFFD, flushes, and
    /// returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        let at = self.last;
        if let Some(s) = self.output.finish() {
            self.event(at, "o", &s)?;
        }
        if let Some(s) = self.input.finish() {
            self.event(at, "i", &s)?;
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_characters_are_joined() {
        let mut c = Utf8Carry::default();
        let bytes = "é€😀".as_bytes();
        let mut all = String::new();
        for b in bytes {
            all.push_str(&c.decode(&[*b]));
        }
        assert_eq!(all, "é€😀");
        assert_eq!(c.decode(b"a\xffb"), "a\u{fffd}b");
        assert_eq!(c.decode(b"\xe2\x82"), "");
        assert_eq!(c.finish().as_deref(), Some("\u{fffd}"));
    }
}
