//! The policy resolves table names written without a schema with the
//! session's real search_path (issue 16): the gateway as a real process in
//! front of the testkit's PostgreSQL, whose backend role has
//! `ALTER ROLE … SET search_path = shop, public` (the demo's seed), and
//! psql and tokio-postgres as the agents.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use portcullis_testkit::{Client, ClientOutput, PgCluster};

const SEED: &str = include_str!("../src/demo/seed.sql");
const BACKEND_PASSWORD: &str = "gw-backend-Pa55word-search-path";
/// Deletes from shop's orders are refused; anything else goes.
const POLICY: &str = r#"
default = "allow"
on_unparsed = "deny"

[[rule]]
id = "shop-orders"
effect = "deny"
reason = "orders of the shop are not deleted here"
when.sql.kind = "delete"
when.sql.writes = ["shop.orders"]
"#;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_portcullis")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn portcullis(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

struct Gateway {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    pg: PgCluster,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    fn start() -> Gateway {
        let pg = PgCluster::start().unwrap();
        let out = Client::psql(&pg.dsn())
            .unwrap()
            .args(["-v", "ON_ERROR_STOP=1", "-q", "-f", "-"])
            .arg(format!("--variable=gateway_password={BACKEND_PASSWORD}"))
            .stdin(SEED)
            .run()
            .unwrap();
        assert!(out.success(), "{}", out.stderr);
        // A second `orders`, in public, which the role's path finds second.
        pg.execute(
            "CREATE TABLE public.orders (id int PRIMARY KEY, note text); \
             INSERT INTO public.orders VALUES (1, 'one'), (2, 'two'), (3, 'three'); \
             GRANT SELECT, INSERT, UPDATE, DELETE ON public.orders TO portcullis_gateway;",
        )
        .unwrap();

        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (ok, _, err) = portcullis(d, &["token", "keygen", "--out", "gateway.pem"]);
        assert!(ok, "{err}");
        std::fs::write(d.join("policy.toml"), POLICY).unwrap();
        std::fs::write(d.join("backend.pw"), format!("{BACKEND_PASSWORD}\n")).unwrap();
        let port = free_port();
        let config = format!(
            r#"
[[listener]]
address = "127.0.0.1:{port}"

[[connection]]
name = "shop"
kind = "postgres"
host = "127.0.0.1"
port = {pg_port}
database = "postgres"
user = "portcullis_gateway"
password_file = "backend.pw"

[identity]
signing_key = "gateway.pem"

[policy]
file = "policy.toml"

[audit.jsonl]
dir = "audit"
chain = "gw-test"
durability = "flushed"
"#,
            pg_port = pg.port(),
        );
        std::fs::write(d.join("portcullis.toml"), config).unwrap();
        let (ok, out, err) = portcullis(d, &["check", "--config", "portcullis.toml"]);
        assert!(ok, "check failed: {out}{err}");
        let mut child = Command::new(bin())
            .args(["serve", "--config", "portcullis.toml"])
            .current_dir(d)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = String::new();
        loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("the gateway exited: {seen}"))
                .unwrap();
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("listening") || line.contains("serving") {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Gateway {
            child,
            dir,
            port,
            pg,
        }
    }

    fn dsn(&self) -> String {
        let (ok, out, err) = portcullis(
            self.dir.path(),
            &[
                "token",
                "issue",
                "--principal",
                "agent:claude",
                "--groups",
                "agents",
                "--ttl",
                "15m",
            ],
        );
        assert!(ok, "{err}");
        format!(
            "host=127.0.0.1 port={} user=shop dbname=postgres sslmode=disable password={}",
            self.port,
            out.trim()
        )
    }

    /// One psql session running `sql`, one simple query per line, errors
    /// not stopping it.
    fn psql(&self, sql: &str) -> ClientOutput {
        Client::psql(&self.dsn())
            .unwrap()
            .args(["-tA", "-f", "-"])
            .stdin(sql)
            .run()
            .unwrap()
    }

    fn ids(&self, table: &str) -> String {
        self.pg
            .execute(&format!(
                "SELECT string_agg(id::text, ',' ORDER BY id) FROM {table}"
            ))
            .unwrap()
            .trim()
            .to_owned()
    }
}

#[test]
fn unqualified_names_follow_the_sessions_search_path() {
    let gw = Gateway::start();
    let out = gw.psql(
        "SHOW search_path;\n\
         DELETE FROM orders WHERE id = 100;\n\
         SET search_path = public;\n\
         DELETE FROM orders WHERE id = 1;\n\
         SELECT set_config('search_path', 'shop', false);\n\
         DELETE FROM orders WHERE id = 101;\n\
         DELETE FROM public.orders WHERE id = 2;\n\
         RESET search_path;\n\
         DELETE FROM orders WHERE id = 102;\n\
         SET search_path = public;\n\
         BEGIN;\n\
         DELETE FROM orders WHERE id = 3;\n\
         ROLLBACK;\n\
         DELETE FROM orders WHERE id = 3;\n",
    );
    // The role's path, and the statements refused: the DELETE under it
    // (shop.orders), the one after set_config (unknown: shop.orders could
    // be the one), the one after RESET (the role's path again) and the one
    // after ROLLBACK (the SET before it could have been taken back).
    assert!(out.stdout.starts_with("shop, public\n"), "{}", out.stdout);
    let refusals = out
        .stderr
        .matches("orders of the shop are not deleted here")
        .count();
    assert_eq!(refusals, 4, "{}", out.stderr);
    // PostgreSQL agrees: shop's orders are all there; public's 1 and 2 are
    // gone (the DELETE under `SET search_path = public`, the qualified one),
    // and 3 was deleted and rolled back, then refused.
    assert_eq!(gw.ids("shop.orders"), "100,101,102,103,104");
    assert_eq!(gw.ids("public.orders"), "3");
}

#[test]
fn a_prepared_statement_is_refused_after_the_path_changes() {
    let gw = Gateway::start();
    let dsn = gw.dsn();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
            .batch_execute("SET search_path = public")
            .await
            .unwrap();
        // Prepared while `orders` is public's: allowed.
        let delete = client
            .prepare("DELETE FROM orders WHERE id = $1")
            .await
            .unwrap();
        assert_eq!(client.execute(&delete, &[&1i32]).await.unwrap(), 1);
        // The path changes; PostgreSQL would plan it again for shop's
        // orders, so the gateway refuses it.
        client
            .batch_execute("SET search_path = shop, public")
            .await
            .unwrap();
        let err = client.execute(&delete, &[&100i32]).await.unwrap_err();
        let msg = err
            .as_db_error()
            .map(|e| e.message().to_owned())
            .unwrap_or_default();
        assert!(msg.contains("prepare it again"), "{err:?}");
        // Prepared again, under the new path: shop's rule refuses it.
        let err = client
            .prepare("DELETE FROM orders WHERE id = $1")
            .await
            .unwrap_err();
        let msg = err
            .as_db_error()
            .map(|e| e.message().to_owned())
            .unwrap_or_default();
        assert!(msg.contains("not deleted here"), "{err:?}");
    });
    assert_eq!(gw.ids("shop.orders"), "100,101,102,103,104");
    assert_eq!(gw.ids("public.orders"), "2,3");
}
