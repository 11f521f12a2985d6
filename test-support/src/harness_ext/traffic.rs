//! A client that keeps sending requests through the edge proxy and records every failure
//! and every version it was served ([`TrafficProbe`]), and the small HTTP/1.1 client it
//! and the tests use (one request per connection, with a timeout).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::{parse_response, wait_for, HttpResponse, TestServer};

/// A request through the proxy that takes longer than this counts as failed.
const PROBE_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between two probe requests: a steady trickle, not a load test (CI has 2 cores and
/// several servers running at once).
const PROBE_PACE: Duration = Duration::from_millis(20);
/// How many failures a probe keeps the details of.
const PROBE_KEPT_FAILURES: usize = 20;

/// What a [`TrafficProbe`] saw.
#[derive(Debug, Clone, Default)]
pub struct TrafficReport {
    /// Requests that ended (answered or failed).
    pub total: u64,
    /// How many failed: no connection, no answer within the timeout, or a status other
    /// than 200.
    pub failed: u64,
    /// The first failures, with the time since the probe started.
    pub failures: Vec<String>,
    /// How many answers carried each `content:` line value.
    pub contents: BTreeMap<String, u64>,
    /// The `content:` values in the order they were served, consecutive repeats merged
    /// (`["version one", "version two"]` for one switch).
    pub sequence: Vec<String>,
}

impl std::fmt::Display for TrafficReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} request(s), {} failed; contents {:?}; sequence {:?}",
            self.total, self.failed, self.contents, self.sequence
        )?;
        for failure in &self.failures {
            write!(f, "\n  {failure}")?;
        }
        Ok(())
    }
}

/// A thread that sends `GET path` through the proxy one request after another until it is
/// stopped, and records every failure.
pub struct TrafficProbe {
    stop: Arc<AtomicBool>,
    completed: Arc<AtomicU64>,
    report: Arc<Mutex<TrafficReport>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for TrafficProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrafficProbe").field("completed", &self.completed()).finish()
    }
}

impl TrafficProbe {
    /// Starts sending requests for `host` (without port) to the proxy of `server`.
    pub fn start(server: &TestServer, host: &str, path: &str) -> TrafficProbe {
        let proxy = proxy_address(server);
        let stop = Arc::new(AtomicBool::new(false));
        let completed = Arc::new(AtomicU64::new(0));
        let report = Arc::new(Mutex::new(TrafficReport::default()));
        let host_header = format!("{host}:{}", proxy.port());
        let path = path.to_owned();
        let handle = {
            let (stop, completed, report) = (stop.clone(), completed.clone(), report.clone());
            std::thread::spawn(move || {
                let started = Instant::now();
                while !stop.load(Ordering::SeqCst) {
                    let outcome = http_get(proxy, &host_header, &path, Some(PROBE_REQUEST_TIMEOUT));
                    let mut report = report.lock().expect("probe report lock");
                    report.total += 1;
                    match outcome {
                        Ok(response) if response.status == 200 => {
                            let content = line_value(&response.body, "content")
                                .unwrap_or_else(|| response.body.trim().to_owned());
                            *report.contents.entry(content.clone()).or_default() += 1;
                            if report.sequence.last() != Some(&content) {
                                report.sequence.push(content);
                            }
                        }
                        failure => {
                            report.failed += 1;
                            if report.failures.len() < PROBE_KEPT_FAILURES {
                                let what = match failure {
                                    Ok(response) => {
                                        format!("{} {}", response.status, response.body.trim())
                                    }
                                    Err(error) => error,
                                };
                                report.failures.push(format!(
                                    "after {:.1} s: {what}",
                                    started.elapsed().as_secs_f64()
                                ));
                            }
                        }
                    }
                    drop(report);
                    completed.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(PROBE_PACE);
                }
            })
        };
        TrafficProbe { stop, completed, report, handle: Some(handle) }
    }

    /// Requests that ended so far.
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::SeqCst)
    }

    /// What the probe saw so far.
    pub fn report(&self) -> TrafficReport {
        self.report.lock().expect("probe report lock").clone()
    }

    /// Waits until `count` more requests have ended than when called.
    #[track_caller]
    pub fn wait_for_requests(&self, count: u64, timeout: Duration) {
        let target = self.completed() + count;
        wait_for(timeout, &format!("{count} more requests through the proxy"), || {
            (self.completed() >= target).then_some(())
        });
    }

    /// Stops the thread and returns everything it saw.
    pub fn stop(mut self) -> TrafficReport {
        self.halt();
        self.report()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

impl Drop for TrafficProbe {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The loopback address of the edge proxy of `server`.
pub fn proxy_address(server: &TestServer) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], server.proxy_port()))
}

/// `GET path` through the proxy of `server` with `Host: <host>:<proxy port>`, failing after
/// `timeout` without an answer.
pub fn proxy_get_within(
    server: &TestServer,
    host: &str,
    path: &str,
    timeout: Duration,
) -> Result<HttpResponse, String> {
    let host = format!("{host}:{}", server.proxy_port());
    http_get(proxy_address(server), &host, path, Some(timeout))
}

/// `GET path` on `address` with `Host: host`, one request per connection, failing after
/// `timeout` (default 30 s) without an answer.
pub fn http_get(
    address: SocketAddr,
    host: &str,
    path: &str,
    timeout: Option<Duration>,
) -> Result<HttpResponse, String> {
    let timeout = timeout.unwrap_or(Duration::from_secs(30));
    let mut stream = TcpStream::connect_timeout(&address, timeout.min(Duration::from_secs(5)))
        .map_err(|error| format!("connect to {address}: {error}"))?;
    stream.set_read_timeout(Some(timeout)).map_err(|error| error.to_string())?;
    stream.set_write_timeout(Some(timeout)).map_err(|error| error.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(|error| format!("send to {address}: {error}"))?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|error| format!("read from {address}: {error}"))?;
    parse_response(&raw)
}

/// The value of the first `name: value` line of `body`.
pub fn line_value(body: &str, name: &str) -> Option<String> {
    body.lines().find_map(|line| {
        line.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(|value| value.trim().to_owned())
    })
}
