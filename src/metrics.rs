//! Prometheus metrics, served at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// `result="ok"` or `result="error"` (or a webhook's own results).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

impl ResultLabel {
    pub fn of<T, E>(outcome: &Result<T, E>) -> Self {
        Self {
            result: if outcome.is_ok() { "ok" } else { "error" },
        }
    }
}

/// Every metric capstan exports.
pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<ResultLabel, Counter>,
    pub reconcile_seconds: Histogram,
    pub reloads: Family<ResultLabel, Counter>,
    pub runtime_operations: Family<ResultLabel, Counter>,
    pub git_fetch_errors: Counter,
    pub webhook_requests: Family<ResultLabel, Counter>,
    pub last_successful_apply: Gauge,
    pub in_sync: Gauge,
    pub haproxy_restarts: Family<ResultLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("capstan");
        let reconciles = Family::<ResultLabel, Counter>::default();
        let reconcile_seconds = Histogram::new([
            0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]);
        let reloads = Family::<ResultLabel, Counter>::default();
        let runtime_operations = Family::<ResultLabel, Counter>::default();
        let git_fetch_errors = Counter::default();
        let webhook_requests = Family::<ResultLabel, Counter>::default();
        let last_successful_apply = Gauge::default();
        let in_sync = Gauge::default();
        let haproxy_restarts = Family::<ResultLabel, Counter>::default();
        registry.register("reconciles", "Reconcile runs by result", reconciles.clone());
        registry.register(
            "reconcile_duration_seconds",
            "Duration of reconcile runs",
            reconcile_seconds.clone(),
        );
        registry.register("reloads", "HAProxy reloads by result", reloads.clone());
        registry.register(
            "runtime_operations",
            "HAProxy runtime API changes by result",
            runtime_operations.clone(),
        );
        registry.register(
            "git_fetch_errors",
            "Failed git fetches",
            git_fetch_errors.clone(),
        );
        registry.register(
            "webhook_requests",
            "Push webhook requests by result (accepted, unauthorized, ignored)",
            webhook_requests.clone(),
        );
        registry.register(
            "last_successful_apply_timestamp_seconds",
            "Unix time of the last apply that succeeded",
            last_successful_apply.clone(),
        );
        registry.register(
            "in_sync",
            "1 when HAProxy serves the latest valid desired state, else 0",
            in_sync.clone(),
        );
        registry.register(
            "haproxy_restarts",
            "Times the supervised HAProxy died and was started again, by result",
            haproxy_restarts.clone(),
        );
        Self {
            registry,
            reconciles,
            reconcile_seconds,
            reloads,
            runtime_operations,
            git_fetch_errors,
            webhook_requests,
            last_successful_apply,
            in_sync,
            haproxy_restarts,
        }
    }
}

impl Metrics {
    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_show_up_by_result() {
        let metrics = Metrics::default();
        metrics
            .reloads
            .get_or_create(&ResultLabel { result: "ok" })
            .inc();
        metrics.in_sync.set(1);
        let text = metrics.encode();
        assert!(
            text.contains("capstan_reloads_total{result=\"ok\"} 1"),
            "{text}"
        );
        assert!(text.contains("capstan_in_sync 1"), "{text}");
    }
}
