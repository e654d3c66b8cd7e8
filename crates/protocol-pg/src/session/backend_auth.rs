//! The gateway's own login to the backend (SCRAM-SHA-256, with channel
//! binding over TLS; MD5, cleartext or trust only where allowed), and the
//! backend's startup messages up to the first ReadyForQuery.

use super::*;
use crate::messages::backend::Authentication;

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

impl<H: Transform> Session<H> {
    /// The backend connection is open. When the target asks for TLS the
    /// session sends an SSLRequest and, once the backend accepts, asks for
    /// the handshake ([`Output::StartBackendTls`]); otherwise the login
    /// begins.
    pub fn handle_backend_connected(&mut self, _now: Instant) {
        if self.phase != Phase::ConnectingBackend || self.closing {
            return;
        }
        let Some(target) = &self.target else { return };
        if let crate::hook::BackendTls::Require { .. } = target.tls {
            self.to_backend
                .push_back(encode(&frontend::SslRequest::new()));
            self.phase = Phase::BackendTlsRequest;
            self.process_backend();
            return;
        }
        self.send_backend_startup();
    }

    fn send_backend_startup(&mut self) {
        let Some(target) = &self.target else { return };
        let mut startup = frontend::Startup::new();
        startup.parameters = self.backend_params.clone();
        startup
            .parameters
            .insert("user".into(), target.user.clone());
        startup
            .parameters
            .insert("database".into(), target.database.clone());
        self.to_backend.push_back(encode(&startup));
        self.phase = Phase::BackendAuth;
        self.process_backend();
    }

    /// The backend's one-byte answer to the SSLRequest: `S` and nothing
    /// after it (bytes sent before the handshake would be read as if they
    /// came over TLS), or the session ends.
    pub(super) fn on_backend_tls_answer(&mut self) {
        let Some(&answer) = self.backend_in.first() else {
            return;
        };
        let server_name = match &self.target {
            Some(BackendTarget {
                tls: crate::hook::BackendTls::Require { server_name },
                ..
            }) => server_name.clone(),
            _ => String::new(),
        };
        if answer != b'S' {
            self.handle_backend_connect_failed("the backend does not accept TLS");
        } else if self.backend_in.len() > 1 {
            self.handle_backend_connect_failed("the backend sent data before the TLS handshake");
        } else {
            self.backend_in.clear();
            self.phase = Phase::BackendTlsHandshake;
            self.outputs
                .push_back(Output::StartBackendTls { server_name });
        }
    }

    /// The backend connection is TLS and this is the server's certificate
    /// (DER; empty when it sent none). After [`Output::StartBackendTls`] it
    /// completes the handshake and the login begins. When the backend
    /// offers SCRAM-SHA-256-PLUS, the gateway binds its SCRAM exchange to
    /// this certificate (`tls-server-end-point`), so a man in the middle
    /// holding another certificate cannot relay the login.
    pub fn handle_backend_tls(&mut self, certificate: &[u8]) {
        self.channel_binding = crate::binding::server_end_point(certificate);
        if self.phase == Phase::BackendTlsHandshake && !self.closing {
            self.send_backend_startup();
        }
    }

    /// The backend could not be reached.
    pub fn handle_backend_connect_failed(&mut self, reason: &str) {
        self.close(
            Some(backend::fatal(
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
            Some(backend::fatal(
                "08001",
                "the gateway could not log in to the backend",
            )),
            Some(SessionError::BackendAuth(reason)),
        );
    }

    pub(super) fn on_backend_auth(&mut self, frame: &Frame) -> Result<(), SessionError> {
        match frame.tag {
            b'R' => {}
            b'E' => {
                let detail = backend::parse_fields(b'E', frame.body())
                    .ok()
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
        let code = backend::authentication_code(frame.body()).ok_or_else(|| {
            SessionError::Backend(messages::malformed(b'R', "authentication code"))
        })?;
        // The requests pgwire models are decoded (and must be well formed);
        // any other (SCM, GSSAPI, SSPI) is refused below by its code.
        let request = match code {
            0 | 2 | 3 | 5 | 10 | 11 | 12 => Some(
                frame
                    .decode::<Authentication>()
                    .map_err(SessionError::Backend)?,
            ),
            _ => None,
        };
        let state = std::mem::replace(&mut self.backend_auth, BackendAuth::Done);
        match (request, state) {
            (
                Some(
                    Authentication::Ok
                    | Authentication::CleartextPassword
                    | Authentication::MD5Password(_),
                ),
                BackendAuth::Start,
            ) if allow.require_channel_binding => {
                let method = match code {
                    0 => "accepted the gateway without authentication (trust)",
                    3 => "asked for a cleartext password",
                    _ => "asked for an MD5 password hash",
                };
                self.backend_auth_failed(format!(
                    "channel binding is required (SCRAM-SHA-256-PLUS), but the backend {method}"
                ));
            }
            (Some(Authentication::Ok), BackendAuth::Start) if !allow.backend_trust => {
                self.backend_auth_failed(
                    "the backend accepted the gateway without authentication (trust), which \
                     this connection does not allow"
                        .into(),
                );
            }
            (Some(Authentication::CleartextPassword), BackendAuth::Start)
                if !allow.backend_cleartext =>
            {
                self.backend_auth_failed(
                    "the backend asked for a cleartext password, which this connection does not \
                     allow (SCRAM-SHA-256 only)"
                        .into(),
                );
            }
            (Some(Authentication::MD5Password(_)), BackendAuth::Start) if !allow.backend_md5 => {
                self.backend_auth_failed(
                    "the backend asked for an MD5 password hash, which this connection does not \
                     allow (SCRAM-SHA-256 only)"
                        .into(),
                );
            }
            (Some(Authentication::Ok), BackendAuth::Start | BackendAuth::Done) => {
                self.to_client.push_back(encode(&Authentication::Ok));
                self.to_client.extend(self.startup_notices.drain(..));
                self.phase = Phase::BackendStartup;
            }
            (Some(Authentication::CleartextPassword), BackendAuth::Start) => {
                self.to_backend
                    .push_back(encode(&frontend::Password::new(password.1)));
            }
            (Some(Authentication::MD5Password(salt)), BackendAuth::Start) => {
                // The decoder reads exactly 4 bytes of salt.
                let salt = <[u8; 4]>::try_from(salt.as_slice()).unwrap_or_default();
                let hash = md5_hash(password.0.as_bytes(), password.1.as_bytes(), salt);
                self.to_backend
                    .push_back(encode(&frontend::Password::new(hash)));
            }
            (Some(Authentication::SASL(mechanisms)), BackendAuth::Start) => {
                let offers_scram = mechanisms.iter().any(|m| m == "SCRAM-SHA-256");
                let offers_plus = mechanisms.iter().any(|m| m == "SCRAM-SHA-256-PLUS");
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
                let msg = frontend::SASLInitialResponse::new(mechanism.into(), Some(first));
                self.to_backend.push_back(encode(&msg));
                self.backend_auth = BackendAuth::Scram(Box::new(scram));
            }
            (Some(Authentication::SASLContinue(data)), BackendAuth::Scram(mut scram)) => {
                match scram.update(&data) {
                    Ok(()) => {
                        // `message()` is valid only after a successful `update`;
                        // a failed one leaves the state where it would panic.
                        let msg =
                            frontend::SASLResponse::new(Bytes::copy_from_slice(scram.message()));
                        self.to_backend.push_back(encode(&msg));
                        self.backend_auth = BackendAuth::ScramFinal(scram);
                    }
                    Err(e) => self.backend_auth_failed(format!("SCRAM exchange failed: {e}")),
                }
            }
            (Some(Authentication::SASLFinal(data)), BackendAuth::ScramFinal(mut scram)) => {
                match scram.finish(&data) {
                    Ok(()) => self.backend_auth = BackendAuth::Done,
                    Err(e) => {
                        self.backend_auth_failed(format!("SCRAM server signature invalid: {e}"))
                    }
                }
            }
            (_, _) => {
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
                let key = frame
                    .decode::<backend::BackendKeyData>()
                    .map_err(SessionError::Backend)?;
                // The decoder reads protocol 3.0's 4-byte secret only.
                let secret = key.secret_key.as_i32().unwrap_or_default();
                self.backend_key = Some(CancelKey {
                    pid: key.pid,
                    secret,
                });
                // The real process id (notifications carry it too), never
                // the backend's secret.
                let to_client = backend::backend_key_data(key.pid, self.gateway_key.secret);
                self.to_client.push_back(encode(&to_client));
            }
            b'Z' => {
                let ready = frame
                    .decode::<backend::ReadyForQuery>()
                    .map_err(SessionError::Backend)?;
                self.tx_status = ready.status as u8;
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
        let (name, value) =
            backend::parameter_status(frame.body()).map_err(SessionError::Backend)?;
        if let Err(reason) = startup::check_reported(&lossy(name), &lossy(value)) {
            self.to_backend
                .push_back(encode(&frontend::Terminate::new()));
            self.event(Event::ProtocolViolation {
                session: self.id,
                message: reason.clone(),
            });
            self.close(
                Some(backend::fatal(
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
