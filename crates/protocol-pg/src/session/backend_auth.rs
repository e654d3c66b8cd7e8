//! The gateway's own login to the backend (SCRAM-SHA-256, with channel
//! binding over TLS; MD5, cleartext or trust only where allowed), and the
//! backend's startup messages up to the first ReadyForQuery.

use super::*;

pub(super) enum BackendAuth {
    Start,
    Scram(Box<ScramSha256>),
    ScramFinal(Box<ScramSha256>),
    Done,
}

impl std::fmt::Debug for BackendAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackendAuth::Start => "Start",
            BackendAuth::Scram(_) => "Scram",
            BackendAuth::ScramFinal(_) => "ScramFinal",
            BackendAuth::Done => "Done",
        })
    }
}

impl<H: Hook> Session<H> {
    /// The backend connection is open (TLS done if asked).
    pub fn handle_backend_connected(&mut self, _now: Instant) {
        if self.phase != Phase::ConnectingBackend || self.closing {
            return;
        }
        let Some(target) = &self.target else { return };
        let mut startup = Startup::new();
        startup.parameters = self.backend_params.clone();
        startup
            .parameters
            .insert("user".into(), target.user.clone());
        startup
            .parameters
            .insert("database".into(), target.database.clone());
        self.to_backend.push_back(codec::encode(&startup));
        self.phase = Phase::BackendAuth;
        self.process_backend();
    }

    /// The backend connection is TLS and this is the server's certificate
    /// (DER); call it before [`Session::handle_backend_connected`]. When the
    /// backend offers SCRAM-SHA-256-PLUS, the gateway binds its SCRAM
    /// exchange to this certificate (`tls-server-end-point`), so a man in
    /// the middle holding another certificate cannot relay the login.
    pub fn handle_backend_tls(&mut self, certificate: &[u8]) {
        self.channel_binding = crate::binding::server_end_point(certificate);
    }

    /// The backend could not be reached.
    pub fn handle_backend_connect_failed(&mut self, reason: &str) {
        self.close(
            Some(wire::fatal(
                "08001",
                "the gateway could not connect to the backend",
            )),
            Some(SessionError::Refused(format!(
                "backend connection failed: {reason}"
            ))),
        );
    }

    pub(super) fn backend_auth_failed(&mut self, reason: String) {
        self.close(
            Some(wire::fatal(
                "08001",
                "the gateway could not log in to the backend",
            )),
            Some(SessionError::BackendAuth(reason)),
        );
    }

    pub(super) fn on_backend_auth(&mut self, frame: &Frame) -> Result<(), SessionError> {
        let malformed = |reason: &str| {
            SessionError::Backend(CodecError::Malformed {
                tag: b'R',
                reason: reason.into(),
            })
        };
        match frame.tag {
            b'R' => {}
            b'E' => {
                let detail = wire::parse_fields(frame.body())
                    .and_then(|f| {
                        f.into_iter()
                            .find(|(c, _)| *c == b'M')
                            .map(|(_, m)| lossy(m))
                    })
                    .unwrap_or_default();
                self.backend_auth_failed(detail);
                return Ok(());
            }
            b'v' => return Ok(()),
            tag => {
                return Err(SessionError::UnexpectedMessage {
                    tag,
                    from: "backend",
                    state: self.phase.name(),
                });
            }
        }
        let password = self
            .target
            .as_ref()
            .map(|t| (t.user.clone(), t.password.clone()))
            .unwrap_or_default();
        let allow = self
            .target
            .as_ref()
            .map(|t| t.allow.clone())
            .unwrap_or_default();
        let mut r = Reader::new(frame.body());
        let code = r.i32().ok_or_else(|| malformed("authentication code"))?;
        let state = std::mem::replace(&mut self.backend_auth, BackendAuth::Done);
        match (code, state) {
            (0 | 3 | 5, BackendAuth::Start) if allow.require_channel_binding => {
                let method = match code {
                    0 => "accepted the gateway without authentication (trust)",
                    3 => "asked for a cleartext password",
                    _ => "asked for an MD5 password hash",
                };
                self.backend_auth_failed(format!(
                    "channel binding is required (SCRAM-SHA-256-PLUS), but the backend {method}"
                ));
            }
            (0, BackendAuth::Start) if !allow.backend_trust => {
                self.backend_auth_failed(
                    "the backend accepted the gateway without authentication (trust), which \
                     this connection does not allow"
                        .into(),
                );
            }
            (3, BackendAuth::Start) if !allow.backend_cleartext => {
                self.backend_auth_failed(
                    "the backend asked for a cleartext password, which this connection does not \
                     allow (SCRAM-SHA-256 only)"
                        .into(),
                );
            }
            (5, BackendAuth::Start) if !allow.backend_md5 => {
                self.backend_auth_failed(
                    "the backend asked for an MD5 password hash, which this connection does not \
                     allow (SCRAM-SHA-256 only)"
                        .into(),
                );
            }
            (0, BackendAuth::Start | BackendAuth::Done) => {
                self.to_client.push_back(wire::auth_request(0));
                self.to_client.extend(self.startup_notices.drain(..));
                self.phase = Phase::BackendStartup;
            }
            (3, BackendAuth::Start) => {
                self.to_backend
                    .push_back(codec::encode(&Password::new(password.1)));
            }
            (5, BackendAuth::Start) => {
                let salt = r
                    .bytes(4)
                    .filter(|_| r.done())
                    .ok_or_else(|| malformed("md5 salt"))?;
                let salt = [
                    salt.first().copied().unwrap_or(0),
                    salt.get(1).copied().unwrap_or(0),
                    salt.get(2).copied().unwrap_or(0),
                    salt.get(3).copied().unwrap_or(0),
                ];
                let hash = md5_hash(password.0.as_bytes(), password.1.as_bytes(), salt);
                self.to_backend
                    .push_back(codec::encode(&Password::new(hash)));
            }
            (10, BackendAuth::Start) => {
                let (mut offers_scram, mut offers_plus) = (false, false);
                while let Some(m) = r.cstr() {
                    if m.is_empty() {
                        break;
                    }
                    offers_scram |= m == b"SCRAM-SHA-256";
                    offers_plus |= m == b"SCRAM-SHA-256-PLUS";
                }
                if allow.require_channel_binding {
                    let refusal = match (&self.channel_binding, offers_plus) {
                        (Some(_), true) => None,
                        (Some(_), false) => Some(
                            "the backend does not offer SCRAM-SHA-256-PLUS (is it PostgreSQL 11 or \
                             later, built with TLS support?)",
                        ),
                        (None, _) => Some(match self.target.as_ref().map(|t| &t.tls) {
                            Some(crate::hook::BackendTls::Require { .. }) => {
                                "the backend's certificate allows no tls-server-end-point \
                                 binding (its signature algorithm has no hash, e.g. Ed25519)"
                            }
                            _ => "the connection to the backend does not use TLS",
                        }),
                    };
                    if let Some(why) = refusal {
                        self.backend_auth_failed(format!(
                            "channel binding is required (SCRAM-SHA-256-PLUS), but {why}"
                        ));
                        return Ok(());
                    }
                }
                let (mechanism, binding) = match (&self.channel_binding, offers_plus) {
                    (Some(data), true) => (
                        "SCRAM-SHA-256-PLUS",
                        ChannelBinding::tls_server_end_point(data.clone()),
                    ),
                    // Over TLS without PLUS on offer: say the gateway could
                    // bind, so a server that does support it detects that
                    // its offer was stripped.
                    (Some(_), false) => ("SCRAM-SHA-256", ChannelBinding::unrequested()),
                    (None, _) => ("SCRAM-SHA-256", ChannelBinding::unsupported()),
                };
                if !offers_scram && mechanism == "SCRAM-SHA-256" {
                    self.backend_auth_failed(
                        "the backend offers no supported SASL mechanism".into(),
                    );
                    return Ok(());
                }
                let scram = ScramSha256::new(password.1.as_bytes(), binding);
                // `message()` is valid right after `new()`.
                let first = Bytes::copy_from_slice(scram.message());
                let msg = SASLInitialResponse::new(mechanism.into(), Some(first));
                self.to_backend.push_back(codec::encode(&msg));
                self.backend_auth = BackendAuth::Scram(Box::new(scram));
            }
            (11, BackendAuth::Scram(mut scram)) => match scram.update(r.rest()) {
                Ok(()) => {
                    // `message()` is valid only after a successful `update`;
                    // a failed one leaves the state where it would panic.
                    let msg = SASLResponse::new(Bytes::copy_from_slice(scram.message()));
                    self.to_backend.push_back(codec::encode(&msg));
                    self.backend_auth = BackendAuth::ScramFinal(scram);
                }
                Err(e) => self.backend_auth_failed(format!("SCRAM exchange failed: {e}")),
            },
            (12, BackendAuth::ScramFinal(mut scram)) => match scram.finish(r.rest()) {
                Ok(()) => self.backend_auth = BackendAuth::Done,
                Err(e) => self.backend_auth_failed(format!("SCRAM server signature invalid: {e}")),
            },
            (code, _) => {
                self.backend_auth_failed(format!(
                    "unsupported or out-of-order authentication request {code}"
                ));
            }
        }
        Ok(())
    }

    pub(super) fn on_backend_startup(&mut self, frame: Frame) -> Result<(), SessionError> {
        match frame.tag {
            b'S' => self.on_parameter_status(frame)?,
            b'K' => {
                let mut r = Reader::new(frame.body());
                match (r.i32(), r.i32(), r.done()) {
                    (Some(pid), Some(secret), true) => {
                        // The real process id (notifications carry it too),
                        // never the backend's secret.
                        self.backend_key = Some(CancelKey { pid, secret });
                        self.to_client
                            .push_back(wire::backend_key_data(pid, self.gateway_key.secret));
                    }
                    _ => {
                        return Err(SessionError::Backend(CodecError::Malformed {
                            tag: b'K',
                            reason: "backend key data".into(),
                        }));
                    }
                }
            }
            b'Z' => {
                self.tx_status = frame.body().first().copied().unwrap_or(b'I');
                self.to_client.push_back(frame.raw);
                self.phase = Phase::Ready;
                self.event(Event::SessionStarted {
                    session: self.id,
                    startup: self.startup.clone(),
                });
                self.process_client();
            }
            b'N' => {
                let out = self.transform_error_like(&frame, None, None)?;
                self.to_client.push_back(out);
            }
            b'E' => {
                let out = self.transform_error_like(&frame, None, None)?;
                self.close(
                    Some(out),
                    Some(SessionError::Refused(
                        "the backend refused the session".into(),
                    )),
                );
            }
            b'v' => {}
            tag => {
                return Err(SessionError::UnexpectedMessage {
                    tag,
                    from: "backend",
                    state: self.phase.name(),
                });
            }
        }
        Ok(())
    }

    /// A ParameterStatus: forwarded when the analysis handles the reported
    /// value; otherwise the session ends before anything more is forwarded.
    pub(super) fn on_parameter_status(&mut self, frame: Frame) -> Result<(), SessionError> {
        let mut r = Reader::new(frame.body());
        let (Some(name), Some(value), true) = (r.cstr(), r.cstr(), r.done()) else {
            return Err(SessionError::Backend(CodecError::Malformed {
                tag: b'S',
                reason: "parameter status".into(),
            }));
        };
        if let Err(reason) = startup::check_reported(&lossy(name), &lossy(value)) {
            self.to_backend.push_back(codec::build_frame(b'X', &[]));
            self.event(Event::ProtocolViolation {
                session: self.id,
                message: reason.clone(),
            });
            self.close(
                Some(wire::fatal(
                    "42501",
                    &format!("terminating connection: {reason}"),
                )),
                Some(SessionError::Terminated(reason)),
            );
            return Ok(());
        }
        let out = self.transform_parameter_status(frame.clone(), name, value);
        self.to_client.push_back(out);
        Ok(())
    }
}
