//! Secret redaction for process output: every occurrence of each secret becomes
//! [`REDACTION_MASK`]. Works on raw bytes so that output which is not valid UTF-8 cannot
//! hide a secret from the matcher, and truncates long lines without ever leaving a
//! partial secret behind.

use std::ffi::OsString;

/// What a secret is replaced with.
pub const REDACTION_MASK: &str = "********";

/// Replaces every occurrence of each (non-empty) secret in `text` by [`REDACTION_MASK`].
pub fn redact(text: &str, secrets: &[String]) -> String {
    Redactor::new(secrets).redact(text.as_bytes(), usize::MAX)
}

/// Redacted, lossy rendering of an argument list (for debug output only).
pub(crate) fn redact_os_list(values: &[OsString], secrets: &[String]) -> Vec<String> {
    let redactor = Redactor::new(secrets);
    values.iter().map(|value| redactor.redact(value.as_encoded_bytes(), usize::MAX)).collect()
}

/// The secrets of one process, longest first so that a secret containing another one is
/// masked as a whole.
#[derive(Clone)]
pub(crate) struct Redactor {
    secrets: Vec<Vec<u8>>,
}

impl Redactor {
    pub(crate) fn new(secrets: &[String]) -> Self {
        let mut secrets: Vec<Vec<u8>> = secrets
            .iter()
            .filter(|secret| !secret.is_empty())
            .map(|secret| secret.as_bytes().to_vec())
            .collect();
        secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
        secrets.dedup();
        Self { secrets }
    }

    /// Length of the longest secret: a line reader keeps this many bytes beyond its line
    /// limit so that a secret starting before the limit is always seen whole.
    pub(crate) fn longest(&self) -> usize {
        self.secrets.first().map_or(0, Vec::len)
    }

    /// Redacts `raw` and cuts it after `limit` bytes of input. A secret that starts
    /// before the limit is masked as a whole; input after the limit (including the start
    /// of a secret) is dropped and the line is marked as truncated.
    pub(crate) fn redact(&self, raw: &[u8], limit: usize) -> String {
        let mut out = Vec::with_capacity(raw.len().min(limit));
        let mut index = 0;
        let mut truncated = false;
        while index < raw.len() {
            if index >= limit {
                truncated = true;
                break;
            }
            let rest = &raw[index..];
            if let Some(secret) = self.secrets.iter().find(|secret| rest.starts_with(secret)) {
                out.extend_from_slice(REDACTION_MASK.as_bytes());
                index += secret.len();
            } else {
                out.push(raw[index]);
                index += 1;
            }
        }
        let mut text = String::from_utf8_lossy(&out).into_owned();
        if truncated {
            text.push_str(" [line truncated]");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(values: &[&str]) -> Vec<String> {
        values.iter().map(|value| (*value).to_owned()).collect()
    }

    #[test]
    fn every_occurrence_is_masked() {
        let text = "token=abc123 again abc123abc123.";
        assert_eq!(redact(text, &secrets(&["abc123"])), "token=******** again ****************.");
    }

    #[test]
    fn longer_secret_wins_over_its_substring() {
        let out =
            redact("x hunter2-extended y hunter2", &secrets(&["hunter2", "hunter2-extended"]));
        assert_eq!(out, "x ******** y ********");
    }

    #[test]
    fn empty_secrets_are_ignored() {
        assert_eq!(redact("nothing to hide", &secrets(&[""])), "nothing to hide");
    }

    #[test]
    fn truncation_never_leaves_part_of_a_secret() {
        let redactor = Redactor::new(&secrets(&["SECRETVALUE"]));
        // The secret starts just before the limit: it is masked whole.
        let out = redactor.redact(b"0123456789SECRETVALUE tail", 12);
        assert_eq!(out, "0123456789******** [line truncated]");
        // The secret starts after the limit: nothing of it is kept.
        let out = redactor.redact(b"0123456789xxSECRETVALUE", 12);
        assert_eq!(out, "0123456789xx [line truncated]");
    }

    #[test]
    fn invalid_utf8_does_not_hide_a_secret() {
        let redactor = Redactor::new(&secrets(&["s3cr3t"]));
        let out = redactor.redact(b"\xff\xfes3cr3t\xff", usize::MAX);
        assert!(!out.contains("s3cr3t"), "{out}");
        assert!(out.contains(REDACTION_MASK));
    }
}
