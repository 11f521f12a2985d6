//! AWS Signature Version 4 for S3 requests (header-based, the payload's SHA-256 signed):
//! the canonical request, the string to sign, the derived signing key and the
//! `Authorization` header. Pure functions; the clock is a parameter.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// SHA-256 of an empty payload.
pub(crate) const EMPTY_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// An access key pair; the secret never appears in `Debug` output.
#[derive(Clone)]
pub struct Credentials {
    access_key_id: String,
    secret_access_key: String,
}

impl Credentials {
    pub fn new(access_key_id: String, secret_access_key: String) -> Self {
        Self { access_key_id, secret_access_key }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// What is signed of a request (besides `host`, `x-amz-content-sha256`, `x-amz-date`).
pub(crate) struct Request<'a> {
    pub(crate) method: &'a str,
    /// `host[:port]` as sent in the Host header.
    pub(crate) host: &'a str,
    /// The URI-encoded path.
    pub(crate) path: &'a str,
    pub(crate) payload_sha256: &'a str,
    pub(crate) region: &'a str,
}

/// The headers to send.
pub(crate) struct Signed {
    pub(crate) amz_date: String,
    pub(crate) authorization: String,
}

/// Percent-encodes as SigV4 requires: everything but `A-Za-z0-9-_.~` (and `/` in paths).
pub(crate) fn uri_encode(text: &str, keep_slash: bool) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                encoded.push(char::from(byte))
            }
            b'/' if keep_slash => encoded.push('/'),
            _ => encoded.push_str(&format!("%{byte:02X}")),
        }
    }
    encoded
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    // HMAC accepts keys of any length: `new_from_slice` cannot fail here.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return Vec::new(),
    };
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn amz_date(now: time::OffsetDateTime) -> String {
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

/// Signs a request with the `host`, `x-amz-content-sha256` and `x-amz-date` headers and
/// any `extra_headers` (lower-case names).
pub(crate) fn sign_with_headers(
    request: &Request<'_>,
    extra_headers: &[(&str, &str)],
    credentials: &Credentials,
    now: time::OffsetDateTime,
) -> Signed {
    let amz_date = amz_date(now.to_offset(time::UtcOffset::UTC));
    let date = &amz_date[..8];
    let mut headers: Vec<(&str, &str)> = vec![
        ("host", request.host),
        ("x-amz-content-sha256", request.payload_sha256),
        ("x-amz-date", &amz_date),
    ];
    headers.extend_from_slice(extra_headers);
    headers.sort_by(|a, b| a.0.cmp(b.0));
    let canonical_headers: String =
        headers.iter().map(|(name, value)| format!("{name}:{}\n", value.trim())).collect();
    let signed_headers = headers.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(";");
    let canonical_request = format!(
        "{}\n{}\n\n{canonical_headers}\n{signed_headers}\n{}",
        request.method, request.path, request.payload_sha256
    );
    let scope = format!("{date}/{}/s3/aws4_request", request.region);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let key = hmac(format!("AWS4{}", credentials.secret_access_key).as_bytes(), date);
    let key = hmac(&key, request.region);
    let key = hmac(&key, "s3");
    let key = hmac(&key, "aws4_request");
    let signature = hex::encode(hmac(&key, &string_to_sign));
    Signed {
        authorization: format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            credentials.access_key_id
        ),
        amz_date,
    }
}

pub(crate) fn sign(
    request: &Request<'_>,
    credentials: &Credentials,
    now: time::OffsetDateTime,
) -> Signed {
    sign_with_headers(request, &[], credentials, now)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The example "GET Object" of AWS's documentation of Signature Version 4 for S3
    /// (header-based authentication), with its published signature.
    #[test]
    fn matches_the_aws_documentation_example() {
        let credentials = Credentials::new(
            "AKIAIOSFODNN7EXAMPLE".into(),
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
        );
        let now = time::OffsetDateTime::from_unix_timestamp(1_369_353_600).unwrap();
        let signed = sign_with_headers(
            &Request {
                method: "GET",
                host: "examplebucket.s3.amazonaws.com",
                path: "/test.txt",
                payload_sha256: EMPTY_SHA256,
                region: "us-east-1",
            },
            &[("range", "bytes=0-9")],
            &credentials,
            now,
        );
        assert_eq!(signed.amz_date, "20130524T000000Z");
        assert_eq!(
            signed.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn encodes_like_sigv4() {
        assert_eq!(uri_encode("a b/c~d+e", true), "a%20b/c~d%2Be");
        assert_eq!(uri_encode("a/b", false), "a%2Fb");
    }
}
