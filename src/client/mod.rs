//! The `recond recon ...` client (contract §8): talks to a running server over HTTP.
//!
//! * `args`: the command line (clap).
//! * `conn`: URL, credentials and blocking requests (ureq).
//! * `commands`: one function per subcommand, and the exit code of a followed run.
//! * `follow`: the live progress bar / plain progress lines.
//! * `render`: tables, CSV and the run report.
//!
//! Exit codes: 0 success; 1 the run failed or was cancelled, or the server refused the
//! request (unknown run, unknown mapping, a run already active); 3 the run succeeded with
//! failed entries (0 under `--allow-failures`); 2 usage, connection or authentication errors.

pub mod args;
mod commands;
mod conn;
mod follow;
mod render;

use std::process::ExitCode;

use serde_json::Value;

pub use args::ReconArgs;

/// How the client ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok,
    RunFailed,
    Usage,
    FailedEntries,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::RunFailed => 1,
            Exit::Usage => 2,
            Exit::FailedEntries => 3,
        }
    }
}

/// What can go wrong on the client's side of the wire.
#[derive(Debug)]
pub enum ClientError {
    /// Bad arguments or configuration (exit 2).
    Usage(String),
    /// The server cannot be reached or does not speak recond's API (exit 2).
    Connection(String),
    /// The server refused the credentials (exit 2).
    Auth(String),
    /// The server answered with an error (exit 1).
    Server(String),
}

impl ClientError {
    /// A non-200 answer as an error naming what was being done and the server's message.
    fn from_reply(doing: &str, r: &conn::Reply) -> ClientError {
        let message = r
            .body
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| r.body.to_string());
        ClientError::Server(format!("{doing}: {} {message}", r.status))
    }

    fn exit(&self) -> Exit {
        match self {
            ClientError::Usage(_) | ClientError::Connection(_) | ClientError::Auth(_) => {
                Exit::Usage
            }
            ClientError::Server(_) => Exit::RunFailed,
        }
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Usage(m)
            | ClientError::Connection(m)
            | ClientError::Auth(m)
            | ClientError::Server(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ClientError {}

/// Runs one `recond recon ...` command; errors go to stderr.
pub fn main(args: ReconArgs) -> ExitCode {
    let result = conn::Conn::new(&args.conn).and_then(|c| commands::dispatch(&c, args.command));
    match result {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit().code())
        }
    }
}
