//! The gateway's side of sharing approvals and sessions with other
//! replicas (see [`super::pg`]): it acts on notices from the shared
//! database, publishes its live sessions every second, sweeps its held
//! tickets, and answers the admin API's session calls for every replica.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::pg::Notice;
use crate::gateway::Gateway;

/// A boxed future, as the admin API's callbacks return.
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Starts the background work of a gateway whose store is shared; does
/// nothing for a store in memory.
pub(crate) fn run(gateway: &Arc<Gateway>) {
    let Some(pg) = gateway.approvals.shared() else {
        return;
    };
    let Some(mut notices) = gateway.approvals.take_notices() else {
        return;
    };
    let g = gateway.clone();
    tokio::spawn(async move {
        while let Some(notice) = notices.recv().await {
            match notice {
                Notice::Finished(id) => g.approvals.on_finished(&id).await,
                Notice::Kill {
                    replica,
                    session,
                    by,
                } if replica == g.approvals.replica() => {
                    g.kill(&session, &by);
                }
                Notice::Kill { .. } => {}
                Notice::Reconnected => g.approvals.sweep().await,
            }
        }
    });
    let g = gateway.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut n: u64 = 0;
        loop {
            tick.tick().await;
            n = n.wrapping_add(1);
            let now = super::unix_now();
            let live: Vec<(String, String, String, String, i64)> = g
                .sessions()
                .iter()
                .map(|s| {
                    let started = now.saturating_sub(s.started.elapsed().as_secs());
                    (
                        s.session.to_string(),
                        s.principal.id.clone(),
                        s.principal.kind.as_str().to_owned(),
                        s.connection.clone(),
                        i64::try_from(started).unwrap_or(i64::MAX),
                    )
                })
                .collect();
            if let Err(e) = pg.publish_sessions(&live).await {
                tracing::warn!(error = %e, "cannot publish the live sessions");
            }
            if n.is_multiple_of(3) {
                g.approvals.sweep().await;
            }
        }
    });
}

/// This gateway's live sessions, as the admin API lists them.
fn local_sessions(gateway: &Gateway, prefix: &str) -> Vec<serde_json::Value> {
    gateway
        .sessions()
        .iter()
        .map(|s| {
            serde_json::json!({
                "session": format!("{prefix}{}", s.session),
                "principal": s.principal.id,
                "kind": s.principal.kind.as_str(),
                "connection": s.connection,
                "seconds": s.started.elapsed().as_secs(),
            })
        })
        .collect()
}

/// The admin API's session list: this gateway's sessions and, when shared,
/// every other replica's (ids `<replica>/<session>`).
pub(crate) fn sessions(gateway: Arc<Gateway>) -> BoxFuture<Result<serde_json::Value, String>> {
    Box::pin(async move {
        let Some(pg) = gateway.approvals.shared() else {
            return Ok(serde_json::Value::Array(local_sessions(&gateway, "")));
        };
        let me = gateway.approvals.replica().to_owned();
        let mut all = local_sessions(&gateway, &format!("{me}/"));
        for row in pg.sessions().await.map_err(|e| e.to_string())? {
            if row.replica != me {
                all.push(serde_json::to_value(row).map_err(|e| e.to_string())?);
            }
        }
        Ok(serde_json::Value::Array(all))
    })
}

/// The admin API's kill: here, or through the shared database on the
/// replica that holds the session. False if no replica has it.
pub(crate) fn kill(
    gateway: Arc<Gateway>,
    id: String,
    by: String,
) -> BoxFuture<Result<bool, String>> {
    Box::pin(async move {
        let me = gateway.approvals.replica().to_owned();
        match id.split_once('/') {
            None => Ok(gateway.kill(&id, &by)),
            Some((replica, session)) if replica == me => Ok(gateway.kill(session, &by)),
            Some((replica, session)) => match gateway.approvals.shared() {
                Some(pg) => pg
                    .kill(replica, session, &by)
                    .await
                    .map_err(|e| e.to_string()),
                None => Ok(false),
            },
        }
    })
}
