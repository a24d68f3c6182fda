//! `encryption` and `secureHash` values of managed objects, shaped as IDM's `$crypto` objects.
//!
//! * Encrypted: `{"$crypto": {"type": "x-simple-encryption", "value": {"cipher":
//!   "AES/CBC/PKCS5Padding", "stableId", "iv", "data", "keySize": 16, "mac", "purpose"}}}`.
//!   AES-128-CBC with a fresh random IV per value; `mac` is HMAC-SHA-256 over iv‖data
//!   (truncated to 16 bytes, as IDM's is 16 bytes long) so a tampered or foreign value is
//!   refused instead of decrypting to garbage. The clear value is the JSON text of the
//!   property's value (so objects and numbers round-trip, as IDM's do).
//! * Hashed: `{"$crypto": {"type": "salted-hash", "value": {"algorithm": "SHA-256", "data"}}}`,
//!   `data` = base64(SHA-256(clear ‖ salt) ‖ salt) with a 16-byte random salt.
//!
//! The key is 32 random bytes (16 for AES, 16 for the MAC) kept base64 in a file: the one
//! `[crypto] key_file` names, else `recond.key` in the data folder, created on first start
//! with mode 0600. [`install`] makes one key the process's key for the free functions that
//! the script host's `openidm.encrypt/decrypt/isEncrypted/hash/isHashed` call.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, RwLock};

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::{Digest, Sha256, Sha512};

/// The `stableId` recond writes (the alias of its one key).
pub const STABLE_ID: &str = "recond-sym-default";
/// The `purpose` IDM gives property encryption.
pub const PURPOSE: &str = "idm.password.encryption";
const ENCRYPTED_TYPE: &str = "x-simple-encryption";
const HASHED_TYPE: &str = "salted-hash";
const KEY_FILE: &str = "recond.key";

type Enc = cbc::Encryptor<aes::Aes128>;
type Dec = cbc::Decryptor<aes::Aes128>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoError(pub String);

impl fmt::Display for CryptoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CryptoError {}

fn err(m: impl Into<String>) -> CryptoError {
    CryptoError(m.into())
}

/// recond's symmetric key.
#[derive(Clone)]
pub struct Key {
    enc: [u8; 16],
    mac: [u8; 16],
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(..)")
    }
}

fn random<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b).map_err(|e| err(format!("no system randomness: {e}")))?;
    Ok(b)
}

impl Key {
    pub fn generate() -> Result<Key, CryptoError> {
        let b: [u8; 32] = random()?;
        Ok(Key::from_bytes(&b))
    }

    fn from_bytes(b: &[u8; 32]) -> Key {
        let mut enc = [0u8; 16];
        let mut mac = [0u8; 16];
        enc.copy_from_slice(&b[..16]);
        mac.copy_from_slice(&b[16..]);
        Key { enc, mac }
    }

    fn to_text(&self) -> String {
        let mut b = Vec::with_capacity(32);
        b.extend_from_slice(&self.enc);
        b.extend_from_slice(&self.mac);
        B64.encode(b)
    }

    /// Reads the key file, or creates it (0600) when `create` and it does not exist.
    pub fn load(path: &Path, create: bool) -> Result<Key, CryptoError> {
        let where_ = path.display();
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let bytes = B64
                    .decode(text.trim())
                    .map_err(|e| err(format!("key file {where_}: not base64: {e}")))?;
                let arr: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                    err(format!(
                        "key file {where_}: expected 32 bytes, found {}",
                        bytes.len()
                    ))
                })?;
                Ok(Key::from_bytes(&arr))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let key = Key::generate()?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
                }
                write_private(path, &key.to_text())
                    .map_err(|e| err(format!("cannot write key file {where_}: {e}")))?;
                tracing::info!(file = %where_, "generated the encryption key");
                Ok(key)
            }
            Err(e) => Err(err(format!("cannot read key file {where_}: {e}"))),
        }
    }

    /// The key `[crypto] key_file` names (which must exist), else the data folder's.
    pub fn for_server(key_file: Option<&Path>, data_dir: &Path) -> Result<Key, CryptoError> {
        match key_file {
            Some(f) => Key::load(f, false),
            None => Key::load(&data_dir.join(KEY_FILE), true),
        }
    }

    fn mac_of(&self, iv: &[u8], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.mac)
            .map_err(|e| err(format!("bad MAC key: {e}")))?;
        m.update(iv);
        m.update(data);
        Ok(m.finalize().into_bytes()[..16].to_vec())
    }

    pub fn encrypt(&self, clear: &Value) -> Result<Value, CryptoError> {
        let text = serde_json::to_string(clear).map_err(|e| err(e.to_string()))?;
        let iv: [u8; 16] = random()?;
        let n = text.len();
        let mut buf = vec![0u8; n + 16];
        buf[..n].copy_from_slice(text.as_bytes());
        let data = Enc::new(&self.enc.into(), &iv.into())
            .encrypt_padded_mut::<Pkcs7>(&mut buf, n)
            .map_err(|_| err("encryption buffer too small"))?
            .to_vec();
        let mac = self.mac_of(&iv, &data)?;
        Ok(json!({"$crypto": {"type": ENCRYPTED_TYPE, "value": {
            "cipher": "AES/CBC/PKCS5Padding",
            "stableId": STABLE_ID,
            "iv": B64.encode(iv),
            "data": B64.encode(&data),
            "keySize": 16,
            "mac": B64.encode(mac),
            "purpose": PURPOSE,
        }}}))
    }

    pub fn decrypt(&self, v: &Value) -> Result<Value, CryptoError> {
        if !is_encrypted(v) {
            return Err(err("the value is not an encrypted $crypto object"));
        }
        let val = &v["$crypto"]["value"];
        let field = |k: &str| -> Result<Vec<u8>, CryptoError> {
            let s = val[k]
                .as_str()
                .ok_or_else(|| err(format!("$crypto value has no \"{k}\"")))?;
            B64.decode(s)
                .map_err(|e| err(format!("$crypto \"{k}\" is not base64: {e}")))
        };
        let (iv, mut data) = (field("iv")?, field("data")?);
        let mac = field("mac")?;
        if self.mac_of(&iv, &data)? != mac {
            return Err(err(format!(
                "cannot decrypt: the value was not encrypted with this server's key (stableId {})",
                val["stableId"]
            )));
        }
        let iv: [u8; 16] = iv
            .as_slice()
            .try_into()
            .map_err(|_| err("$crypto iv is not 16 bytes"))?;
        let clear = Dec::new(&self.enc.into(), &iv.into())
            .decrypt_padded_mut::<Pkcs7>(&mut data)
            .map_err(|_| err("cannot decrypt: bad padding"))?;
        let text = std::str::from_utf8(clear).map_err(|_| err("decrypted value is not UTF-8"))?;
        // Values recond encrypted are JSON text; anything else is taken as a plain string.
        Ok(serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string())))
    }
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

fn crypto_type(v: &Value) -> Option<&str> {
    v.get("$crypto")?.get("type")?.as_str()
}

/// Whether `v` is an encrypted `$crypto` object.
pub fn is_encrypted(v: &Value) -> bool {
    crypto_type(v) == Some(ENCRYPTED_TYPE)
}

/// Whether `v` is a hashed `$crypto` object.
pub fn is_hashed(v: &Value) -> bool {
    crypto_type(v) == Some(HASHED_TYPE)
}

fn digest(algorithm: &str, clear: &[u8], salt: &[u8]) -> Result<Vec<u8>, CryptoError> {
    Ok(match algorithm.to_ascii_uppercase().as_str() {
        "SHA-256" => {
            let mut h = Sha256::new();
            h.update(clear);
            h.update(salt);
            h.finalize().to_vec()
        }
        "SHA-512" => {
            let mut h = Sha512::new();
            h.update(clear);
            h.update(salt);
            h.finalize().to_vec()
        }
        other => {
            return Err(err(format!(
                "hash algorithm \"{other}\" is not supported (SHA-256, SHA-512)"
            )))
        }
    })
}

/// The text hashed for `v`: a string as is, anything else as its JSON text.
fn hash_input(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Hashes `clear` with a fresh salt; `algorithm` is `SHA-256` (IDM's default) or `SHA-512`.
pub fn hash(clear: &Value, algorithm: &str) -> Result<Value, CryptoError> {
    let salt: [u8; 16] = random()?;
    let mut data = digest(algorithm, hash_input(clear).as_bytes(), &salt)?;
    data.extend_from_slice(&salt);
    Ok(json!({"$crypto": {"type": HASHED_TYPE, "value": {
        "algorithm": algorithm.to_ascii_uppercase(),
        "data": B64.encode(data),
    }}}))
}

/// Whether `clear` hashes to the hashed `$crypto` object `hashed`.
pub fn verify_hash(hashed: &Value, clear: &Value) -> Result<bool, CryptoError> {
    if !is_hashed(hashed) {
        return Err(err("the value is not a hashed $crypto object"));
    }
    let val = &hashed["$crypto"]["value"];
    let algorithm = val["algorithm"].as_str().unwrap_or("SHA-256");
    let data = B64
        .decode(val["data"].as_str().unwrap_or_default())
        .map_err(|e| err(format!("$crypto data is not base64: {e}")))?;
    let len = digest(algorithm, b"", b"")?.len();
    if data.len() < len {
        return Err(err("$crypto data is too short"));
    }
    let (expected, salt) = data.split_at(len);
    Ok(digest(algorithm, hash_input(clear).as_bytes(), salt)? == expected)
}

static INSTALLED: RwLock<Option<Arc<Key>>> = RwLock::new(None);

/// Makes `key` the key of [`encrypt`] and [`decrypt`] (the server does so at startup).
pub fn install(key: Arc<Key>) {
    if let Ok(mut slot) = INSTALLED.write() {
        *slot = Some(key);
    }
}

fn installed() -> Result<Arc<Key>, CryptoError> {
    INSTALLED
        .read()
        .ok()
        .and_then(|k| k.clone())
        .ok_or_else(|| err("no encryption key is loaded"))
}

/// Encrypts with the server's key (`openidm.encrypt`).
pub fn encrypt(clear: &Value) -> Result<Value, CryptoError> {
    installed()?.encrypt(clear)
}

/// Decrypts with the server's key (`openidm.decrypt`).
pub fn decrypt(v: &Value) -> Result<Value, CryptoError> {
    installed()?.decrypt(v)
}

/// The script host's `openidm.encrypt/decrypt/hash` over the server's installed key (the
/// same key and `$crypto` shapes as managed objects' `encryption` and `secureHash`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerCrypto;

impl crate::script::ScriptCrypto for ServerCrypto {
    fn encrypt(&self, value: &Value, _cipher: &str, _alias: &str) -> Result<Value, String> {
        encrypt(value).map_err(|e| format!("openidm.encrypt: {e}"))
    }
    fn decrypt(&self, value: &Value) -> Result<Value, String> {
        if !is_encrypted(value) {
            return Ok(value.clone());
        }
        decrypt(value).map_err(|e| format!("openidm.decrypt: {e}"))
    }
    fn hash(&self, value: &Value, algorithm: Option<&str>) -> Result<Value, String> {
        hash(value, algorithm.unwrap_or("SHA-256")).map_err(|e| format!("openidm.hash: {e}"))
    }
    fn is_encrypted(&self, value: &Value) -> bool {
        is_encrypted(value)
    }
    fn is_hashed(&self, value: &Value) -> bool {
        is_hashed(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypts_and_decrypts_any_json() {
        let k = Key::generate().expect("key");
        for v in [json!("s3cret"), json!({"a": [1, 2]}), json!(42)] {
            let e = k.encrypt(&v).expect("enc");
            assert!(is_encrypted(&e));
            assert!(!e.to_string().contains("s3cret"));
            assert_eq!(k.decrypt(&e).expect("dec"), v);
        }
    }

    #[test]
    fn another_key_or_a_tampered_value_is_refused() {
        let (k1, k2) = (Key::generate().expect("k"), Key::generate().expect("k"));
        let mut e = k1.encrypt(&json!("x")).expect("enc");
        assert!(k2.decrypt(&e).is_err());
        e["$crypto"]["value"]["data"] = json!(B64.encode([0u8; 16]));
        assert!(k1.decrypt(&e).is_err());
    }

    #[test]
    fn hashes_verify_and_are_salted() {
        let h1 = hash(&json!("pw"), "SHA-256").expect("hash");
        let h2 = hash(&json!("pw"), "SHA-256").expect("hash");
        assert!(is_hashed(&h1) && !is_encrypted(&h1));
        assert_ne!(h1, h2);
        assert!(verify_hash(&h1, &json!("pw")).expect("verify"));
        assert!(!verify_hash(&h1, &json!("pW")).expect("verify"));
        let h3 = hash(&json!("pw"), "SHA-512").expect("hash");
        assert!(verify_hash(&h3, &json!("pw")).expect("verify"));
        assert!(hash(&json!("pw"), "MD5").is_err());
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = std::env::temp_dir().join(format!("recond-key-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let k1 = Key::for_server(None, &dir).expect("create");
        let k2 = Key::for_server(None, &dir).expect("reuse");
        let e = k1.encrypt(&json!("v")).expect("enc");
        assert_eq!(k2.decrypt(&e).expect("dec"), json!("v"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(KEY_FILE))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(Key::for_server(Some(&dir.join("missing")), &dir).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
