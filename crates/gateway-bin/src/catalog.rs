//! Which result columns come from a masked table column.
//!
//! A RowDescription names each column's source table (by OID) and attribute
//! number, so `SELECT api_key AS k` can be recognised as `api_key` whatever
//! its output name. This module reads the backend's catalog (with the
//! gateway's own backend credential) and keeps the set of (table OID,
//! attribute number) pairs whose column a field rule masks: `api_key`,
//! `*_token`, `customers.email` or `shop.customers.email` (globs,
//! ASCII case-insensitive).
//!
//! The same read gives the lineage walk its schema
//! ([`LineageSchema`]): every table and
//! view with its columns in order, which are masked, and each view's
//! definition.
//!
//! The set is read when the first session of a connection starts and again
//! after a statement that may have changed the schema (CREATE, ALTER).

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use portcullis_pg::{BackendAddr, BackendTarget, BackendTls};
use portcullis_policy::{CatalogValues, LineageSchema, Relations};

/// The masked columns of one backend.
#[derive(Debug, Default)]
pub(crate) struct MaskedColumns {
    set: RwLock<Option<HashSet<(u32, i16)>>>,
    /// The schema for the lineage walk; `None` until read, or when it
    /// cannot be read (then every result column is masked).
    schema: RwLock<Option<Arc<LineageSchema>>>,
    /// Each statement's masking, by its text, for the schema read now
    /// (emptied when the schema is read again, and when full).
    /// Each entry names the schema it was computed with (its address), so
    /// one computed just before a re-read is not used after it.
    cache: std::sync::Mutex<std::collections::HashMap<String, (usize, crate::lineage::Masking)>>,
    stale: AtomicBool,
    /// What the lineage makes of catalog views that show values
    /// (`[masking] catalog_views`).
    catalog_values: CatalogValues,
}

/// Statements whose masking is remembered.
const CACHE_ENTRIES: usize = 4096;

const QUERY: &str = "\
SELECT a.attrelid::oid::int8, a.attnum::int2, n.nspname::text, c.relname::text, a.attname::text, \
CASE WHEN c.relkind IN ('v', 'm') THEN pg_catalog.pg_get_viewdef(c.oid) END \
FROM pg_catalog.pg_attribute a \
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f') \
AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
ORDER BY a.attrelid, a.attnum";

impl MaskedColumns {
    /// Nothing read yet; catalog views that show values treated as said.
    pub(crate) fn new(catalog_values: CatalogValues) -> MaskedColumns {
        MaskedColumns {
            catalog_values,
            ..MaskedColumns::default()
        }
    }

    /// Whether a result column comes from a masked table column.
    pub(crate) fn contains(&self, table_oid: u32, attribute: i16) -> bool {
        table_oid != 0
            && self
                .set
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .as_ref()
                .is_some_and(|s| s.contains(&(table_oid, attribute)))
    }

    /// The lineage walk's schema, once read.
    pub(crate) fn schema(&self) -> Option<Arc<LineageSchema>> {
        self.schema
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The masking of `sql` (`active` when field rules are configured),
    /// remembered by its text until the schema is read again.
    pub(crate) fn masking(&self, sql: &str, active: bool) -> crate::lineage::Masking {
        if !active {
            return crate::lineage::Masking::clean();
        }
        let lock = || {
            self.cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        let schema = self.schema();
        let Some(schema) = schema else {
            return crate::lineage::Masking::of(sql, true, None);
        };
        let version = Arc::as_ptr(&schema) as usize;
        if let Some((v, m)) = lock().get(sql)
            && *v == version
        {
            return m.clone();
        }
        let m = crate::lineage::Masking::of(sql, true, Some(&schema));
        let mut cache = lock();
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(sql.to_owned(), (version, m.clone()));
        m
    }

    /// Asks for a re-read before the next statement.
    pub(crate) fn mark_stale(&self) {
        self.stale.store(true, Ordering::Relaxed);
    }

    /// Reads the catalog if it has not been read, or is stale.
    pub(crate) async fn ensure(
        &self,
        backend: &BackendTarget,
        patterns: &[String],
    ) -> Result<(), String> {
        let loaded = self
            .set
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some();
        if patterns.is_empty() || (loaded && !self.stale.swap(false, Ordering::Relaxed)) {
            return Ok(());
        }
        let (set, schema) = load(backend, patterns, self.catalog_values).await?;
        *self
            .set
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(set);
        *self
            .schema
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = schema.map(Arc::new);
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        Ok(())
    }
}

/// A connection of the gateway's own to the backend (for `portcullis
/// discover`), as the sessions connect: address, TLS settings and the
/// backend authentication they accept. The connection's task runs until the
/// client is dropped.
pub(crate) async fn connect(backend: &BackendTarget) -> Result<tokio_postgres::Client, String> {
    connect_as(backend, "portcullis-discover", None)
        .await
        .map(|(client, _)| client)
}

/// Relations a name in a statement can resolve to (tables, views,
/// sequences, foreign tables), in every schema but TOAST's and other
/// sessions' temporary ones.
const RELATIONS: &str = "\
SELECT n.nspname::text, c.relname::text \
FROM pg_catalog.pg_class c \
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') \
AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'";

/// The backend role's effective search_path and which schemas hold which
/// relations, read over a connection made as the sessions connect (same
/// role, same database, same TLS and authentication settings), so the path
/// is the one a new session starts with (`ALTER ROLE … SET search_path`,
/// `ALTER DATABASE … SET`, the server's default): `current_schemas(false)`
/// lists the schemas that exist and the role may use, `$user` expanded,
/// without the implicit `pg_catalog`.
pub(crate) async fn read_search_path(
    backend: &BackendTarget,
) -> Result<(Vec<String>, Relations), String> {
    let (client, connection) = connect_as(backend, "portcullis-search-path", None)
        .await
        .map_err(|e| format!("reading the backend's search_path: {e}"))?;
    let read = async {
        let row = client
            .query_one("SELECT pg_catalog.current_schemas(false)::text[]", &[])
            .await?;
        let path: Vec<String> = row.try_get(0)?;
        let mut relations = Relations::new();
        for row in client.query(RELATIONS, &[]).await? {
            let schema: String = row.try_get(0)?;
            let name: String = row.try_get(1)?;
            relations.add(schema, name);
        }
        Ok::<_, tokio_postgres::Error>((path, relations))
    }
    .await
    .map_err(|e| format!("reading the backend's search_path: {e}"));
    drop(client);
    let _ = connection.await;
    read
}

/// Any stream the gateway reaches the backend over.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// Connects as `application`, over `tls` (the sessions' client
/// configuration when `None`) if the backend uses TLS; returns the client
/// and its connection's task.
async fn connect_as(
    backend: &BackendTarget,
    application: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), String> {
    const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
    let mut config = tokio_postgres::Config::new();
    config
        .user(&backend.user)
        .password(&backend.password)
        .dbname(&backend.database)
        .application_name(application);
    match &backend.tls {
        BackendTls::Require { server_name } => {
            // tokio-postgres dials and asks for TLS; the guard sits on the
            // TLS stream.
            match &backend.addr {
                BackendAddr::Tcp { host, port } => config.host(host).port(*port),
                BackendAddr::Unix(path) => config.host_path(path.parent().unwrap_or(path)),
            };
            config
                .connect_timeout(TIMEOUT)
                .ssl_mode(tokio_postgres::config::SslMode::Require)
                .channel_binding(if backend.allow.require_channel_binding {
                    tokio_postgres::config::ChannelBinding::Require
                } else {
                    tokio_postgres::config::ChannelBinding::Prefer
                });
            let tls = crate::catalog_tls::RustlsConnect::new(
                match tls {
                    Some(t) => t,
                    None => crate::serve::client_tls()?,
                },
                server_name,
            )
            .checking(backend.allow.clone());
            let (client, connection) = config.connect(tls).await.map_err(|e| {
                let e = fail(e);
                if backend.allow.require_channel_binding {
                    format!(
                        "{e} (channel binding is required: the backend must offer \
                         SCRAM-SHA-256-PLUS over TLS)"
                    )
                } else {
                    e
                }
            })?;
            Ok((client, spawn(connection)))
        }
        BackendTls::Disable if backend.allow.require_channel_binding => Err(
            "connecting to the backend: channel binding is required, but the connection to the \
             backend does not use TLS"
                .to_owned(),
        ),
        BackendTls::Disable => {
            // Dialled here, so the guard sits on the socket.
            let dial = async {
                let stream: Box<dyn Io> = match &backend.addr {
                    BackendAddr::Tcp { host, port } => {
                        let s = tokio::net::TcpStream::connect((host.clone(), *port)).await?;
                        s.set_nodelay(true)?;
                        Box::new(s)
                    }
                    BackendAddr::Unix(path) => {
                        Box::new(tokio::net::UnixStream::connect(path).await?)
                    }
                };
                Ok::<_, std::io::Error>(stream)
            };
            let stream = tokio::time::timeout(TIMEOUT, dial)
                .await
                .map_err(|_| fail("timed out"))?
                .map_err(fail)?;
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
            let guarded = crate::catalog_tls::AuthGuard::new(stream, &backend.allow);
            let (client, connection) =
                tokio::time::timeout(TIMEOUT, config.connect_raw(guarded, tokio_postgres::NoTls))
                    .await
                    .map_err(|_| fail("timed out"))?
                    .map_err(fail)?;
            Ok((client, spawn(connection)))
        }
    }
}

/// The message of a failed connection, with its causes (tokio-postgres
/// says "error communicating with the server" and keeps the reason in
/// its source).
fn fail(e: impl Into<Box<dyn std::error::Error>>) -> String {
    let e = e.into();
    let mut out = format!("connecting to the backend: {e}");
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(&format!(": {s}"));
        source = s.source();
    }
    out
}

/// Runs a connection's task until its client is dropped.
fn spawn<F>(connection: F) -> tokio::task::JoinHandle<()>
where
    F: std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        let _ = connection.await;
    })
}

/// One relation's rows of the catalog query.
struct RelationRows {
    schema: String,
    name: String,
    columns: Vec<(String, bool)>,
    definition: Option<String>,
}

type Loaded = (HashSet<(u32, i16)>, Option<LineageSchema>);

async fn load(
    backend: &BackendTarget,
    patterns: &[String],
    catalog_values: CatalogValues,
) -> Result<Loaded, String> {
    load_with(backend, patterns, None, catalog_values).await
}

/// Reads the catalog over the session's TLS settings: `tls` is the client
/// configuration to use (the sessions' own when `None`).
async fn load_with(
    backend: &BackendTarget,
    patterns: &[String],
    tls: Option<Arc<rustls::ClientConfig>>,
    catalog_values: CatalogValues,
) -> Result<Loaded, String> {
    let (client, connection) = connect_as(backend, "portcullis-catalog", tls)
        .await
        .map_err(|e| format!("reading the backend's catalog: {e}"))?;
    let rows = client
        .query(QUERY, &[])
        .await
        .map_err(|e| format!("reading the backend's catalog: {e}"));
    drop(client);
    let _ = connection.await;
    let rows = rows?;
    let globs: Vec<portcullis_mask::FieldPattern> = patterns
        .iter()
        .map(|p| portcullis_mask::FieldPattern::new(p))
        .collect();
    let mut set = HashSet::new();
    let mut relations: BTreeMap<i64, RelationRows> = BTreeMap::new();
    for row in rows {
        let oid: i64 = row.try_get(0).map_err(|e| e.to_string())?;
        let attnum: i16 = row.try_get(1).map_err(|e| e.to_string())?;
        let schema: String = row.try_get(2).map_err(|e| e.to_string())?;
        let table: String = row.try_get(3).map_err(|e| e.to_string())?;
        let column: String = row.try_get(4).map_err(|e| e.to_string())?;
        let definition: Option<String> = row.try_get(5).map_err(|e| e.to_string())?;
        let names = [
            column.clone(),
            format!("{table}.{column}"),
            format!("{schema}.{table}.{column}"),
        ];
        let masked = globs.iter().any(|g| names.iter().any(|n| g.matches(n)));
        if masked {
            set.insert((u32::try_from(oid).unwrap_or(0), attnum));
        }
        relations
            .entry(oid)
            .or_insert_with(|| RelationRows {
                schema,
                name: table,
                columns: Vec::new(),
                definition,
            })
            .columns
            .push((column, masked));
    }
    let mut schema = LineageSchema::new();
    schema.set_catalog_values(catalog_values);
    for r in relations.into_values() {
        match &r.definition {
            Some(def) => schema.add_view(&r.schema, &r.name, r.columns, def),
            None => schema.add_table(&r.schema, &r.name, r.columns),
        }
    }
    Ok((set, Some(schema.finish())))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use portcullis_testkit::PgCluster;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    /// A PostgreSQL that accepts TLS with a fresh self-signed certificate for
    /// `localhost`, and a client configuration trusting only it.
    fn tls_cluster() -> (PgCluster, Arc<rustls::ClientConfig>) {
        let pg = PgCluster::start().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let dir = pg.data_dir();
        let owner = std::fs::metadata(&dir).unwrap();
        for (file, pem) in [
            ("server.crt", ck.cert.pem()),
            ("server.key", ck.signing_key.serialize_pem()),
        ] {
            let path = dir.join(file);
            std::fs::write(&path, pem).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            std::os::unix::fs::chown(&path, Some(owner.uid()), Some(owner.gid())).unwrap();
        }
        pg.execute(
            "ALTER SYSTEM SET ssl = on; SELECT pg_reload_conf(); \
             CREATE TABLE public.t (id int, api_key text); \
             CREATE VIEW public.v AS SELECT api_key AS k FROM public.t;",
        )
        .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ck.cert.der().clone()).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        (pg, Arc::new(config))
    }

    fn target(pg: &PgCluster, server_name: &str) -> BackendTarget {
        BackendTarget {
            addr: BackendAddr::Tcp {
                host: "127.0.0.1".to_owned(),
                port: pg.port(),
            },
            database: "postgres".to_owned(),
            user: pg.superuser().to_owned(),
            password: pg.password().to_owned(),
            tls: BackendTls::Require {
                server_name: server_name.to_owned(),
            },
            allow: Default::default(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_catalog_is_read_over_tls_and_an_untrusted_server_is_refused() {
        let (pg, trusted) = tls_cluster();
        let patterns = vec!["api_key".to_owned()];
        let (set, schema) = load_with(
            &target(&pg, "localhost"),
            &patterns,
            Some(trusted.clone()),
            CatalogValues::Mask,
        )
        .await
        .unwrap();
        assert_eq!(set.len(), 1, "{set:?}");
        let schema = schema.unwrap();
        assert!(schema.has_masked());
        let l = portcullis_policy::lineage("SELECT k FROM v", &schema);
        assert!(l[0].output.any_masked());
        // The certificate must name the server: another name is refused,
        // and so is a server no root vouches for.
        let err = load_with(
            &target(&pg, "db.example"),
            &patterns,
            Some(trusted),
            CatalogValues::Mask,
        )
        .await
        .unwrap_err();
        assert!(err.contains("catalog"), "{err}");
        let untrusted = crate::serve::client_tls().unwrap();
        assert!(
            load_with(
                &target(&pg, "localhost"),
                &patterns,
                Some(untrusted),
                CatalogValues::Mask
            )
            .await
            .is_err()
        );
    }

    /// The catalog connection accepts the backend authentication the
    /// sessions accept: SCRAM-SHA-256 unless the connection allows more.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_catalog_connection_obeys_allow_backend_auth() {
        let pg = PgCluster::start().unwrap();
        pg.execute(
            "SET password_encryption = 'md5'; \
             CREATE ROLE legacy LOGIN PASSWORD 'legacy-pw'; \
             CREATE TABLE public.t (id int, api_key text);",
        )
        .unwrap();
        let patterns = vec!["api_key".to_owned()];
        let plain = |user: &str, password: &str, allow: portcullis_pg::Allowances| {
            let mut t = target(&pg, "localhost");
            t.tls = BackendTls::Disable;
            t.user = user.to_owned();
            t.password = password.to_owned();
            t.allow = allow;
            t
        };
        let (su, su_pw) = (pg.superuser().to_owned(), pg.password().to_owned());
        // SCRAM: read.
        let (set, _) = load_with(
            &plain(&su, &su_pw, Default::default()),
            &patterns,
            None,
            CatalogValues::Mask,
        )
        .await
        .unwrap();
        assert_eq!(set.len(), 1);
        for (method, user, password, word) in [
            ("password", su.as_str(), su_pw.as_str(), "cleartext"),
            ("md5", "legacy", "legacy-pw", "MD5"),
            (
                "trust",
                su.as_str(),
                su_pw.as_str(),
                "without authentication",
            ),
        ] {
            pg.set_host_auth(method).unwrap();
            let err = load_with(
                &plain(user, password, Default::default()),
                &patterns,
                None,
                CatalogValues::Mask,
            )
            .await
            .unwrap_err();
            assert!(
                err.contains(word) && err.contains("allow_backend_auth"),
                "{method}: {err}"
            );
            let mut allow = portcullis_pg::Allowances::default();
            match method {
                "password" => allow.backend_cleartext = true,
                "md5" => allow.backend_md5 = true,
                _ => allow.backend_trust = true,
            }
            let (set, _) = load_with(
                &plain(user, password, allow),
                &patterns,
                None,
                CatalogValues::Mask,
            )
            .await
            .unwrap_or_else(|e| panic!("{method} allowed: {e}"));
            assert_eq!(set.len(), 1, "{method}");
        }
    }

    /// `channel_binding = "require"` holds the catalog connection too:
    /// SCRAM-SHA-256-PLUS bound to the server's certificate, or no catalog.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_catalog_connection_obeys_required_channel_binding() {
        let (pg, trusted) = tls_cluster();
        let patterns = vec!["api_key".to_owned()];
        let mut bound = target(&pg, "localhost");
        bound.allow.require_channel_binding = true;
        // PostgreSQL offers -PLUS over TLS; tokio-postgres, told to
        // require it, fails unless the stream gives the binding data.
        let (set, _) = load_with(
            &bound,
            &patterns,
            Some(trusted.clone()),
            CatalogValues::Mask,
        )
        .await
        .unwrap();
        assert_eq!(set.len(), 1);
        // Without TLS there is nothing to bind to.
        let mut plain = bound.clone();
        plain.tls = BackendTls::Disable;
        let err = load_with(&plain, &patterns, None, CatalogValues::Mask)
            .await
            .unwrap_err();
        assert!(
            err.contains("channel binding is required") && err.contains("does not use TLS"),
            "{err}"
        );
        // A server that asks for a cleartext password over TLS (allowed by
        // the connection, but not bound) is refused.
        pg.set_host_auth("password").unwrap();
        let mut cleartext = bound.clone();
        cleartext.allow.backend_cleartext = true;
        let err = load_with(&cleartext, &patterns, Some(trusted), CatalogValues::Mask)
            .await
            .unwrap_err();
        assert!(
            err.contains("channel binding") && err.contains("SCRAM-SHA-256-PLUS"),
            "{err}"
        );
    }
}
