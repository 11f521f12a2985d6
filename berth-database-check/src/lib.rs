//! The external-database check: opens one real session on an existing PostgreSQL,
//! MariaDB/MySQL or Redis server with the credentials of its URL (connect, authenticate,
//! select the database, ping) and closes it, so that `berth database create --mode
//! external` refuses a wrong password, an unreachable host or a missing database before
//! anything is stored.
//!
//! PostgreSQL and MySQL go through sqlx's drivers (no TLS is compiled in: `sslmode=prefer`
//! falls back to a plain connection, and a server that requires TLS is reported as such by
//! its own error); Redis is two or three RESP commands over a TCP stream.
//!
//! Guarantees: the password is sent to the server and nowhere else: errors name the host,
//! port, user or database, and the server's own message only after it was checked not to
//! contain the password.

mod redis;

use std::time::Duration;

use async_trait::async_trait;
use berth_domain::database::{DatabaseCredentials, DatabaseEngine};
use berth_engine::database_access::{DatabaseVerifier, ExternalDatabaseError};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlDatabaseError};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgDatabaseError};
use sqlx::{ConnectOptions, Connection};
use tokio::net::TcpStream;

/// The real check, over the network.
#[derive(Debug, Clone, Default)]
pub struct NetworkDatabaseVerifier;

#[async_trait]
impl DatabaseVerifier for NetworkDatabaseVerifier {
    async fn verify(
        &self,
        engine: DatabaseEngine,
        credentials: &DatabaseCredentials,
        timeout: Duration,
    ) -> Result<(), ExternalDatabaseError> {
        // Reaching the port is checked on its own first, so that "nothing answers" and
        // "the server refused these credentials" are told apart.
        let stream = connect(credentials, timeout).await?;
        let failure = Failure { engine, credentials };
        let session = async {
            match engine {
                DatabaseEngine::Postgresql => {
                    drop(stream);
                    verify_postgresql(credentials, &failure).await
                }
                DatabaseEngine::Mariadb => {
                    drop(stream);
                    verify_mysql(credentials, &failure).await
                }
                DatabaseEngine::Redis => redis::verify(stream, credentials, &failure).await,
            }
        };
        tokio::time::timeout(timeout, session).await.unwrap_or_else(|_| {
            Err(failure.protocol(format!(
                "the server accepted the connection but did not finish the login within {} s",
                timeout.as_secs()
            )))
        })
    }
}

/// Opens a TCP connection to the server within `timeout`.
async fn connect(
    credentials: &DatabaseCredentials,
    timeout: Duration,
) -> Result<TcpStream, ExternalDatabaseError> {
    let unreachable = |detail: String| ExternalDatabaseError::Unreachable {
        host: credentials.host.clone(),
        port: credentials.port,
        seconds: timeout.as_secs(),
        detail,
    };
    let host = credentials.host.trim_start_matches('[').trim_end_matches(']');
    match tokio::time::timeout(timeout, TcpStream::connect((host, credentials.port))).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(error)) => Err(unreachable(error.to_string())),
        Err(_) => Err(unreachable("no answer".to_owned())),
    }
}

/// Builds the errors of one check, with server messages scrubbed of the password.
pub(crate) struct Failure<'a> {
    engine: DatabaseEngine,
    credentials: &'a DatabaseCredentials,
}

impl Failure<'_> {
    fn scrub(&self, detail: &str) -> String {
        let password = &self.credentials.password;
        if password.is_empty() {
            detail.to_owned()
        } else {
            detail.replace(password.as_str(), "********")
        }
    }

    pub(crate) fn authentication(&self, detail: &str) -> ExternalDatabaseError {
        // A Redis URL without a user (`redis://:password@host`) authenticates as `default`.
        let user = match (self.engine, self.credentials.user.as_str()) {
            (DatabaseEngine::Redis, "") => "default".to_owned(),
            (_, user) => user.to_owned(),
        };
        ExternalDatabaseError::AuthenticationFailed {
            host: self.credentials.host.clone(),
            port: self.credentials.port,
            user,
            detail: self.scrub(detail),
        }
    }

    pub(crate) fn unknown_database(&self, detail: &str) -> ExternalDatabaseError {
        ExternalDatabaseError::UnknownDatabase {
            host: self.credentials.host.clone(),
            port: self.credentials.port,
            database: self.credentials.database.clone(),
            detail: self.scrub(detail),
        }
    }

    pub(crate) fn protocol(&self, detail: String) -> ExternalDatabaseError {
        ExternalDatabaseError::Protocol {
            host: self.credentials.host.clone(),
            port: self.credentials.port,
            engine: self.engine.to_string(),
            detail: self.scrub(&detail),
        }
    }
}

async fn verify_postgresql(
    credentials: &DatabaseCredentials,
    failure: &Failure<'_>,
) -> Result<(), ExternalDatabaseError> {
    let options = PgConnectOptions::new()
        .host(&credentials.host)
        .port(credentials.port)
        .username(&credentials.user)
        .password(&credentials.password)
        .database(&credentials.database)
        .application_name("berth-external-check")
        .disable_statement_logging();
    let mut connection = PgConnection::connect_with(&options).await.map_err(|error| {
        match error.as_database_error().and_then(|e| e.try_downcast_ref::<PgDatabaseError>()) {
            // SQLSTATE class 28: invalid authorization (wrong password, no pg_hba entry).
            Some(database_error) if database_error.code().starts_with("28") => {
                failure.authentication(database_error.message())
            }
            // 3D000 invalid_catalog_name: the database does not exist.
            Some(database_error) if database_error.code() == "3D000" => {
                failure.unknown_database(database_error.message())
            }
            _ => failure.protocol(error.to_string()),
        }
    })?;
    let pinged = connection.ping().await.map_err(|error| failure.protocol(error.to_string()));
    // Closing is courtesy; the check already answered.
    let _ = connection.close().await;
    pinged
}

async fn verify_mysql(
    credentials: &DatabaseCredentials,
    failure: &Failure<'_>,
) -> Result<(), ExternalDatabaseError> {
    let options = MySqlConnectOptions::new()
        .host(&credentials.host)
        .port(credentials.port)
        .username(&credentials.user)
        .password(&credentials.password)
        .database(&credentials.database)
        .disable_statement_logging();
    let mut connection = MySqlConnection::connect_with(&options).await.map_err(|error| {
        match error.as_database_error().and_then(|e| e.try_downcast_ref::<MySqlDatabaseError>()) {
            // ER_ACCESS_DENIED_ERROR (bad user or password), ER_DBACCESS_DENIED_ERROR
            // (the user may not use that database).
            Some(database_error) if matches!(database_error.number(), 1045 | 1044 | 1698) => {
                failure.authentication(database_error.message())
            }
            // ER_BAD_DB_ERROR.
            Some(database_error) if database_error.number() == 1049 => {
                failure.unknown_database(database_error.message())
            }
            _ => failure.protocol(error.to_string()),
        }
    })?;
    let pinged = connection.ping().await.map_err(|error| failure.protocol(error.to_string()));
    let _ = connection.close().await;
    pinged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials(port: u16, password: &str) -> DatabaseCredentials {
        DatabaseCredentials {
            host: "127.0.0.1".into(),
            port,
            user: "app".into(),
            password: password.into(),
            database: "app".into(),
        }
    }

    #[tokio::test]
    async fn a_port_nobody_listens_on_is_reported_as_unreachable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let error = NetworkDatabaseVerifier
            .verify(DatabaseEngine::Postgresql, &credentials(port, "pw"), Duration::from_secs(5))
            .await
            .unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with(&format!("could not connect to 127.0.0.1:{port} within 5 s: ")),
            "{message}"
        );
    }

    #[test]
    fn server_messages_never_carry_the_password() {
        let credentials = credentials(1, "s3cret-pw");
        let failure = Failure { engine: DatabaseEngine::Redis, credentials: &credentials };
        let error = failure.authentication("user app with password s3cret-pw refused");
        assert_eq!(
            error.to_string(),
            "authentication failed for user \"app\" at 127.0.0.1:1: user app with password ******** refused"
        );
    }
}
