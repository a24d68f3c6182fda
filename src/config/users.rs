//! `[[users]]`: who may call the API. Secrets (passwords, hashes, tokens) never print with
//! `{:?}`.

use std::path::Path;

use serde::Deserialize;

use super::ConfigError;

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UserSection {
    username: String,
    password: Option<String>,
    password_hash: Option<String>,
    #[serde(default)]
    tokens: Vec<String>,
}

// Secrets never print: `{:?}` of a user shows its name and how many tokens it has.
impl std::fmt::Debug for UserSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserSection")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("password_hash", &self.password_hash.as_ref().map(|_| "***"))
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

/// Who may call the API.
#[derive(Clone)]
pub struct User {
    pub username: String,
    pub secret: Secret,
    pub tokens: Vec<String>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("username", &self.username)
            .field("secret", &self.secret)
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

#[derive(Clone)]
pub enum Secret {
    Plain(String),
    /// A PHC string (argon2id, argon2i, argon2d), checked when the config loads.
    Hash(String),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Secret::Plain(_) => "Plain(***)",
            Secret::Hash(_) => "Hash(***)",
        })
    }
}

/// Validates the `[[users]]` tables of the file at `path`.
pub(super) fn users(path: &Path, raw: &[UserSection]) -> Result<Vec<User>, ConfigError> {
    let mut users = Vec::new();
    for (i, u) in raw.iter().enumerate() {
        let at = format!("users[{i}] ({})", u.username);
        let secret = match (&u.password, &u.password_hash) {
            (Some(p), None) => Secret::Plain(p.clone()),
            (None, Some(h)) => {
                crate::http::auth::check_phc(h)
                    .map_err(|e| ConfigError::new(path, format!("{at}: password_hash: {e}")))?;
                Secret::Hash(h.clone())
            }
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    path,
                    format!("{at}: give either password or password_hash, not both"),
                ))
            }
            (None, None) => {
                return Err(ConfigError::new(
                    path,
                    format!("{at}: password or password_hash is required"),
                ))
            }
        };
        if u.username.is_empty() {
            return Err(ConfigError::new(
                path,
                format!("users[{i}]: username must not be empty"),
            ));
        }
        if u.tokens.iter().any(|t| t.len() < 8) {
            return Err(ConfigError::new(
                path,
                format!("{at}: tokens must be at least 8 characters long"),
            ));
        }
        users.push(User {
            username: u.username.clone(),
            secret,
            tokens: u.tokens.clone(),
        });
    }
    Ok(users)
}
