//! Encryption of secrets at rest (variable values, Git tokens, deploy keys) with the
//! server's master key: XChaCha20-Poly1305 with a random nonce per value. The key file is
//! created once with mode 0600; losing it makes stored secrets unreadable.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
/// Format tag in front of every ciphertext, so the scheme can change later.
const VERSION: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read the master key {path}: {source}")]
    ReadKey { path: String, source: std::io::Error },
    #[error("cannot create the master key {path}: {source}")]
    WriteKey { path: String, source: std::io::Error },
    #[error("the master key {path} is malformed: it must hold {KEY_LEN} bytes as 64 hex digits")]
    MalformedKey { path: String },
    #[error(
        "the master key {path} is readable by other users (mode {mode:o}); run `chmod 600 {path}`"
    )]
    KeyTooOpen { path: String, mode: u32 },
    #[error("a stored secret cannot be decrypted: the master key differs from the one that encrypted it")]
    Decrypt,
    #[error("encryption failed")]
    Encrypt,
}

/// The key that encrypts every secret in the store.
#[derive(Clone)]
pub struct MasterKey {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(********)")
    }
}

impl MasterKey {
    /// Loads the key at `path`, creating it (mode 0600) when it does not exist.
    /// Returns the key and whether it was created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), SecretError> {
        let shown = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let mode = std::fs::metadata(path)
                    .map_err(|source| SecretError::ReadKey { path: shown.clone(), source })?
                    .permissions()
                    .mode()
                    & 0o777;
                if mode & 0o077 != 0 {
                    return Err(SecretError::KeyTooOpen { path: shown, mode });
                }
                let bytes = hex::decode(text.trim())
                    .map_err(|_| SecretError::MalformedKey { path: shown.clone() })?;
                let key: [u8; KEY_LEN] =
                    bytes.try_into().map_err(|_| SecretError::MalformedKey { path: shown })?;
                Ok((Self::from_bytes(&key), false))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; KEY_LEN];
                rand::rngs::OsRng.fill_bytes(&mut key);
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|source| SecretError::WriteKey { path: shown.clone(), source })?;
                file.write_all(hex::encode(key).as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(|source| SecretError::WriteKey { path: shown, source })?;
                Ok((Self::from_bytes(&key), true))
            }
            Err(source) => Err(SecretError::ReadKey { path: shown, source }),
        }
    }

    pub fn from_bytes(key: &[u8; KEY_LEN]) -> Self {
        Self { cipher: XChaCha20Poly1305::new(key.into()) }
    }

    pub fn encrypt(&self, plaintext: &[u8]) -> Result<Vec<u8>, SecretError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), plaintext)
            .map_err(|_| SecretError::Encrypt)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    pub fn decrypt(&self, ciphertext: &[u8]) -> Result<Vec<u8>, SecretError> {
        if ciphertext.len() < 1 + NONCE_LEN || ciphertext[0] != VERSION {
            return Err(SecretError::Decrypt);
        }
        let (nonce, sealed) = ciphertext[1..].split_at(NONCE_LEN);
        self.cipher.decrypt(XNonce::from_slice(nonce), sealed).map_err(|_| SecretError::Decrypt)
    }

    pub fn decrypt_string(&self, ciphertext: &[u8]) -> Result<String, SecretError> {
        String::from_utf8(self.decrypt(ciphertext)?).map_err(|_| SecretError::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_key_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let (key, created) = MasterKey::load_or_create(&path).unwrap();
        assert!(created);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let sealed = key.encrypt(b"hunter2").unwrap();
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        let (again, created) = MasterKey::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(again.decrypt_string(&sealed).unwrap(), "hunter2");
        let other = MasterKey::from_bytes(&[7; 32]);
        assert!(other.decrypt(&sealed).is_err());
    }
}
