//! Authentication: `X-OpenIDM-Username`/`X-OpenIDM-Password`, HTTP Basic, and static bearer
//! tokens from `[[users]]`. Passwords are plain or PHC hashes (argon2id/argon2i/argon2d).
//!
//! Comparisons of secrets are constant-time in the secret's length so that a timing probe
//! cannot recover a password or token byte by byte.

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
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn password_matches(secret: &Secret, password: &str) -> bool {
    match secret {
        Secret::Plain(p) => constant_time_eq(p.as_bytes(), password.as_bytes()),
        Secret::Hash(h) => match PasswordHash::new(h) {
            Ok(parsed) => argon2::Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
            Err(_) => false,
        },
    }
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
    pub fn needs_hashing(&self, users: &[User]) -> bool {
        match self {
            Credentials::Password { user, .. } => users
                .iter()
                .any(|u| u.username == *user && matches!(u.secret, Secret::Hash(_))),
            Credentials::Bearer(_) => false,
        }
    }

    /// The name of the user these credentials prove, if any.
    pub fn verify(&self, users: &[User]) -> Option<String> {
        let found = match self {
            Credentials::Password { user, password } => users
                .iter()
                .find(|x| x.username == *user && password_matches(&x.secret, password)),
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
    }
}
