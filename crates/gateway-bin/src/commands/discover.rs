//! `discover`: samples each table of a connection through the detectors and
//! proposes `[[masking.field]]` rules for the columns whose values they
//! recognise, so that an operator can give those columns a field rule (which
//! protects a value whatever the SQL; detectors alone can be encoded past).
//!
//! Reads at most `rows` rows per table, in a read-only transaction, with the
//! gateway's own backend credential over the sessions' TLS settings.

use std::collections::BTreeMap;
use std::path::Path;

use portcullis_pg::BackendTarget;
use tokio_postgres::SimpleQueryMessage;

/// What the detectors found in one column's sample.
#[derive(Debug, Default)]
struct ColumnHits {
    sampled: u64,
    /// Values with a finding, per detector.
    detectors: BTreeMap<String, u64>,
}

pub(crate) fn run(path: &Path, connection: &str, rows: u32) -> Result<(), String> {
    let config = super::load(path)?;
    let c = config
        .connections
        .iter()
        .find(|c| c.name.get_ref() == connection)
        .ok_or_else(|| format!("no connection named {connection:?} in {}", path.display()))?;
    let backend = crate::serve::backend_target(&config, c)?;
    let masker = crate::serve::build_masker(&config)?;
    let covered: Vec<portcullis_mask::FieldPattern> = config
        .masking
        .field
        .iter()
        .map(|f| portcullis_mask::FieldPattern::new(&f.name))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let found = rt.block_on(sample(&backend, &masker, rows))?;
    let mut proposed = 0;
    for ((schema, table, column), hits) in &found {
        let names = [
            column.clone(),
            format!("{table}.{column}"),
            format!("{schema}.{table}.{column}"),
        ];
        if hits.detectors.is_empty() || covered.iter().any(|g| names.iter().any(|n| g.matches(n))) {
            continue;
        }
        let (detector, n) = hits
            .detectors
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(d, n)| (d.as_str(), *n))
            .unwrap_or(("", 0));
        let rate = n.saturating_mul(100) / hits.sampled.max(1);
        println!(
            "# {schema}.{table}.{column}: {n} of {} sampled values match {detector} ({rate}%)",
            hits.sampled
        );
        println!("[[masking.field]]\nname = \"{schema}.{table}.{column}\"\n");
        proposed += 1;
    }
    if proposed == 0 {
        println!("# no column to propose: the detectors found nothing outside the field rules");
    }
    Ok(())
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

async fn sample(
    backend: &BackendTarget,
    masker: &portcullis_mask::Masker,
    rows: u32,
) -> Result<BTreeMap<(String, String, String), ColumnHits>, String> {
    let client = crate::catalog::connect(backend).await?;
    let err = |e: tokio_postgres::Error| format!("sampling the backend: {e}");
    let tables: Vec<(String, String)> = client
        .query(
            "SELECT n.nspname::text, c.relname::text FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p', 'm', 'f') \
             AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
             AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1, 2",
            &[],
        )
        .await
        .map_err(err)?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(err)?;
    client.batch_execute("BEGIN READ ONLY").await.map_err(err)?;
    let mut found: BTreeMap<(String, String, String), ColumnHits> = BTreeMap::new();
    for (schema, table) in tables {
        let sql = format!(
            "SELECT * FROM {}.{} LIMIT {rows}",
            quote(&schema),
            quote(&table)
        );
        // A table the credential may not read is skipped, not fatal.
        let messages = match client.simple_query(&sql).await {
            Ok(m) => m,
            Err(e) => {
                eprintln!("# skipped {schema}.{table}: {e}");
                client
                    .batch_execute("ROLLBACK; BEGIN READ ONLY")
                    .await
                    .map_err(err)?;
                continue;
            }
        };
        for m in messages {
            let SimpleQueryMessage::Row(row) = m else {
                continue;
            };
            for (i, col) in row.columns().iter().enumerate() {
                let Ok(Some(value)) = row.try_get(i) else {
                    continue;
                };
                let hits = found
                    .entry((schema.clone(), table.clone(), col.name().to_owned()))
                    .or_default();
                hits.sampled += 1;
                let masked = masker.mask(value.as_bytes());
                let mut seen: Vec<&str> = masked.findings().iter().map(|f| f.detector()).collect();
                seen.sort_unstable();
                seen.dedup();
                for d in seen {
                    *hits.detectors.entry(d.to_owned()).or_insert(0) += 1;
                }
            }
        }
    }
    client.batch_execute("ROLLBACK").await.map_err(err)?;
    Ok(found)
}
