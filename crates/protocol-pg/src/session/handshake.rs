//! The client's side of the startup: SSLRequest and TLS, GSSENCRequest,
//! CancelRequest, the StartupMessage and its parameters, the bearer token
//! and the hook's answer to it.

use super::*;

impl<H: Hook> Session<H> {
    /// The TLS handshake with the client completed.
    pub fn handle_client_tls(&mut self, _now: Instant) {
        if self.phase == Phase::TlsHandshake {
            self.client_tls = true;
            self.phase = Phase::Startup;
            self.process_client();
        }
    }

    /// The hook's answer to [`HookRequest::Authenticate`].
    pub fn handle_authenticated(
        &mut self,
        _now: Instant,
        result: Result<Authenticated<H::Principal>, Rejection>,
    ) {
        if !matches!(self.pending, Some(Pending::Auth)) || self.closing {
            return;
        }
        self.pending = None;
        match result {
            Ok(a) => {
                let filtered = match startup::filter(
                    &self.startup.params,
                    a.backend.allow.drop_unknown_startup_params,
                ) {
                    Ok(f) => f,
                    Err(refused) => {
                        let msg = format!("{}: connect without it", refused.reason);
                        self.close(
                            Some(wire::fatal("42501", &msg)),
                            Some(SessionError::Refused(format!(
                                "startup parameter \"{}\" refused",
                                refused.name
                            ))),
                        );
                        return;
                    }
                };
                self.backend_params = filtered.forward;
                for (name, value) in self.hook.session_settings(&a.principal) {
                    self.backend_params.insert(name.to_ascii_lowercase(), value);
                }
                self.startup_notices = filtered
                    .dropped
                    .iter()
                    .map(|name| {
                        wire::notice(&format!(
                            "the gateway dropped the startup parameter \"{name}\""
                        ))
                    })
                    .collect();
                self.principal = Some(Arc::new(a.principal));
                self.target = Some(a.backend.clone());
                self.phase = Phase::ConnectingBackend;
                self.outputs.push_back(Output::ConnectBackend(a.backend));
            }
            Err(Rejection::InvalidCredential(reason)) => {
                let msg = format!(
                    "password authentication failed for user \"{}\"",
                    self.startup.user()
                );
                self.close(
                    Some(wire::error_like(
                        b'E',
                        "FATAL",
                        "28P01",
                        &msg,
                        Some(&reason),
                    )),
                    Some(SessionError::Refused(reason)),
                );
            }
            Err(Rejection::NotAuthorized(reason)) => {
                self.close(
                    Some(wire::fatal("28000", &reason)),
                    Some(SessionError::Refused(reason)),
                );
            }
            Err(Rejection::TooManySessions(reason)) => {
                self.close(
                    Some(wire::fatal("53300", &reason)),
                    Some(SessionError::Refused(reason)),
                );
            }
        }
    }

    pub(super) fn on_startup_packet(&mut self, frame: &Frame) -> Result<(), SessionError> {
        let code = codec::startup_code(frame);
        let malformed = |reason: &str| {
            SessionError::Client(CodecError::Malformed {
                tag: 0,
                reason: reason.into(),
            })
        };
        match code {
            codec::SSL_REQUEST => {
                if frame.raw.len() != 8 {
                    return Err(malformed("SSLRequest of the wrong length"));
                }
                if self.cfg.tls_available && !self.client_tls && !self.client_in.is_empty() {
                    // Bytes after an SSLRequest, before the handshake, are
                    // plaintext a man in the middle may have injected
                    // (CVE-2021-23214): they are never read.
                    let msg = "received unencrypted data after SSL request";
                    self.close(
                        Some(wire::fatal("08P01", msg)),
                        Some(SessionError::Client(CodecError::Malformed {
                            tag: 0,
                            reason: msg.into(),
                        })),
                    );
                } else if self.cfg.tls_available && !self.client_tls {
                    self.to_client.push_back(Bytes::from_static(b"S"));
                    self.phase = Phase::TlsHandshake;
                    self.outputs.push_back(Output::StartClientTls);
                } else {
                    self.to_client.push_back(Bytes::from_static(b"N"));
                }
            }
            codec::GSSENC_REQUEST => {
                if frame.raw.len() != 8 {
                    return Err(malformed("GSSENCRequest of the wrong length"));
                }
                self.to_client.push_back(Bytes::from_static(b"N"));
            }
            codec::CANCEL_REQUEST => {
                let mut r = Reader::new(frame.body());
                let (_, pid, secret) = (r.i32(), r.i32(), r.i32());
                match (pid, secret, r.done()) {
                    (Some(pid), Some(secret), true) => {
                        self.outputs
                            .push_back(Output::Cancel(CancelKey { pid, secret }));
                        self.closing = true;
                    }
                    _ => return Err(malformed("CancelRequest of the wrong length")),
                }
            }
            _ if code >> 16 == 3 => return self.on_startup_message(frame, code),
            _ => {
                let msg = format!(
                    "unsupported frontend protocol {}.{}",
                    code >> 16,
                    code & 0xffff
                );
                self.close(
                    Some(wire::fatal("0A000", &msg)),
                    Some(SessionError::Refused(msg.clone())),
                );
            }
        }
        Ok(())
    }

    pub(super) fn on_startup_message(
        &mut self,
        frame: &Frame,
        code: i32,
    ) -> Result<(), SessionError> {
        let mut r = Reader::new(frame.body());
        let _ = r.i32();
        let mut params = std::collections::BTreeMap::new();
        let bad = || {
            SessionError::Client(CodecError::Malformed {
                tag: 0,
                reason: "startup parameters".into(),
            })
        };
        loop {
            let key = r.cstr().ok_or_else(bad)?;
            if key.is_empty() {
                break;
            }
            let value = r.cstr().ok_or_else(bad)?;
            params.insert(lossy(key), lossy(value));
        }
        if !r.done() {
            return Err(bad());
        }
        self.startup = StartupParams { params };
        if self.cfg.require_tls && !self.client_tls {
            let msg = "the gateway requires TLS: connect with sslmode=require";
            self.close(
                Some(wire::fatal("28000", msg)),
                Some(SessionError::Refused(msg.into())),
            );
            return Ok(());
        }
        if let Some(rep) = self.startup.get("replication")
            && !matches!(
                rep.to_ascii_lowercase().as_str(),
                "false" | "off" | "no" | "0"
            )
        {
            let msg = "replication connections are not supported by the gateway";
            self.close(
                Some(wire::fatal("0A000", msg)),
                Some(SessionError::Refused(msg.into())),
            );
            return Ok(());
        }
        if self.startup.user().is_empty() {
            let msg = "no PostgreSQL user name specified in startup packet";
            self.close(
                Some(wire::fatal("28000", msg)),
                Some(SessionError::Refused(msg.into())),
            );
            return Ok(());
        }
        if !self.client_tls && !self.cfg.loopback {
            let msg = "the gateway accepts a token only over TLS or on a loopback listener: connect with sslmode=require";
            self.close(
                Some(wire::fatal("28000", msg)),
                Some(SessionError::Refused(msg.into())),
            );
            return Ok(());
        }
        let minor = code & 0xffff;
        let unsupported: Vec<&String> = self
            .startup
            .params
            .keys()
            .filter(|k| k.starts_with("_pq_."))
            .collect();
        if minor > 0 || !unsupported.is_empty() {
            let mut body = Vec::new();
            body.extend_from_slice(&0i32.to_be_bytes());
            body.extend_from_slice(&i32::try_from(unsupported.len()).unwrap_or(0).to_be_bytes());
            for k in unsupported {
                body.extend_from_slice(k.as_bytes());
                body.push(0);
            }
            self.to_client.push_back(codec::build_frame(b'v', &body));
        }
        self.to_client.push_back(wire::auth_request(3));
        self.phase = Phase::Password;
        Ok(())
    }

    pub(super) fn on_password(&mut self, frame: &Frame) -> Result<(), SessionError> {
        if frame.tag != b'p' {
            return Err(SessionError::UnexpectedMessage {
                tag: frame.tag,
                from: "client",
                state: self.phase.name(),
            });
        }
        let mut r = Reader::new(frame.body());
        let credential =
            r.cstr()
                .filter(|_| r.done())
                .ok_or(SessionError::Client(CodecError::Malformed {
                    tag: b'p',
                    reason: "password message".into(),
                }))?;
        let credential = lossy(credential);
        self.phase = Phase::Authenticating;
        self.pending = Some(Pending::Auth);
        self.outputs
            .push_back(Output::Request(HookRequest::Authenticate {
                startup: self.startup.clone(),
                credential,
            }));
        Ok(())
    }
}
