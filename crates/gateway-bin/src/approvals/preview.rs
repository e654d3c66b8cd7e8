//! A held write's preview: how many rows the planner expects it to touch.
//!
//! The statement is never run. It is only `EXPLAIN`ed (without `ANALYZE`),
//! on a connection of the gateway's own to the backend (the same injected
//! credential and TLS as the sessions), inside a `READ ONLY` transaction
//! with a short `statement_timeout`, through the extended protocol (which
//! takes exactly one statement). Only a single `INSERT`, `UPDATE`,
//! `DELETE` or `MERGE` without bound parameters is previewed; anything
//! else, or any error, leaves the request without a preview.

use std::collections::BTreeMap;
use std::time::Duration;

use portcullis_pg::BackendTarget;

/// How long the planner may take.
const PLAN_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether a statement with these facts is cheap and safe to preview.
pub(crate) fn previewable(facts: &BTreeMap<String, serde_json::Value>) -> bool {
    let Some(serde_json::Value::Array(statements)) = facts.get("statements") else {
        return false;
    };
    let [only] = statements.as_slice() else {
        return false;
    };
    matches!(
        only.get("kind").and_then(|k| k.as_str()),
        Some("insert" | "update" | "delete" | "merge")
    )
}

/// The planner's estimate for `sql`, as a sentence for the approver.
pub(crate) async fn estimate(backend: &BackendTarget, sql: &str) -> Result<String, String> {
    let client = crate::catalog::connect(backend).await?;
    let work = async {
        client
            .batch_execute(&format!(
                "BEGIN READ ONLY; SET LOCAL statement_timeout = {}",
                PLAN_TIMEOUT.as_millis()
            ))
            .await
            .map_err(|e| format!("preview: {e}"))?;
        let explained = client
            .query_one(&format!("EXPLAIN (FORMAT JSON) {sql}"), &[])
            .await
            .map_err(|e| format!("preview: {e}"));
        let _ = client.batch_execute("ROLLBACK").await;
        let JsonText(text) = explained?.try_get(0).map_err(|e| format!("preview: {e}"))?;
        let plan: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("preview: {e}"))?;
        describe(&plan)
    };
    match tokio::time::timeout(PLAN_TIMEOUT * 2, work).await {
        Ok(r) => r,
        Err(_) => Err("preview: the planner took too long".to_owned()),
    }
}

/// A `json` value's text.
struct JsonText(String);

impl<'a> tokio_postgres::types::FromSql<'a> for JsonText {
    fn from_sql(
        _: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(JsonText(std::str::from_utf8(raw)?.to_owned()))
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        *ty == tokio_postgres::types::Type::JSON
    }
}

/// "DELETE on orders: about 5 rows (planner's estimate, not run)".
fn describe(plan: &serde_json::Value) -> Result<String, String> {
    let top = plan
        .get(0)
        .and_then(|p| p.get("Plan"))
        .ok_or("preview: EXPLAIN's answer has no plan")?;
    let operation = top
        .get("Operation")
        .and_then(|o| o.as_str())
        .unwrap_or("statement");
    let relation = top
        .get("Relation Name")
        .and_then(|o| o.as_str())
        .unwrap_or("?");
    // A ModifyTable's own estimate is of the rows it returns; the rows it
    // changes are its input's.
    let rows = top
        .get("Plans")
        .and_then(|p| p.get(0))
        .and_then(|p| p.get("Plan Rows"))
        .or_else(|| top.get("Plan Rows"))
        .and_then(serde_json::Value::as_f64)
        .ok_or("preview: EXPLAIN's answer has no row estimate")?;
    Ok(format!(
        "{} on {relation}: about {rows:.0} row{} (the planner's estimate; not run)",
        operation.to_uppercase(),
        if (rows - 1.0).abs() < f64::EPSILON {
            ""
        } else {
            "s"
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_single_writes_are_previewed() {
        let facts = |v: serde_json::Value| -> BTreeMap<String, serde_json::Value> {
            [("statements".to_owned(), v)].into_iter().collect()
        };
        assert!(previewable(&facts(serde_json::json!([{"kind": "delete"}]))));
        assert!(!previewable(&facts(
            serde_json::json!([{"kind": "select"}])
        )));
        assert!(!previewable(&facts(
            serde_json::json!([{"kind": "delete"}, {"kind": "delete"}])
        )));
        assert!(!previewable(&BTreeMap::new()));
    }

    #[test]
    fn the_rows_are_the_modify_tables_input() {
        let plan = serde_json::json!([{"Plan": {
            "Node Type": "ModifyTable", "Operation": "Delete", "Relation Name": "orders",
            "Plan Rows": 0, "Plans": [{"Node Type": "Seq Scan", "Plan Rows": 5}]
        }}]);
        assert_eq!(
            describe(&plan).unwrap(),
            "DELETE on orders: about 5 rows (the planner's estimate; not run)"
        );
    }
}
