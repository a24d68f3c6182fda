//! Authentication: `X-OpenIDM-Username`/`X-OpenIDM-Password`, HTTP Basic, and static bearer
//! tokens from `[[users]]`. Passwords are plain or PHC hashes (argon2id/argon2i/argon2d).
//!
//! Comparisons of secrets are constant-time (`subtle`) so that a timing probe cannot recover a
//! password or token byte by byte. When any user has a password hash, a password for an unknown
//! user name is verified against a dummy hash, so the answer takes as long as for a known one
//! and timing does not reveal which user names exist.

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use hyper::header::{HeaderMap, AUTHORIZATION};

use crate::config::{Secret, User};

/// Checks that a PHC string parses and names an algorithm we can verify.
pub fn check_phc(hash: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(hash).map_err(|e| format!("not a PHC string: {e}"))?;
    match parsed.algorithm.as_str() {
        "argon2id" | "argon2i" | "argon2d" => Ok(()),
        other => Err(format!(
            "unsupported hash algorithm \"{other}\" (argon2id, argon2i or argon2d)"
        )),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

fn hash_matches(hash: &str, password: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

fn password_matches(secret: &Secret, password: &str) -> bool {
    match secret {
        Secret::Plain(p) => constant_time_eq(p.as_bytes(), password.as_bytes()),
        Secret::Hash(h) => hash_matches(h, password),
    }
}

/// Verifications against the dummy hash so far (observable by tests).
static DUMMY_VERIFICATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub fn dummy_verifications() -> u64 {
    DUMMY_VERIFICATIONS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Verifies `password` against a hash no password matches, made once with argon2's default
/// parameters (those `recond` users are told to hash with).
fn verify_dummy(password: &str) {
    use argon2::password_hash::{PasswordHasher, SaltString};
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let hash = DUMMY.get_or_init(|| {
        let salt = SaltString::encode_b64(b"recond-dummy-salt").expect("a 17-byte salt is valid");
        argon2::Argon2::default()
            .hash_password(b"no password is this one", &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    });
    DUMMY_VERIFICATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // The result is irrelevant: only the time it takes matters.
    let _ = hash_matches(hash, password);
}

fn any_hashed(users: &[User]) -> bool {
    users.iter().any(|u| matches!(u.secret, Secret::Hash(_)))
}

/// The credentials a request carries, parsed once: `X-OpenIDM-Username` and
/// `X-OpenIDM-Password` when both are present, else the `Authorization` header.
pub enum Credentials {
    /// The OpenIDM headers or HTTP Basic.
    Password { user: String, password: String },
    /// A static bearer token.
    Bearer(String),
}

impl Credentials {
    pub fn from_headers(headers: &HeaderMap) -> Option<Credentials> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        if let (Some(user), Some(password)) =
            (header("x-openidm-username"), header("x-openidm-password"))
        {
            return Some(Credentials::Password {
                user: user.to_string(),
                password: password.to_string(),
            });
        }
        let auth = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
        let (scheme, rest) = auth.split_once(' ')?;
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("basic") {
            use base64::Engine;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()?;
            let text = String::from_utf8(decoded).ok()?;
            let (user, password) = text.split_once(':')?;
            return Some(Credentials::Password {
                user: user.to_string(),
                password: password.to_string(),
            });
        }
        if scheme.eq_ignore_ascii_case("bearer") {
            return Some(Credentials::Bearer(rest.to_string()));
        }
        None
    }

    /// Whether checking these credentials means verifying a password hash (slow on purpose,
    /// so the caller moves it off the async runtime).
    /// An unknown user name needs it too when any user has a hash (the dummy verification).
    pub fn needs_hashing(&self, users: &[User]) -> bool {
        match self {
            Credentials::Password { user, .. } => {
                match users.iter().find(|u| u.username == *user) {
                    Some(u) => matches!(u.secret, Secret::Hash(_)),
                    None => any_hashed(users),
                }
            }
            Credentials::Bearer(_) => false,
        }
    }

    /// The user name the credentials claim (`None` for a bearer token).
    pub fn user(&self) -> Option<&str> {
        match self {
            Credentials::Password { user, .. } => Some(user),
            Credentials::Bearer(_) => None,
        }
    }

    /// The password, for the login guard's fingerprint.
    pub fn password(&self) -> Option<&str> {
        match self {
            Credentials::Password { password, .. } => Some(password),
            Credentials::Bearer(_) => None,
        }
    }

    /// The name of the user these credentials prove, if any.
    pub fn verify(&self, users: &[User]) -> Option<String> {
        let found = match self {
            Credentials::Password { user, password } => {
                match users.iter().find(|x| x.username == *user) {
                    Some(x) => password_matches(&x.secret, password).then_some(x),
                    None => {
                        if any_hashed(users) {
                            verify_dummy(password);
                        }
                        None
                    }
                }
            }
            Credentials::Bearer(token) => users.iter().find(|x| {
                x.tokens
                    .iter()
                    .any(|t| constant_time_eq(t.as_bytes(), token.as_bytes()))
            }),
        };
        found.map(|x| x.username.clone())
    }
}

/// The authenticated user's name, or None when the request carries no valid credentials.
pub fn authenticate(headers: &HeaderMap, users: &[User]) -> Option<String> {
    Credentials::from_headers(headers)?.verify(users)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn users() -> Vec<User> {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::encode_b64(b"0123456789abcdef").expect("valid salt");
        let hash = argon2::Argon2::default()
            .hash_password(b"s3cret", &salt)
            .expect("hash")
            .to_string();
        vec![
            User {
                username: "admin".into(),
                secret: Secret::Plain("pw".into()),
                tokens: vec!["tok-123456".into()],
            },
            User {
                username: "hashed".into(),
                secret: Secret::Hash(hash),
                tokens: vec![],
            },
        ]
    }

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, HeaderValue::from_str(v).expect("header"));
        }
        m
    }

    #[test]
    fn each_form_and_its_failures() {
        let u = users();
        assert_eq!(
            authenticate(
                &h(&[
                    ("x-openidm-username", "admin"),
                    ("x-openidm-password", "pw")
                ]),
                &u
            )
            .as_deref(),
            Some("admin")
        );
        assert_eq!(
            authenticate(
                &h(&[
                    ("x-openidm-username", "admin"),
                    ("x-openidm-password", "no")
                ]),
                &u
            ),
            None
        );
        assert_eq!(
            authenticate(&h(&[("authorization", "Basic YWRtaW46cHc=")]), &u).as_deref(),
            Some("admin")
        );
        assert_eq!(
            authenticate(&h(&[("authorization", "Basic !!!")]), &u),
            None
        );
        assert_eq!(
            authenticate(&h(&[("authorization", "Bearer tok-123456")]), &u).as_deref(),
            Some("admin")
        );
        assert_eq!(
            authenticate(&h(&[("authorization", "Bearer tok-12345")]), &u),
            None
        );
        assert_eq!(
            authenticate(
                &h(&[
                    ("x-openidm-username", "hashed"),
                    ("x-openidm-password", "s3cret")
                ]),
                &u
            )
            .as_deref(),
            Some("hashed")
        );
        assert_eq!(
            authenticate(
                &h(&[
                    ("x-openidm-username", "hashed"),
                    ("x-openidm-password", "wrong")
                ]),
                &u
            ),
            None
        );
        assert_eq!(authenticate(&h(&[]), &u), None);
    }

    #[test]
    fn phc_check() {
        assert!(check_phc("$argon2id$v=19$m=19456,t=2,p=1$MDEyMzQ1Njc4OWFiY2RlZg$abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ").is_ok());
        assert!(check_phc("plain").is_err());
        assert!(check_phc("$pbkdf2-sha256$i=1000$c2FsdA$aGFzaA").is_err());
    }

    #[test]
    fn only_hashed_passwords_need_hashing() {
        let u = users();
        let creds = |pairs: &[(&'static str, &str)]| {
            Credentials::from_headers(&h(pairs)).expect("credentials")
        };
        // "hashed:s3cret" and "admin:pw" in Basic form.
        assert!(creds(&[("authorization", "Basic aGFzaGVkOnMzY3JldA==")]).needs_hashing(&u));
        assert!(creds(&[
            ("x-openidm-username", "hashed"),
            ("x-openidm-password", "s3cret")
        ])
        .needs_hashing(&u));
        assert!(!creds(&[("authorization", "Basic YWRtaW46cHc=")]).needs_hashing(&u));
        assert!(!creds(&[("authorization", "Bearer tok-123456")]).needs_hashing(&u));
        assert!(Credentials::from_headers(&h(&[("x-openidm-username", "hashed")])).is_none());
        // An unknown name is verified against the dummy hash when any user has a hash.
        assert!(creds(&[("authorization", "Basic bm9ib2R5Onh4")]).needs_hashing(&u));
        assert!(!creds(&[("authorization", "Basic bm9ib2R5Onh4")]).needs_hashing(&u[..1]));
    }

    #[test]
    fn unknown_users_are_verified_against_a_dummy_hash() {
        let u = users();
        let unknown = h(&[
            ("x-openidm-username", "nobody"),
            ("x-openidm-password", "guess"),
        ]);
        let before = dummy_verifications();
        assert_eq!(authenticate(&unknown, &u), None);
        assert!(dummy_verifications() > before, "the dummy verification ran");
        // Without hashed users there is nothing to hide and nothing is hashed.
        let before = dummy_verifications();
        assert_eq!(authenticate(&unknown, &u[..1]), None);
        assert_eq!(dummy_verifications(), before);
    }
}
