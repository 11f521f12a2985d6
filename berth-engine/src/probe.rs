//! Health probes against an instance's published loopback address: TCP (the port accepts
//! a connection that stays open) and HTTP (a GET answers with an expected status).

use std::net::SocketAddr;
use std::time::Duration;

use berth_domain::health::HealthProbe;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Runs one probe; `Err` carries what a person should read (the last response).
pub(crate) async fn probe(
    probe: &HealthProbe,
    address: SocketAddr,
    timeout: Duration,
) -> Result<(), String> {
    match tokio::time::timeout(timeout, run(probe, address)).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}

async fn run(probe: &HealthProbe, address: SocketAddr) -> Result<(), String> {
    match probe {
        HealthProbe::Tcp => tcp(address).await,
        HealthProbe::Http { path, expected_status_min, expected_status_max } => {
            let status = http_status(address, path).await?;
            if (*expected_status_min..=*expected_status_max).contains(&status) {
                Ok(())
            } else {
                Err(format!(
                    "GET {path} answered {status}, expected {expected_status_min}-{expected_status_max}"
                ))
            }
        }
    }
}

/// Docker's userland proxy accepts connections on a published port even when nothing
/// listens in the container, and then closes them at once; so a connection counts only if
/// it stays open for a moment (or the server speaks first).
async fn tcp(address: SocketAddr) -> Result<(), String> {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| format!("cannot connect to {address}: {e}"))?;
    let mut buffer = [0u8; 1];
    // Docker's proxy closes a connection it cannot forward within a few milliseconds.
    match tokio::time::timeout(Duration::from_millis(60), stream.read(&mut buffer)).await {
        Err(_) => Ok(()),
        Ok(Ok(n)) if n > 0 => Ok(()),
        Ok(_) => Err(
            "the connection was closed at once: nothing listens on the port inside the container"
                .to_owned(),
        ),
    }
}

async fn http_status(address: SocketAddr, path: &str) -> Result<u16, String> {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| format!("cannot connect to {address}: {e}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: berth-health-check\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("cannot send the request: {e}"))?;
    let mut head = Vec::with_capacity(256);
    let mut buffer = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
        let n =
            stream.read(&mut buffer).await.map_err(|e| format!("cannot read the response: {e}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buffer[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let status_line = line.lines().next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    match (parts.next(), parts.next().and_then(|s| s.parse::<u16>().ok())) {
        (Some(version), Some(status)) if version.starts_with("HTTP/") => Ok(status),
        _ if head.is_empty() => Err("the connection was closed without an answer".to_owned()),
        _ => Err(format!(
            "not an HTTP response: {:?}",
            status_line.chars().take(80).collect::<String>()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn server(response: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buffer = [0u8; 1024];
                let _ = socket.read(&mut buffer).await;
                let _ = socket.write_all(response.as_bytes()).await;
            }
        });
        address
    }

    #[tokio::test]
    async fn http_probe_checks_the_status_range() {
        let ok = server("HTTP/1.1 204 No Content\r\n\r\n").await;
        let bad = server("HTTP/1.1 503 Service Unavailable\r\n\r\n").await;
        let check = HealthProbe::Http {
            path: "/healthz".into(),
            expected_status_min: 200,
            expected_status_max: 399,
        };
        assert!(probe(&check, ok, Duration::from_secs(2)).await.is_ok());
        let error = probe(&check, bad, Duration::from_secs(2)).await.unwrap_err();
        assert!(error.contains("answered 503"), "{error}");
    }

    #[tokio::test]
    async fn tcp_probe_needs_a_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        assert!(probe(&HealthProbe::Tcp, address, Duration::from_secs(1)).await.is_err());
        let open = server("").await;
        assert!(probe(&HealthProbe::Tcp, open, Duration::from_secs(1)).await.is_ok());
    }
}
