//! Database credentials: connection URIs with passwords, ADO.NET/JDBC/ODBC connection strings, and PostgreSQL password verifiers as stored in pg_authid.
//!
//! Plain data (see `spec.rs`); every pattern is checked by the catalogue tests
//! against `testdata/mask/db.toml`.

use crate::spec::{Category, DetectorSpec, Validator};

use super::PLACEHOLDERS;

/// The db detectors, in priority order.
pub(super) static DETECTORS: &[DetectorSpec] = &[
    DetectorSpec {
        id: "postgres-uri-password",
        category: Category::Secret,
        description: r#"Password in a PostgreSQL connection URI: postgres[ql][+driver]://user:PASSWORD@host"#,
        keywords: &["postgres"],
        pattern: r#"\bpostgres(?:ql)?(?:\+[a-z0-9]{1,20})?://[^\s:@/?#'\"]{0,64}:(?P<m>[^\s@/?#'\"]{1,128})@"#,
        validators: &[Validator::NotPlaceholder(PLACEHOLDERS)],
        max_len: 228,
    },
    DetectorSpec {
        id: "mysql-uri-password",
        category: Category::Secret,
        description: r#"Password in a MySQL / MariaDB connection URI: mysql[x][+driver]://user:PASSWORD@host (also mariadb://)"#,
        keywords: &["mysql", "mariadb"],
        pattern: r#"\b(?:mysqlx?|mariadb)(?:\+[a-z0-9]{1,20})?://[^\s:@/?#'\"]{0,64}:(?P<m>[^\s@/?#'\"]{1,128})@"#,
        validators: &[Validator::NotPlaceholder(PLACEHOLDERS)],
        max_len: 225,
    },
    DetectorSpec {
        id: "mongodb-uri-password",
        category: Category::Secret,
        description: r#"Password in a MongoDB connection URI: mongodb[+srv]://user:PASSWORD@host"#,
        keywords: &["mongodb"],
        pattern: r#"\bmongodb(?:\+srv)?://[^\s:@/?#'\"]{0,64}:(?P<m>[^\s@/?#'\"]{1,128})@"#,
        validators: &[Validator::NotPlaceholder(PLACEHOLDERS)],
        max_len: 208,
    },
    DetectorSpec {
        id: "redis-uri-password",
        category: Category::Secret,
        description: r#"Password in a Redis connection URI: redis[s]://[user]:PASSWORD@host"#,
        keywords: &["redis"],
        pattern: r#"\brediss?://[^\s:@/?#'\"]{0,64}:(?P<m>[^\s@/?#'\"]{1,128})@"#,
        validators: &[Validator::NotPlaceholder(PLACEHOLDERS)],
        max_len: 203,
    },
    DetectorSpec {
        id: "amqp-uri-password",
        category: Category::Secret,
        description: r#"Password in an AMQP (RabbitMQ) connection URI: amqp[s]://user:PASSWORD@host"#,
        keywords: &["amqp"],
        pattern: r#"\bamqps?://[^\s:@/?#'\"]{0,64}:(?P<m>[^\s@/?#'\"]{1,128})@"#,
        validators: &[Validator::NotPlaceholder(PLACEHOLDERS)],
        max_len: 202,
    },
    DetectorSpec {
        id: "connection-string-password",
        category: Category::Secret,
        description: r#"Password in an ADO.NET / JDBC (SQL Server) / ODBC connection string: ;Password=… or ;Pwd=…"#,
        keywords: &["password", "pwd"],
        pattern: r#"(?i);\s{0,2}(?:password|pwd)\s{0,2}=\s{0,2}(?P<m>(?-i:[^;\r\n'\"]{1,128}))"#,
        validators: &[Validator::NotPlaceholder(PLACEHOLDERS)],
        max_len: 144,
    },
    DetectorSpec {
        id: "postgres-scram-verifier",
        category: Category::Secret,
        description: r#"PostgreSQL SCRAM-SHA-256 password verifier as stored in pg_authid.rolpassword: SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>"#,
        keywords: &["scram-sha-256$"],
        pattern: r#"\bSCRAM-SHA-256\$[0-9]{1,7}:[A-Za-z0-9+/]{16,64}={0,2}\$[A-Za-z0-9+/]{43}=:[A-Za-z0-9+/]{43}="#,
        validators: &[],
        max_len: 178,
    },
    DetectorSpec {
        id: "postgres-md5-verifier",
        category: Category::Secret,
        description: r#"PostgreSQL MD5 password verifier as stored in pg_authid.rolpassword: md5 followed by 32 hex characters"#,
        keywords: &["md5"],
        pattern: r#"\bmd5[a-f0-9]{32}\b"#,
        validators: &[],
        max_len: 35,
    },
    DetectorSpec {
        id: "sql-password-literal",
        category: Category::Secret,
        description: r#"Password literal in SQL: CREATE/ALTER ROLE|USER … [ENCRYPTED] PASSWORD '…' (PostgreSQL) or IDENTIFIED BY '…' (MySQL, Oracle)"#,
        keywords: &["password", "identified"],
        pattern: r#"(?i)\b(?:password|identified\s{1,3}by)\s{1,3}'(?P<m>[^'\r\n]{1,128})'"#,
        validators: &[Validator::NotPlaceholder(PLACEHOLDERS)],
        max_len: 148,
    },
    DetectorSpec {
        id: "url-basic-auth-password",
        category: Category::Secret,
        description: r#"Password embedded in a URL's userinfo: http(s)/ftp/sftp/ssh/git/smtp/imap/ldap/ws://user:PASSWORD@host"#,
        keywords: &["://"],
        pattern: r#"\b(?:https?|ftps?|sftp|ssh|git|smtps?|imaps?|pop3s?|ldaps?|wss?|svn)://[^\s:@/?#'\"]{0,64}:(?P<m>[^\s@/?#'\"]{1,128})@"#,
        validators: &[Validator::NotPlaceholder(PLACEHOLDERS)],
        max_len: 202,
    },
    DetectorSpec {
        id: "uri-credentials",
        category: Category::Secret,
        description: r#"Password in the userinfo of a URI of another database, broker or service scheme: neo4j(+s)/bolt, clickhouse, couchbase(s), cassandra, cockroachdb, mssql/sqlserver, oracle, db2, snowflake, jdbc:*, nats, kafka, mqtt(s), stomp(s), memcached, elasticsearch/opensearch, influxdb, rtsp, smb, sip, socks5, telnet, vnc, rsync, s3 … (scheme://user:PASSWORD@host)"#,
        keywords: &["://"],
        pattern: r#"(?i)\b(?:neo4j(?:\+s|\+ssc)?|bolt(?:\+s|\+ssc)?|clickhouse|couchbases?|cassandra|cockroachdb|mssql|sqlserver|oracle|db2|snowflake|jdbc:[a-z0-9]{2,20}|nats|tls|kafka|mqtts?|stomps?|memcached?|elasticsearch|opensearch|influxdb|rtsps?|smb|sips?|socks[45]h?|telnet|vnc|rsync|s3|gs|webdav|davs?|xmpp|irc|ircs|rediss?\+sentinel|sentinel|zookeeper|etcd|consul|vault|minio)://[^\s:@/?#'\"]{1,64}:(?P<m>(?-i:[^\s@/?#'\"]{1,128}))@"#,
        validators: &[
            Validator::NotPlaceholder(PLACEHOLDERS),
            Validator::NoPlaceholderText,
        ],
        max_len: 222,
    },
];
