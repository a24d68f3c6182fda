//! The `recond` binary: arguments, logging, the runtime, and exit codes (0 after a clean
//! shutdown, 2 for configuration problems, 1 for other failures).

use std::path::PathBuf;
use std::process::ExitCode;

use recond::app::{self, App, AppError};
use recond::config::Config;

const USAGE: &str = "recond — an IDM-compatible reconciliation server

Usage: recond [--config PATH] [--listen ADDR] [--data-dir DIR]

Options:
  --config PATH    configuration file (default ./recon.toml)
  --listen ADDR    address to listen on (overrides server.listen)
  --data-dir DIR   folder of the embedded store (overrides server.data_dir)
  -h, --help       print this help
  -V, --version    print the version
";

struct Args {
    config: PathBuf,
    listen: Option<String>,
    data_dir: Option<PathBuf>,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut args = Args {
        config: PathBuf::from("recon.toml"),
        listen: None,
        data_dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => {
                let _ = std::io::Write::write_all(&mut std::io::stdout(), USAGE.as_bytes());
                return Ok(None);
            }
            "-V" | "--version" => {
                let line = format!("recond {}\n", env!("CARGO_PKG_VERSION"));
                let _ = std::io::Write::write_all(&mut std::io::stdout(), line.as_bytes());
                return Ok(None);
            }
            "--config" => args.config = PathBuf::from(value("--config")?),
            "--listen" => args.listen = Some(value("--listen")?),
            "--data-dir" => args.data_dir = Some(PathBuf::from(value("--data-dir")?)),
            other => return Err(format!("unknown argument '{other}'\n\n{USAGE}")),
        }
    }
    Ok(Some(args))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: logs redirected to a file stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();

    let config = match Config::load(
        &args.config,
        args.listen.as_deref(),
        args.data_dir.as_deref(),
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let listen = config.listen.clone();
    let result = runtime.block_on(async move {
        let app = App::build(config)?;
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .map_err(|e| AppError::Runtime(format!("cannot listen on {listen}: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| AppError::Runtime(e.to_string()))?;
        tracing::info!("listening on http://{addr}");
        app.run(listener, app::shutdown_signal()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(AppError::Config(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
