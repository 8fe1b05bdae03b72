//! Prometheus metrics: requests by route and status with latency histograms, plus the command
//! service's counters. Rendered in the text exposition format at `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Duration;

use axum::http::Method;
use planledger_service::CommandService;
use planledger_store::Expiring;

const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Debug, Default)]
pub struct HttpMetrics {
    requests: Mutex<BTreeMap<(String, String, u16), Histogram>>,
}

impl HttpMetrics {
    pub fn observe(&self, method: &Method, route: &str, status: u16, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let h = requests.entry((method.to_string(), route.to_owned(), status)).or_default();
        h.count += 1;
        h.sum += seconds;
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                h.counts[i] += 1;
            }
        }
    }

    pub fn render(&self, service: &CommandService) -> String {
        let mut out = String::new();
        let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner()).clone();
        out.push_str("# HELP planledger_http_requests_total HTTP requests by route and status.\n");
        out.push_str("# TYPE planledger_http_requests_total counter\n");
        for ((method, route, status), h) in &requests {
            let _ = writeln!(
                out,
                "planledger_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {}",
                h.count
            );
        }
        out.push_str("# HELP planledger_http_request_duration_seconds HTTP request latency by route and status.\n");
        out.push_str("# TYPE planledger_http_request_duration_seconds histogram\n");
        for ((method, route, status), h) in &requests {
            let labels = format!("method=\"{method}\",route=\"{route}\",status=\"{status}\"");
            for (bound, count) in BUCKETS.iter().zip(h.counts) {
                let _ =
                    writeln!(out, "planledger_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {count}");
            }
            let _ =
                writeln!(out, "planledger_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "planledger_http_request_duration_seconds_sum{{{labels}}} {}", h.sum);
            let _ = writeln!(out, "planledger_http_request_duration_seconds_count{{{labels}}} {}", h.count);
        }
        let m = service.metrics();
        let counters = [
            (
                "planledger_commands_total",
                "Commands submitted to the command path.",
                m.commands.load(Ordering::Relaxed),
            ),
            ("planledger_batches_total", "Batches decided by store workers.", m.batches.load(Ordering::Relaxed)),
            ("planledger_appends_total", "Transactions that appended events.", m.appends.load(Ordering::Relaxed)),
            ("planledger_appended_events_total", "Events appended.", m.appended_events.load(Ordering::Relaxed)),
            (
                "planledger_append_conflicts_total",
                "Appends refused by the version check.",
                m.conflicts.load(Ordering::Relaxed),
            ),
            (
                "planledger_stream_rewinds_total",
                "Streams read again because the log was behind a worker's cached state (a database failover).",
                m.stream_rewinds.load(Ordering::Relaxed),
            ),
            (
                "planledger_append_retries_total",
                "Batches decided again after a conflict.",
                m.retries.load(Ordering::Relaxed),
            ),
            (
                "planledger_idempotent_replays_total",
                "Requests answered from a stored first answer.",
                m.replays.load(Ordering::Relaxed),
            ),
            ("planledger_deadline_sweeps_total", "Deadline worker sweeps.", m.sweeps.load(Ordering::Relaxed)),
            (
                "planledger_deadline_swept_stores_total",
                "Stores whose due transitions a sweep appended.",
                m.swept_stores.load(Ordering::Relaxed),
            ),
            (
                "planledger_journal_dropped_total",
                "Journal entries dropped because the writer fell behind.",
                service.journal().dropped(),
            ),
            ("planledger_retention_runs_total", "Runs of the retention job.", m.retention_runs.load(Ordering::Relaxed)),
            (
                "planledger_retention_failures_total",
                "Runs of the retention job that failed (the next run tries again).",
                m.retention_failures.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
        }
        out.push_str("# HELP planledger_retention_deleted_total Rows deleted by retention, by table.\n");
        out.push_str("# TYPE planledger_retention_deleted_total counter\n");
        for what in Expiring::ALL {
            let deleted = m.expired(what).load(Ordering::Relaxed);
            let _ = writeln!(out, "planledger_retention_deleted_total{{table=\"{}\"}} {deleted}", what.name());
        }
        let _ = writeln!(
            out,
            "# HELP planledger_store_workers Stores with a worker (and a cached state) now\n\
             # TYPE planledger_store_workers gauge\nplanledger_store_workers {}",
            service.active_workers()
        );
        out
    }
}
