//! The client's side of the startup: SSLRequest and TLS, GSSENCRequest,
//! CancelRequest, the StartupMessage and its parameters, the bearer token
//! and the hook's answer to it.

use super::*;

impl<H: Transform> Session<H> {
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
                            Some(backend::fatal("42501", &msg)),
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
                        backend::notice(&format!(
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
                    Some(backend::error_like(
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
                    Some(backend::fatal("28000", &reason)),
                    Some(SessionError::Refused(reason)),
                );
            }
            Err(Rejection::TooManySessions(reason)) => {
                self.close(
                    Some(backend::fatal("53300", &reason)),
                    Some(SessionError::Refused(reason)),
                );
            }
        }
    }

    pub(super) fn on_startup_packet(&mut self, frame: &Frame) -> Result<(), SessionError> {
        let code = frontend::startup_code(frame.body());
        match code {
            frontend::SSL_REQUEST => {
                frame
                    .decode::<frontend::SslRequest>()
                    .map_err(SessionError::Client)?;
                if self.cfg.tls_available && !self.client_tls && !self.client_in.is_empty() {
                    // Bytes after an SSLRequest, before the handshake, are
                    // plaintext a man in the middle may have injected
                    // (CVE-2021-23214): they are never read.
                    let msg = "received unencrypted data after SSL request";
                    self.close(
                        Some(backend::fatal("08P01", msg)),
                        Some(SessionError::Client(CodecError::Malformed {
                            tag: 0,
                            reason: msg.into(),
                        })),
                    );
                } else if self.cfg.tls_available && !self.client_tls {
                    self.to_client
                        .push_back(encode(&backend::SslResponse::Accept));
                    self.phase = Phase::TlsHandshake;
                    self.outputs.push_back(Output::StartClientTls);
                } else {
                    self.to_client.push_back(backend::ssl_refused());
                }
            }
            frontend::GSSENC_REQUEST => {
                frame
                    .decode::<frontend::GssEncRequest>()
                    .map_err(SessionError::Client)?;
                self.to_client.push_back(backend::gss_refused());
            }
            frontend::CANCEL_REQUEST => {
                let cancel = frame
                    .decode::<frontend::CancelRequest>()
                    .map_err(SessionError::Client)?;
                // The decoder reads protocol 3.0's 4-byte secret only.
                let secret = cancel.secret_key.as_i32().unwrap_or_default();
                self.outputs.push_back(Output::Cancel(CancelKey {
                    pid: cancel.pid,
                    secret,
                }));
                self.closing = true;
            }
            _ if code >> 16 == 3 => return self.on_startup_message(frame, code),
            _ => {
                let msg = format!(
                    "unsupported frontend protocol {}.{}",
                    code >> 16,
                    code & 0xffff
                );
                self.close(
                    Some(backend::fatal("0A000", &msg)),
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
        let message = frame
            .decode::<frontend::Startup>()
            .map_err(SessionError::Client)?;
        self.startup = StartupParams {
            params: message.parameters,
        };
        if self.cfg.require_tls && !self.client_tls {
            let msg = "the gateway requires TLS: connect with sslmode=require";
            self.close(
                Some(backend::fatal("28000", msg)),
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
                Some(backend::fatal("0A000", msg)),
                Some(SessionError::Refused(msg.into())),
            );
            return Ok(());
        }
        if self.startup.user().is_empty() {
            let msg = "no PostgreSQL user name specified in startup packet";
            self.close(
                Some(backend::fatal("28000", msg)),
                Some(SessionError::Refused(msg.into())),
            );
            return Ok(());
        }
        if !self.client_tls && !self.cfg.loopback {
            let msg = "the gateway accepts a token only over TLS or on a loopback listener: connect with sslmode=require";
            self.close(
                Some(backend::fatal("28000", msg)),
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
            let negotiate = backend::NegotiateProtocolVersion::new(
                0,
                unsupported.into_iter().cloned().collect(),
            );
            self.to_client.push_back(encode(&negotiate));
        }
        self.to_client
            .push_back(encode(&backend::Authentication::CleartextPassword));
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
        let credential = frame
            .decode::<frontend::Password>()
            .map_err(SessionError::Client)?
            .password;
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
