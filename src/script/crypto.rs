//! The back end of `openidm.encrypt/decrypt/isEncrypted/hash/isHashed`.
//!
//! [`ScriptCrypto`] is the seam: the managed object model's crypto (keys kept in the data
//! folder or named in recon.toml) implements it and is installed in [`super::ProjectEnv`]'s
//! `crypto`. Until one is installed, [`BuiltinCrypto`] answers: it hashes (salted SHA-256, in
//! IDM's `$crypto` shape) and recognises IDM's `$crypto` values, but holds no key, so
//! `encrypt` and the decryption of an encrypted value fail with a message saying so; a value
//! that is not encrypted decrypts to itself, as in IDM.

use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// IDM's `$crypto` type of a hashed value.
pub const SALTED_HASH: &str = "salted-hash";

/// Encryption and hashing for scripts. Implementations are shared between threads.
pub trait ScriptCrypto: Send + Sync {
    /// `openidm.encrypt(value, cipher, alias)`: a `{"$crypto": ...}` value.
    fn encrypt(&self, value: &Value, cipher: &str, alias: &str) -> Result<Value, String>;
    /// `openidm.decrypt(value)`: the clear value (a value that is not encrypted is returned
    /// unchanged).
    fn decrypt(&self, value: &Value) -> Result<Value, String>;
    /// `openidm.hash(value, algorithm)`: a `{"$crypto": {"type": "salted-hash", ...}}` value.
    fn hash(&self, value: &Value, algorithm: Option<&str>) -> Result<Value, String>;
    /// `openidm.isEncrypted(value)`.
    fn is_encrypted(&self, value: &Value) -> bool {
        crypto_type(value).is_some_and(|t| t != SALTED_HASH)
    }
    /// `openidm.isHashed(value)`.
    fn is_hashed(&self, value: &Value) -> bool {
        crypto_type(value) == Some(SALTED_HASH)
    }
}

/// The `type` of a `{"$crypto": {"type": ..., "value": ...}}` value.
pub fn crypto_type(value: &Value) -> Option<&str> {
    value.get("$crypto")?.get("type")?.as_str()
}

/// Hashing without a key; no encryption (see the module doc).
#[derive(Debug, Clone, Copy, Default)]
pub struct BuiltinCrypto;

const NO_KEY: &str = "no encryption key is configured for scripts";

impl ScriptCrypto for BuiltinCrypto {
    fn encrypt(&self, _: &Value, _: &str, _: &str) -> Result<Value, String> {
        Err(format!("openidm.encrypt: {NO_KEY}"))
    }

    fn decrypt(&self, value: &Value) -> Result<Value, String> {
        if self.is_encrypted(value) {
            Err(format!("openidm.decrypt: {NO_KEY}"))
        } else {
            Ok(value.clone())
        }
    }

    fn hash(&self, value: &Value, algorithm: Option<&str>) -> Result<Value, String> {
        let algorithm = algorithm.unwrap_or("SHA-256");
        if !algorithm.eq_ignore_ascii_case("SHA-256") {
            return Err(format!(
                "openidm.hash: algorithm {algorithm:?} is not supported (SHA-256 is)"
            ));
        }
        let clear = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let salt = crate::ids::new_uuid().replace('-', "");
        let mut h = Sha256::new();
        h.update(clear.as_bytes());
        h.update(salt.as_bytes());
        let mut data = h.finalize().to_vec();
        data.extend_from_slice(salt.as_bytes());
        Ok(json!({"$crypto": {"type": SALTED_HASH, "value": {
            "algorithm": "SHA-256",
            "data": base64::engine::general_purpose::STANDARD.encode(data),
        }}}))
    }
}

/// Whether `clear` is the value hashed in `hashed` (a salted SHA-256 `$crypto` value).
pub fn hash_matches(clear: &str, hashed: &Value) -> bool {
    let Some(data) = hashed
        .pointer("/$crypto/value/data")
        .and_then(Value::as_str)
        .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
    else {
        return false;
    };
    if data.len() < 32 {
        return false;
    }
    let (digest, salt) = data.split_at(32);
    let mut h = Sha256::new();
    h.update(clear.as_bytes());
    h.update(salt);
    h.finalize().as_slice() == digest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_salted_recognised_and_verifiable() {
        let c = BuiltinCrypto;
        let a = c.hash(&json!("secret"), None).expect("hashes");
        let b = c.hash(&json!("secret"), Some("SHA-256")).expect("hashes");
        assert_ne!(a, b, "salted");
        assert!(c.is_hashed(&a) && !c.is_encrypted(&a));
        assert!(hash_matches("secret", &a) && !hash_matches("other", &a));
        assert!(c.hash(&json!("x"), Some("MD5")).is_err());
    }

    #[test]
    fn without_a_key_only_clear_values_decrypt() {
        let c = BuiltinCrypto;
        assert_eq!(c.decrypt(&json!("plain")).expect("clear"), json!("plain"));
        let enc = json!({"$crypto": {"type": "x-simple-encryption", "value": {}}});
        assert!(c.is_encrypted(&enc));
        assert!(c
            .decrypt(&enc)
            .expect_err("no key")
            .contains("no encryption key"));
        assert!(c.encrypt(&json!("a"), "AES", "k").is_err());
    }
}
