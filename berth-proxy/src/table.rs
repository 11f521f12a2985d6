//! The routing snapshot the request path reads: hosts mapped to their upstreams, with a
//! round-robin cursor per host and a short memory of upstreams that refused connections.
//! The snapshot sits in an [`ArcSwap`], so a request takes no lock: it loads the current
//! `Arc`, and a table change builds a new snapshot and swaps it in whole.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use berth_domain::routes::RouteTable;
use http::uri::Authority;

/// After refusing a connection, an upstream is tried last for this long, so that a stopped
/// instance costs one refused connection per period instead of one per request.
const REFUSED_UPSTREAM_PENALTY: Duration = Duration::from_secs(2);

/// The current snapshot. Only the admin API replaces it, one change at a time.
pub(crate) struct RouteState {
    current: ArcSwap<RouteSnapshot>,
}

impl RouteState {
    pub(crate) fn new(table: RouteTable) -> Self {
        Self { current: ArcSwap::from_pointee(RouteSnapshot::build(table, None)) }
    }

    /// An owned `Arc` rather than a guard, because requests hold it across awaits.
    pub(crate) fn snapshot(&self) -> Arc<RouteSnapshot> {
        self.current.load_full()
    }

    /// Callers serialise replacements (the admin API holds its apply lock), so reading the
    /// previous snapshot and storing the next one cannot interleave with another change.
    pub(crate) fn replace(&self, table: RouteTable) {
        let previous = self.current.load_full();
        let next = RouteSnapshot::build(table, Some(&previous));
        self.current.store(Arc::new(next));
    }
}

pub(crate) struct RouteSnapshot {
    table: RouteTable,
    hosts: HashMap<String, HostRoute>,
}

impl RouteSnapshot {
    /// Carries round-robin cursors and refusal marks over from `previous`, so that frequent
    /// table changes neither pile every host's first request onto its first upstream nor
    /// forget that an upstream is down.
    fn build(table: RouteTable, previous: Option<&RouteSnapshot>) -> Self {
        let mut hosts: HashMap<String, HostRoute> = HashMap::new();
        for (raw_host, addrs) in table.by_host() {
            let Some(host) = normalize_host(&raw_host) else {
                continue;
            };
            let previous_route = previous.and_then(|snapshot| snapshot.hosts.get(&host));
            let route = hosts.entry(host).or_insert_with(|| HostRoute {
                upstreams: Vec::new(),
                next: AtomicUsize::new(
                    previous_route.map_or(0, |route| route.next.load(Ordering::Relaxed)),
                ),
            });
            for addr in addrs {
                if route.upstreams.iter().any(|upstream| upstream.addr == addr) {
                    continue;
                }
                let refused_until_ms = previous_route
                    .and_then(|route| route.upstreams.iter().find(|old| old.addr == addr))
                    .map_or(0, |old| old.refused_until_ms.load(Ordering::Relaxed));
                route.upstreams.push(Upstream::new(addr, refused_until_ms));
            }
        }
        Self { table, hosts }
    }

    pub(crate) fn table(&self) -> &RouteTable {
        &self.table
    }

    pub(crate) fn generation(&self) -> u64 {
        self.table.generation
    }

    /// `host` must already be normalised with [`normalize_host`].
    pub(crate) fn route(&self, host: &str) -> Option<&HostRoute> {
        self.hosts.get(host)
    }
}

pub(crate) struct HostRoute {
    upstreams: Vec<Upstream>,
    next: AtomicUsize,
}

impl HostRoute {
    pub(crate) fn is_empty(&self) -> bool {
        self.upstreams.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.upstreams.len()
    }

    /// Every upstream once, starting at the round-robin cursor; upstreams that recently
    /// refused a connection come last but are still tried, because they may be back.
    pub(crate) fn attempt_order(&self) -> Vec<&Upstream> {
        let count = self.upstreams.len();
        if count == 0 {
            return Vec::new();
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % count;
        let rotated = (0..count).map(|offset| &self.upstreams[(start + offset) % count]);
        let now = now_ms();
        let (mut healthy, penalised): (Vec<&Upstream>, Vec<&Upstream>) =
            rotated.partition(|upstream| !upstream.is_penalised(now));
        healthy.extend(penalised);
        healthy
    }
}

pub(crate) struct Upstream {
    addr: SocketAddr,
    authority: Authority,
    refused_until_ms: AtomicU64,
}

impl Upstream {
    fn new(addr: SocketAddr, refused_until_ms: u64) -> Self {
        Self {
            addr,
            authority: authority_of(addr),
            refused_until_ms: AtomicU64::new(refused_until_ms),
        }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn authority(&self) -> &Authority {
        &self.authority
    }

    pub(crate) fn mark_refused(&self) {
        let until = now_ms().saturating_add(millis(REFUSED_UPSTREAM_PENALTY));
        self.refused_until_ms.store(until, Ordering::Relaxed);
    }

    pub(crate) fn mark_accepted(&self) {
        // Skip the store in the common case so healthy upstreams do not bounce a cache line
        // between cores on every request.
        if self.refused_until_ms.load(Ordering::Relaxed) != 0 {
            self.refused_until_ms.store(0, Ordering::Relaxed);
        }
    }

    fn is_penalised(&self, now: u64) -> bool {
        self.refused_until_ms.load(Ordering::Relaxed) > now
    }
}

fn authority_of(addr: SocketAddr) -> Authority {
    // A socket address always formats as a valid authority (`1.2.3.4:80`, `[::1]:80`).
    match Authority::try_from(addr.to_string()) {
        Ok(authority) => authority,
        Err(_) => Authority::from_static("invalid.invalid"),
    }
}

/// Milliseconds on a process-local monotonic clock; only compared with itself.
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    millis(EPOCH.get_or_init(Instant::now).elapsed())
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The routing key of a Host header or URI authority: the port and a trailing dot removed,
/// lower-cased. `None` when nothing is left to route on.
pub(crate) fn normalize_host(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let host = if raw.starts_with('[') {
        // An IPv6 literal: its colons are not a port separator.
        match raw.find(']') {
            Some(end) => &raw[..=end],
            None => raw,
        }
    } else {
        match raw.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|byte| byte.is_ascii_digit()) => host,
            _ => raw,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() {
        return None;
    }
    Some(host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_domain::routes::Route;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn table(generation: u64, routes: &[(&str, &[u16])]) -> RouteTable {
        RouteTable {
            generation,
            routes: routes
                .iter()
                .map(|(host, ports)| Route {
                    host: (*host).to_owned(),
                    upstreams: ports.iter().map(|port| addr(*port)).collect(),
                })
                .collect(),
        }
    }

    fn order(route: &HostRoute) -> Vec<u16> {
        route.attempt_order().iter().map(|upstream| upstream.addr().port()).collect()
    }

    #[test]
    fn host_normalisation_strips_port_and_case() {
        let cases = [
            ("Web.Example.COM:8000", Some("web.example.com")),
            ("web.example.com", Some("web.example.com")),
            ("web.example.com.", Some("web.example.com")),
            ("web.example.com.:80", Some("web.example.com")),
            ("[::1]:8000", Some("[::1]")),
            ("[::1]", Some("[::1]")),
            ("127.0.0.1:80", Some("127.0.0.1")),
            ("", None),
            (":80", None),
        ];
        for (raw, expected) in cases {
            assert_eq!(normalize_host(raw).as_deref(), expected, "for {raw:?}");
        }
    }

    #[test]
    fn round_robin_rotates_through_every_upstream() {
        let state = RouteState::new(table(1, &[("a.test", &[1, 2, 3])]));
        let snapshot = state.snapshot();
        let Some(route) = snapshot.route("a.test") else { panic!("a.test is routed") };
        assert_eq!(order(route), [1, 2, 3]);
        assert_eq!(order(route), [2, 3, 1]);
        assert_eq!(order(route), [3, 1, 2]);
        assert_eq!(order(route), [1, 2, 3]);
    }

    #[test]
    fn refused_upstreams_are_tried_last() {
        let state = RouteState::new(table(1, &[("a.test", &[1, 2, 3])]));
        let snapshot = state.snapshot();
        let Some(route) = snapshot.route("a.test") else { panic!("a.test is routed") };
        route.upstreams[0].mark_refused();
        assert_eq!(order(route), [2, 3, 1]);
        assert_eq!(order(route), [2, 3, 1]);
        assert_eq!(order(route), [3, 2, 1]);
        route.upstreams[0].mark_accepted();
        assert_eq!(order(route), [1, 2, 3]);
    }

    #[test]
    fn replacing_the_table_keeps_cursor_and_refusals() {
        let state = RouteState::new(table(1, &[("a.test", &[1, 2])]));
        let before = state.snapshot();
        let Some(route) = before.route("a.test") else { panic!("a.test is routed") };
        assert_eq!(order(route), [1, 2]);
        route.upstreams[1].mark_refused();

        state.replace(table(2, &[("A.test", &[1, 2, 2]), ("b.test", &[])]));
        let after = state.snapshot();
        assert_eq!(after.generation(), 2);
        let Some(route) = after.route("a.test") else { panic!("a.test is routed") };
        assert_eq!(route.len(), 2, "duplicate upstreams collapse");
        assert_eq!(order(route), [1, 2], "cursor continued at 1, refused 2 goes last");
        let Some(empty) = after.route("b.test") else { panic!("b.test is routed") };
        assert!(empty.is_empty());
        assert!(after.route("c.test").is_none());
    }
}
