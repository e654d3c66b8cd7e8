//! Prometheus metrics, served on the admin listener's `/metrics`.
//!
//! - `portcullis_sessions_total`, `portcullis_sessions_active`
//! - `portcullis_commands_total{effect}` (allow, deny, review)
//! - `portcullis_masked_values_total{detector}`
//! - `portcullis_audit_write_seconds` (write-ahead records, until durable)
//! - `portcullis_backend_errors_total{sqlstate}`
//! - `portcullis_auth_failures_total`

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Installs the process-wide recorder (once) and returns its handle; `None`
/// if another recorder was installed first.
pub(crate) fn install() -> Option<PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<Option<PrometheusHandle>> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok().map(|()| handle)
        })
        .clone()
}
