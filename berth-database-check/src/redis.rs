//! The Redis check over RESP: `AUTH` (when the URL has a password), `SELECT` (when the
//! database index is not 0), then `PING`, each answered by one line (`+OK`, `+PONG`, or an
//! `-ERR...` error line).

use berth_domain::database::DatabaseCredentials;
use berth_engine::database_access::ExternalDatabaseError;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::Failure;

/// A reply line longer than this is not a reply to these commands.
const MAX_REPLY_BYTES: u64 = 4096;

pub(crate) async fn verify(
    stream: TcpStream,
    credentials: &DatabaseCredentials,
    failure: &Failure<'_>,
) -> Result<(), ExternalDatabaseError> {
    let mut stream = BufReader::new(stream);
    if !credentials.password.is_empty() {
        // `default` is the user of a URL without one (`redis://:password@host`): the
        // one-argument AUTH, which Redis before 6 understands too.
        let command: Vec<&str> = if credentials.user.is_empty() || credentials.user == "default" {
            vec!["AUTH", &credentials.password]
        } else {
            vec!["AUTH", &credentials.user, &credentials.password]
        };
        let reply = call(&mut stream, &command, failure).await?;
        if let Some(error) = reply.strip_prefix('-') {
            return Err(failure.authentication(error));
        }
    }
    if credentials.database != "0" {
        let reply = call(&mut stream, &["SELECT", &credentials.database], failure).await?;
        if let Some(error) = reply.strip_prefix('-') {
            return Err(if error.starts_with("NOAUTH") {
                failure.authentication(error)
            } else {
                failure.unknown_database(error)
            });
        }
    }
    let reply = call(&mut stream, &["PING"], failure).await?;
    match reply.as_str() {
        "+PONG" => {
            // Courtesy; the answer is already known.
            let _ = stream.get_mut().write_all(&encode(&["QUIT"])).await;
            Ok(())
        }
        error if error.starts_with("-NOAUTH") => Err(failure.authentication(
            "the server requires a password; put it in the URL: redis://:PASSWORD@host:port/0",
        )),
        other => Err(failure.protocol(format!("unexpected answer to PING: {other}"))),
    }
}

/// Sends one command and reads its one-line reply (without the CRLF).
async fn call(
    stream: &mut BufReader<TcpStream>,
    command: &[&str],
    failure: &Failure<'_>,
) -> Result<String, ExternalDatabaseError> {
    let io_error = |error: std::io::Error| failure.protocol(error.to_string());
    stream.get_mut().write_all(&encode(command)).await.map_err(io_error)?;
    let mut line = Vec::new();
    let read = (&mut *stream)
        .take(MAX_REPLY_BYTES)
        .read_until(b'\n', &mut line)
        .await
        .map_err(io_error)?;
    if read == 0 || !line.ends_with(b"\r\n") {
        return Err(failure.protocol("the connection closed without a RESP reply".to_owned()));
    }
    line.truncate(line.len() - 2);
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// A RESP array of bulk strings: binary-safe for any password.
fn encode(command: &[&str]) -> Vec<u8> {
    let mut bytes = format!("*{}\r\n", command.len()).into_bytes();
    for part in command {
        bytes.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
        bytes.extend_from_slice(part.as_bytes());
        bytes.extend_from_slice(b"\r\n");
    }
    bytes
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use berth_domain::database::DatabaseEngine;
    use berth_engine::database_access::DatabaseVerifier;
    use tokio::net::TcpListener;

    use super::*;
    use crate::NetworkDatabaseVerifier;

    /// A stand-in server on loopback that answers each command with the next line of
    /// `replies` and records what it received.
    async fn stub(replies: &'static [&'static str]) -> (u16, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            // The first connection is the reachability probe's, when one is made.
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut received = Vec::new();
            for reply in replies {
                let mut buffer = [0u8; 1024];
                let count = socket.read(&mut buffer).await.unwrap();
                received.extend_from_slice(&buffer[..count]);
                socket.write_all(reply.as_bytes()).await.unwrap();
            }
            received
        });
        (port, task)
    }

    fn credentials(port: u16, password: &str, database: &str) -> DatabaseCredentials {
        DatabaseCredentials {
            host: "127.0.0.1".into(),
            port,
            user: "default".into(),
            password: password.into(),
            database: database.into(),
        }
    }

    async fn check(credentials: &DatabaseCredentials) -> Result<(), ExternalDatabaseError> {
        NetworkDatabaseVerifier
            .verify(DatabaseEngine::Redis, credentials, Duration::from_secs(5))
            .await
    }

    #[tokio::test]
    async fn the_right_password_passes_and_is_sent_as_one_auth_argument() {
        let (port, server) = stub(&["+OK\r\n", "+PONG\r\n"]).await;
        check(&credentials(port, "p w", "0")).await.unwrap();
        let received = String::from_utf8(server.await.unwrap()).unwrap();
        assert_eq!(received, "*2\r\n$4\r\nAUTH\r\n$3\r\np w\r\n*1\r\n$4\r\nPING\r\n");
    }

    #[tokio::test]
    async fn a_wrong_password_names_the_user() {
        let (port, _server) =
            stub(&["-WRONGPASS invalid username-password pair or user is disabled.\r\n"]).await;
        let error = check(&credentials(port, "nope", "0")).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("authentication failed for user \"default\" at 127.0.0.1:{port}: WRONGPASS invalid username-password pair or user is disabled.")
        );
    }

    #[tokio::test]
    async fn a_missing_password_and_a_bad_index_are_named() {
        let (port, _server) = stub(&["-NOAUTH Authentication required.\r\n"]).await;
        let error = check(&credentials(port, "", "0")).await.unwrap_err();
        assert!(error.to_string().contains("the server requires a password"), "{error}");

        let (port, _server) = stub(&["+OK\r\n", "-ERR DB index is out of range\r\n"]).await;
        let error = check(&credentials(port, "pw", "99")).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "database \"99\" does not exist on 127.0.0.1:{port}: ERR DB index is out of range"
            )
        );
    }
}
