//! The store's error type.

/// What went wrong in the store. Messages never contain secret values (the store only
/// sees ciphertext).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Conflict(String),
    #[error("the store holds an unreadable {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("database migration failed: {0}")]
    Migration(String),
    #[error("the store failed: {0}")]
    Database(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        Self::Database(error)
    }
}

impl StoreError {
    pub(crate) fn corrupt(what: &'static str, detail: impl ToString) -> Self {
        Self::Corrupt { what, detail: detail.to_string() }
    }

    /// Turns a unique-constraint violation into a `Conflict` with the given message.
    pub(crate) fn unique_as_conflict(error: sqlx::Error, message: impl FnOnce() -> String) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Conflict(message()),
            _ => Self::Database(error),
        }
    }
}
