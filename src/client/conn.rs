//! The client's connection: the server URL (from `--url`, or `server.listen` of the
//! configuration file), the credentials (from `--user` / the environment), and blocking JSON
//! requests over HTTP with `ureq`. Every failure here is a [`ClientError`] that says which of
//! usage, connection or authentication went wrong.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::args::ConnArgs;
use super::ClientError;

/// How the client proves who it is.
#[derive(Debug, Clone)]
enum Credentials {
    Password { user: String, password: String },
    Token(String),
    None,
}

/// A server to talk to.
pub struct Conn {
    base: String,
    credentials: Credentials,
    agent: ureq::Agent,
}

/// A response: status and JSON body (`Null` for an empty body).
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// `server.listen` of `file` (`None` when the file does not exist and was not asked for).
fn listen_from_config(file: &Path, asked: bool) -> Result<String, ClientError> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if !asked && e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(DEFAULT_LISTEN.to_string())
        }
        Err(e) => {
            return Err(ClientError::Usage(format!(
                "cannot read {}: {e}",
                file.display()
            )))
        }
    };
    let doc: toml::Table = text
        .parse()
        .map_err(|e| ClientError::Usage(format!("{}: {e}", file.display())))?;
    let listen = doc
        .get("server")
        .and_then(|s| s.get("listen"))
        .and_then(toml::Value::as_str)
        .unwrap_or(DEFAULT_LISTEN);
    Ok(listen.to_string())
}

/// `http://` + an address a client can dial: a wildcard listen address means this machine.
fn url_for_listen(listen: &str) -> String {
    let dial = if let Some(port) = listen.strip_prefix("0.0.0.0:") {
        format!("127.0.0.1:{port}")
    } else if let Some(port) = listen.strip_prefix("[::]:") {
        format!("[::1]:{port}")
    } else {
        listen.to_string()
    };
    format!("http://{dial}")
}

fn credentials(args: &ConnArgs) -> Result<Credentials, ClientError> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let Some(user) = &args.user {
        let password = env("RECOND_PASSWORD").ok_or_else(|| {
            ClientError::Usage("--user needs the password in RECOND_PASSWORD".into())
        })?;
        return Ok(Credentials::Password {
            user: user.clone(),
            password,
        });
    }
    if let (Some(user), Some(password)) = (env("RECOND_USER"), env("RECOND_PASSWORD")) {
        return Ok(Credentials::Password { user, password });
    }
    if let Some(token) = env("RECOND_TOKEN") {
        return Ok(Credentials::Token(token));
    }
    Ok(Credentials::None)
}

impl Conn {
    pub fn new(args: &ConnArgs) -> Result<Conn, ClientError> {
        let base = match &args.url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => {
                let (file, asked) = match &args.config {
                    Some(f) => (f.clone(), true),
                    None => (Path::new("recon.toml").to_path_buf(), false),
                };
                url_for_listen(&listen_from_config(&file, asked)?)
            }
        };
        if !base.starts_with("http://") {
            return Err(ClientError::Usage(format!(
                "--url {base}: only http:// URLs are supported"
            )));
        }
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_global(Some(Duration::from_secs(300)))
            .build();
        Ok(Conn {
            base,
            credentials: credentials(args)?,
            agent: config.into(),
        })
    }

    pub fn get(&self, path_and_query: &str) -> Result<Reply, ClientError> {
        self.call("GET", path_and_query)
    }

    pub fn post(&self, path_and_query: &str) -> Result<Reply, ClientError> {
        self.call("POST", path_and_query)
    }

    fn call(&self, method: &str, path_and_query: &str) -> Result<Reply, ClientError> {
        let url = format!("{}{path_and_query}", self.base);
        let conn_err =
            |e: ureq::Error| ClientError::Connection(format!("cannot reach {}: {e}", self.base));
        let mut res = match method {
            "POST" => self.with_auth_post(&url).send_empty(),
            _ => self.with_auth_get(&url).call(),
        }
        .map_err(conn_err)?;
        let status = res.status().as_u16();
        let text = res.body_mut().read_to_string().map_err(conn_err)?;
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).map_err(|e| {
                ClientError::Connection(format!(
                    "{} answered {status} with a body that is not JSON ({e}); is it a recond server?",
                    self.base
                ))
            })?
        };
        if status == 401 || status == 403 {
            return Err(ClientError::Auth(format!(
                "{} refused the credentials ({status}); set --user and RECOND_PASSWORD, RECOND_USER and RECOND_PASSWORD, or RECOND_TOKEN",
                self.base
            )));
        }
        Ok(Reply { status, body })
    }

    fn with_auth_get(&self, url: &str) -> ureq::RequestBuilder<ureq::typestate::WithoutBody> {
        self.authorize(self.agent.get(url))
    }

    fn with_auth_post(&self, url: &str) -> ureq::RequestBuilder<ureq::typestate::WithBody> {
        self.authorize(self.agent.post(url))
    }

    /// IDM's API version and the configured credentials, on any request.
    fn authorize<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        let req = req.header("Accept-API-Version", "resource=1.0");
        match &self.credentials {
            Credentials::Password { user, password } => req
                .header("X-OpenIDM-Username", user)
                .header("X-OpenIDM-Password", password),
            Credentials::Token(t) => req.header("Authorization", format!("Bearer {t}")),
            Credentials::None => req,
        }
    }
}

/// Percent-encodes a query parameter value or a path segment.
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listen_addresses_dial_this_machine() {
        assert_eq!(url_for_listen("0.0.0.0:9000"), "http://127.0.0.1:9000");
        assert_eq!(url_for_listen("127.0.0.1:8080"), "http://127.0.0.1:8080");
        assert_eq!(enc("a b\"/é"), "a%20b%22%2F%C3%A9");
    }
}
