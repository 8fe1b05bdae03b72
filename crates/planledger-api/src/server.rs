//! Serving the router over TCP, with a bound on what each connection may hold.
//!
//! axum's own `serve` has no knobs, so the accept loop is hyper's, configured here: a request's
//! head must arrive within [`ServerLimits::header_timeout`] (hyper starts that clock when a
//! connection opens and again whenever a kept-alive connection goes idle, so it is also how long
//! an idle connection is kept); no gap between body frames may be longer than
//! [`ServerLimits::body_timeout`] (tower-http's `RequestBodyTimeoutLayer`); at most
//! [`ServerLimits::max_connections`] connections are open (beyond that the listener is not
//! accepted from, and new connections wait in the kernel's backlog), at most
//! [`ServerLimits::max_connections_per_source`] of them from one address (beyond that a new one
//! is answered `503 too_many_connections` and closed at once, so that one client cannot take
//! every slot; a trusted proxy, which carries every client's connections, is not counted). On shutdown the listener
//! closes, idle connections are closed, requests in flight finish, and whatever is still open
//! after [`ServerLimits::shutdown_grace`] is dropped. See docs/security.md.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// What a connection may hold, and how long a shutdown waits.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// A request's head must arrive within this long of the connection opening or of its last
    /// response (so an idle kept-alive connection is closed after it, too).
    pub header_timeout: Duration,
    /// The longest pause between two parts of a request's body.
    pub body_timeout: Duration,
    /// Connections open at once; more wait in the listen backlog until one closes.
    pub max_connections: usize,
    /// Connections open at once from one source address; more are answered 503 and closed as
    /// they come.
    pub max_connections_per_source: usize,
    /// Addresses not held to the per-source cap: the trusted proxies, whose connections are
    /// every client's.
    pub uncounted_sources: Vec<ipnet::IpNet>,
    /// How long a shutdown lets requests in flight finish before closing what is left.
    pub shutdown_grace: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        let max_connections = default_max_connections(open_files_limit());
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_connections,
            max_connections_per_source: default_max_connections_per_source(max_connections),
            uncounted_sources: Vec::new(),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// The process's limit of open files (`RLIMIT_NOFILE`'s soft value), read from
/// `/proc/self/limits` on Linux; 1024, the usual default, where it cannot be read.
pub fn open_files_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(3)?.parse().ok()
        })
        .unwrap_or(1024)
}

/// Three quarters of the open-files limit, at most 10,000: the rest is left for the database
/// pools, the webhook client and the process itself, so a flood of connections runs into this
/// cap and waits, instead of into the kernel's limit, where accepting fails for everyone.
pub fn default_max_connections(open_files: usize) -> usize {
    (open_files / 4 * 3).clamp(16, 10_000)
}

/// A quarter of the connection cap: one address can never hold more than that, so three
/// quarters stay for everyone else.
pub fn default_max_connections_per_source(max_connections: usize) -> usize {
    (max_connections / 4).max(4)
}

/// What a connection beyond its source's cap is told before it is closed (best effort: it is
/// written only if the socket takes it at once). The body is the API's error envelope.
const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 127\r\n\r\n\
{\"error\":\"too_many_connections\",\"message\":\"this address holds as many connections as it may; retry shortly\",\"correlationId\":\"\"}";

/// Connections open per source address.
#[derive(Debug, Default)]
struct Sources {
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl Sources {
    /// Counts one more connection from `source`, unless it has `cap` already.
    fn admit(self: &Arc<Self>, source: IpAddr, cap: usize) -> Option<SourceGuard> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(source).or_default();
        if *count >= cap {
            return None;
        }
        *count += 1;
        Some(SourceGuard { sources: self.clone(), source })
    }
}

/// One connection of a source; dropping it counts it out.
struct SourceGuard {
    sources: Arc<Sources>,
    source: IpAddr,
}

impl Drop for SourceGuard {
    fn drop(&mut self) {
        let mut open = self.sources.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.source) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.source);
            }
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then shuts down gracefully within
/// the limits' grace. Each request carries its peer's address as axum's `ConnectInfo`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let router = router.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(limits.body_timeout));
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let sources = Arc::new(Sources::default());
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    let http = Arc::new(http);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, say: accepting again at once would spin.
                    tracing::warn!(%error, "could not accept a connection; pausing");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let counted = if limits.uncounted_sources.iter().any(|net| net.contains(&peer.ip())) {
            None
        } else {
            match sources.admit(peer.ip(), limits.max_connections_per_source) {
                Some(counted) => Some(counted),
                None => {
                    tracing::debug!(source = %peer.ip(), "connection refused: too many from this source");
                    let _ = stream.try_write(TOO_MANY_CONNECTIONS);
                    drop(stream);
                    continue;
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let service = router.clone().map_request(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            request
        });
        let connection = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
            drop(counted);
            drop(slot);
        });
    }
    drop(listener);
    let open = graceful.count();
    tracing::info!(open, "shutting down: no longer accepting; finishing requests in flight");
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(
            grace_seconds = limits.shutdown_grace.as_secs(),
            "connections still open after the shutdown grace are closed"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_connection_cap_leaves_room_under_the_open_files_limit() {
        assert_eq!(default_max_connections(1024), 768);
        assert_eq!(default_max_connections(20_000), 10_000);
        assert_eq!(default_max_connections(8), 16);
        assert_eq!(default_max_connections_per_source(768), 192);
        assert_eq!(default_max_connections_per_source(10_000), 2_500);
        assert!(open_files_limit() >= 16);
    }

    #[test]
    fn the_refusal_is_a_whole_http_answer_with_the_error_envelope() {
        let text = std::str::from_utf8(TOO_MANY_CONNECTIONS).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length: usize = head.lines().find_map(|l| l.strip_prefix("content-length: ")).unwrap().parse().unwrap();
        assert_eq!(length, body.len(), "content-length matches the body");
        let envelope: planledger_wire::ErrorBody = serde_json::from_str(body).unwrap();
        assert_eq!(envelope.error, planledger_wire::ErrorCode::TooManyConnections);
    }

    #[test]
    fn a_source_is_admitted_up_to_its_cap_and_counted_out_when_it_closes() {
        let sources = Arc::new(Sources::default());
        let one: IpAddr = "127.0.0.2".parse().unwrap();
        let first = sources.admit(one, 2).unwrap();
        let _second = sources.admit(one, 2).unwrap();
        assert!(sources.admit(one, 2).is_none(), "a third from one source");
        assert!(sources.admit("127.0.0.3".parse().unwrap(), 2).is_some(), "another source");
        drop(first);
        assert!(sources.admit(one, 2).is_some(), "a slot freed by a close");
    }
}
