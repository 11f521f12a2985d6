//! End-to-end tests of the edge proxy: real upstream servers, a real proxy and its admin
//! socket, all on loopback, driven the way the control plane and browsers use them.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use berth_proxy::{ApplyOutcome, ProxyAdminClient, ProxyClientError, ProxyError, ProxyServer};
use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Channel, Full};
use support::*;

#[tokio::test]
async fn routes_by_host_and_balances_round_robin() {
    init_tracing();
    let (alpha, beta) = (Upstream::start("alpha").await, Upstream::start("beta").await);
    let directory = tempfile::tempdir().unwrap();
    let proxy = RunningProxy::start(config_in(directory.path())).await;
    let outcome = proxy
        .admin
        .put_routes(&table(
            1,
            vec![route("app.test", &[alpha.addr, beta.addr]), route("other.test", &[beta.addr])],
        ))
        .await
        .unwrap();
    assert_eq!(outcome, ApplyOutcome::Applied { generation: 1, routes: 2 });

    let client = client();
    let mut answers = Vec::new();
    for _ in 0..10 {
        let (status, body) = get(&client, proxy.addr, "App.TEST:8000", "/").await;
        assert_eq!(status, StatusCode::OK);
        answers.push(body);
    }
    let alphas = answers.iter().filter(|body| *body == "alpha").count();
    let betas = answers.iter().filter(|body| *body == "beta").count();
    assert_eq!((alphas, betas), (5, 5), "round robin over both upstreams: {answers:?}");

    for _ in 0..3 {
        assert_eq!(
            get(&client, proxy.addr, "other.test", "/").await,
            (StatusCode::OK, "beta".into())
        );
    }
    proxy.stop().await.unwrap();
}

#[tokio::test]
async fn unknown_host_gets_404_naming_the_host() {
    init_tracing();
    let directory = tempfile::tempdir().unwrap();
    let proxy = RunningProxy::start(config_in(directory.path())).await;
    let (status, body) = get(&client(), proxy.addr, "nobody.test", "/anything").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, "No application is routed to the host nobody.test on this Berth proxy.\n");
    proxy.stop().await.unwrap();
}

#[tokio::test]
async fn known_host_without_a_working_upstream_is_a_gateway_error() {
    init_tracing();
    let directory = tempfile::tempdir().unwrap();
    let proxy = RunningProxy::start(config_in(directory.path())).await;
    let (dead_one, dead_two) = (closed_port().await, closed_port().await);
    proxy
        .admin
        .put_routes(&table(
            1,
            vec![route("empty.test", &[]), route("down.test", &[dead_one, dead_two])],
        ))
        .await
        .unwrap();
    let client = client();

    let (status, body) = get(&client, proxy.addr, "empty.test", "/").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("none of its instances is healthy"), "{body}");

    let (status, body) = get(&client, proxy.addr, "down.test", "/").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(body.contains("None of the 2 instances of down.test accepted a connection"), "{body}");
    proxy.stop().await.unwrap();
}

#[tokio::test]
async fn refused_upstream_is_skipped_and_the_body_still_arrives() {
    init_tracing();
    let alpha = Upstream::start("alpha").await;
    let dead = closed_port().await;
    let directory = tempfile::tempdir().unwrap();
    let proxy = RunningProxy::start(config_in(directory.path())).await;
    // The dead upstream is first, so the very first request is refused by it and must be
    // retried on alpha with its body intact.
    proxy.admin.put_routes(&table(1, vec![route("app.test", &[dead, alpha.addr])])).await.unwrap();
    let client = client();

    let body = Full::new(Bytes::from_static(b"hello through a retry")).boxed();
    let (status, echoed) =
        send(&client, request("POST", proxy.addr, "app.test", "/echo", body)).await;
    assert_eq!((status, echoed.as_str()), (StatusCode::OK, "hello through a retry"));

    for _ in 0..20 {
        assert_eq!(
            get(&client, proxy.addr, "app.test", "/").await,
            (StatusCode::OK, "alpha".into())
        );
    }
    proxy.stop().await.unwrap();
}

#[tokio::test]
async fn stale_generation_is_refused_and_the_newer_table_kept() {
    init_tracing();
    let (alpha, beta) = (Upstream::start("alpha").await, Upstream::start("beta").await);
    let directory = tempfile::tempdir().unwrap();
    let proxy = RunningProxy::start(config_in(directory.path())).await;
    let newer = table(5, vec![route("app.test", &[alpha.addr])]);
    let older = table(4, vec![route("app.test", &[beta.addr])]);

    assert_eq!(
        proxy.admin.put_routes(&newer).await.unwrap(),
        ApplyOutcome::Applied { generation: 5, routes: 1 }
    );
    assert_eq!(
        proxy.admin.put_routes(&older).await.unwrap(),
        ApplyOutcome::Stale { current_generation: 5 }
    );
    // The same generation again is how a restarted server re-synchronises: accepted.
    assert_eq!(
        proxy.admin.put_routes(&newer).await.unwrap(),
        ApplyOutcome::Applied { generation: 5, routes: 1 }
    );
    assert_eq!(proxy.admin.get_routes().await.unwrap(), newer);
    let health = proxy.admin.health().await.unwrap();
    assert_eq!(
        (health.status.as_str(), health.pid, health.generation),
        ("ok", std::process::id(), 5)
    );
    assert_eq!(get(&client(), proxy.addr, "app.test", "/").await, (StatusCode::OK, "alpha".into()));
    proxy.stop().await.unwrap();
}

#[tokio::test]
async fn restarted_proxy_serves_the_saved_table_at_once() {
    init_tracing();
    let alpha = Upstream::start("alpha").await;
    let directory = tempfile::tempdir().unwrap();
    let config = config_in(directory.path());
    let saved = table(3, vec![route("app.test", &[alpha.addr])]);

    let first = RunningProxy::start(config.clone()).await;
    first.admin.put_routes(&saved).await.unwrap();
    first.stop().await.unwrap();
    assert!(!config.admin_socket.exists(), "a stopped proxy removes its admin socket");

    let second = RunningProxy::start(config.clone()).await;
    assert_eq!(
        get(&client(), second.addr, "app.test", "/").await,
        (StatusCode::OK, "alpha".into())
    );
    assert_eq!(second.admin.get_routes().await.unwrap(), saved);
    second.stop().await.unwrap();

    // A corrupt saved table must not keep the proxy from starting.
    std::fs::write(&config.state_file, b"{ this is not a table").unwrap();
    let third = RunningProxy::start(config).await;
    assert_eq!(third.admin.health().await.unwrap().generation, 0);
    assert_eq!(get(&client(), third.addr, "app.test", "/").await.0, StatusCode::NOT_FOUND);
    third.stop().await.unwrap();
}

#[tokio::test]
async fn admin_socket_is_private_replaces_a_stale_one_and_is_not_shared() {
    init_tracing();
    let directory = tempfile::tempdir().unwrap();
    let config = config_in(directory.path());
    // A socket file whose listener is gone, as a crashed proxy leaves it.
    drop(std::os::unix::net::UnixListener::bind(&config.admin_socket).unwrap());
    assert!(config.admin_socket.exists());

    let proxy = RunningProxy::start(config.clone()).await;
    let mode = std::fs::metadata(&config.admin_socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(proxy.admin.health().await.unwrap().status, "ok");

    let mut second = config.clone();
    second.state_file = directory.path().join("other-state.json");
    match ProxyServer::bind(second).await {
        Err(error @ ProxyError::AdminSocketInUse { .. }) => {
            assert!(error.to_string().contains("is a `berth proxy` already running?"), "{error}");
        }
        other => panic!("a second proxy on the same admin socket must fail, got {other:?}"),
    }
    proxy.stop().await.unwrap();

    let error = ProxyAdminClient::new(&config.admin_socket).health().await.unwrap_err();
    assert!(matches!(error, ProxyClientError::NotAnswering { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!(
            "the proxy admin socket {} does not answer: is `berth proxy` running?",
            config.admin_socket.display()
        )
    );
}

#[tokio::test]
async fn forwarded_headers_reach_the_upstream_and_hop_headers_do_not() {
    init_tracing();
    let alpha = Upstream::start("alpha").await;
    let directory = tempfile::tempdir().unwrap();
    let proxy = RunningProxy::start(config_in(directory.path())).await;
    proxy.admin.put_routes(&table(1, vec![route("app.test", &[alpha.addr])])).await.unwrap();

    let mut request = request("GET", proxy.addr, "app.test:8000", "/headers", empty());
    let headers = request.headers_mut();
    headers.insert("connection", "keep-alive, x-hop".parse().unwrap());
    headers.insert("x-hop", "only for the first hop".parse().unwrap());
    headers.insert("x-forwarded-for", "203.0.113.1".parse().unwrap());
    headers.insert("x-custom", "kept".parse().unwrap());
    let (status, seen) = send(&client(), request).await;
    assert_eq!(status, StatusCode::OK);
    let seen: Vec<&str> = seen.lines().collect();
    for expected in [
        "host: app.test:8000",
        "x-custom: kept",
        "x-forwarded-for: 203.0.113.1, 127.0.0.1",
        "x-forwarded-host: app.test:8000",
        "x-forwarded-proto: http",
    ] {
        assert!(seen.contains(&expected), "upstream should see {expected:?}; saw {seen:?}");
    }
    assert!(!seen.iter().any(|line| line.starts_with("x-hop")), "{seen:?}");
    proxy.stop().await.unwrap();
}

#[tokio::test]
async fn large_request_body_streams_both_ways() {
    init_tracing();
    let alpha = Upstream::start("alpha").await;
    let directory = tempfile::tempdir().unwrap();
    let proxy = RunningProxy::start(config_in(directory.path())).await;
    proxy.admin.put_routes(&table(1, vec![route("app.test", &[alpha.addr])])).await.unwrap();

    const CHUNK: usize = 256 * 1024;
    const CHUNKS: usize = 128; // 32 MiB in all
    let (mut sender, body) = Channel::<Bytes>::new(4);
    let response = tokio::spawn({
        let client = client();
        let request = request("POST", proxy.addr, "app.test", "/echo", body.boxed());
        async move { client.request(request).await }
    });

    // The echo only starts answering once the first chunk is through: a proxy that
    // buffered whole bodies would never answer before the request ends.
    let first = Bytes::from(vec![0u8; CHUNK]);
    within("sending the first chunk", sender.send_data(first)).await.unwrap();
    let response = within("the response head", response).await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut received = 0usize;
    let mut checksum = 0u64;
    while received < CHUNK {
        let frame = within("the first echoed bytes", body.frame()).await.unwrap().unwrap();
        if let Ok(data) = frame.into_data() {
            received += data.len();
            checksum += data.iter().map(|byte| u64::from(*byte)).sum::<u64>();
        }
    }

    let sending = tokio::spawn(async move {
        for index in 1..CHUNKS {
            let fill = u8::try_from(index % 251).unwrap();
            sender.send_data(Bytes::from(vec![fill; CHUNK])).await.unwrap();
        }
    });
    while let Some(frame) = within("the rest of the echo", body.frame()).await {
        if let Ok(data) = frame.unwrap().into_data() {
            received += data.len();
            checksum += data.iter().map(|byte| u64::from(*byte)).sum::<u64>();
        }
    }
    within("the sender", sending).await.unwrap();
    let expected_checksum: u64 = (1..CHUNKS).map(|index| (index % 251) as u64 * CHUNK as u64).sum();
    assert_eq!((received, checksum), (CHUNK * CHUNKS, expected_checksum));
    proxy.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_tables_under_load_fails_no_request() {
    init_tracing();
    let set_a = [Upstream::start("a1").await, Upstream::start("a2").await];
    let set_b = [Upstream::start("b1").await, Upstream::start("b2").await];
    let directory = tempfile::tempdir().unwrap();
    let proxy = RunningProxy::start(config_in(directory.path())).await;
    let table_for = |generation: u64| {
        let set = match generation % 2 {
            0 => &set_a,
            _ => &set_b,
        };
        table(generation, vec![route("app.test", &[set[0].addr, set[1].addr])])
    };
    proxy.admin.put_routes(&table_for(0)).await.unwrap();

    const WORKERS: usize = 8;
    const MAX_REQUESTS_PER_WORKER: usize = 2_000;
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let successes = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (stop, failures, successes) =
            (Arc::clone(&stop), Arc::clone(&failures), Arc::clone(&successes));
        let addr = proxy.addr;
        workers.push(tokio::spawn(async move {
            let client = client();
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..MAX_REQUESTS_PER_WORKER {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let (status, body) = get(&client, addr, "app.test", "/").await;
                if status == StatusCode::OK {
                    successes.fetch_add(1, Ordering::SeqCst);
                    seen.insert(body);
                } else {
                    failures.fetch_add(1, Ordering::SeqCst);
                    eprintln!("failed request: {status} {body}");
                }
            }
            seen
        }));
    }

    let swaps: u64 = 60;
    for generation in 1..=swaps {
        let outcome = proxy.admin.put_routes(&table_for(generation)).await.unwrap();
        assert_eq!(outcome, ApplyOutcome::Applied { generation, routes: 1 });
        // Let some requests run against each table before the next swap.
        let target = successes.load(Ordering::SeqCst) + WORKERS;
        wait_until("requests between swaps", || {
            let successes = Arc::clone(&successes);
            async move { successes.load(Ordering::SeqCst) >= target }
        })
        .await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut seen = std::collections::BTreeSet::new();
    for worker in workers {
        seen.extend(within("a load worker", worker).await.unwrap());
    }

    assert_eq!(failures.load(Ordering::SeqCst), 0, "no request may fail while tables swap");
    assert!(successes.load(Ordering::SeqCst) >= swaps as usize * WORKERS);
    let expected: std::collections::BTreeSet<String> =
        ["a1", "a2", "b1", "b2"].iter().map(|name| (*name).to_owned()).collect();
    assert_eq!(seen, expected, "both upstream sets served traffic");
    proxy.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish_and_stops_accepting() {
    init_tracing();
    let alpha = Upstream::start("alpha").await;
    let directory = tempfile::tempdir().unwrap();
    let mut proxy = RunningProxy::start(config_in(directory.path())).await;
    proxy.admin.put_routes(&table(1, vec![route("app.test", &[alpha.addr])])).await.unwrap();

    let in_flight = tokio::spawn({
        let client = client();
        let addr = proxy.addr;
        async move { get(&client, addr, "app.test", "/slow").await }
    });
    within("the slow request reaching the upstream", alpha.slow_started.notified()).await;

    proxy.begin_shutdown();
    let addr = proxy.addr;
    wait_until("the proxy to stop accepting", || async move {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;

    alpha.slow_release.notify_one();
    assert_eq!(
        within("the in-flight request", in_flight).await.unwrap(),
        (StatusCode::OK, "alpha".into())
    );
    proxy.stopped().await.unwrap();
}

#[tokio::test]
async fn shutdown_cuts_requests_that_outlast_the_drain_timeout() {
    init_tracing();
    let alpha = Upstream::start("alpha").await;
    let directory = tempfile::tempdir().unwrap();
    let mut config = config_in(directory.path());
    config.drain_timeout = Duration::from_millis(200);
    let mut proxy = RunningProxy::start(config).await;
    proxy.admin.put_routes(&table(1, vec![route("app.test", &[alpha.addr])])).await.unwrap();

    let in_flight = tokio::spawn({
        let client = client();
        let request = request("GET", proxy.addr, "app.test", "/slow", empty());
        async move { client.request(request).await }
    });
    within("the slow request reaching the upstream", alpha.slow_started.notified()).await;

    proxy.begin_shutdown();
    proxy.stopped().await.unwrap();
    let outcome = within("the cut request", in_flight).await.unwrap();
    assert!(outcome.is_err(), "the never-answered request is cut: {outcome:?}");
}
