//! The `recond` binary: the command line (clap), logging, the runtime, and exit codes.
//!
//! `recond` and `recond serve` run the server (0 after a clean shutdown, 2 for configuration
//! problems, 1 for other failures); `recond recon ...` is the client of contract §8 (see
//! `recond::client` for its exit codes). Arguments are read as OS strings, so a non-UTF-8
//! argument is a usage error (exit 2), never a panic.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use recond::app::{self, App, AppError};
use recond::config::Config;

/// recond — an IDM-compatible reconciliation server, and its client.
#[derive(Debug, Parser)]
#[command(name = "recond", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(flatten)]
    serve: ServeArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (what plain `recond` does).
    Serve(ServeArgs),
    /// Talk to a running server: run, list, show, assoc, cancel.
    Recon(recond::client::ReconArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Configuration file.
    #[arg(long, value_name = "PATH", default_value = "recon.toml")]
    config: PathBuf,
    /// Address to listen on (overrides server.listen).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Folder of the embedded store (overrides server.data_dir).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    // clap exits 0 for --help/--version and 2 for usage errors, as the contract wants.
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Recon(args)) => recond::client::main(args),
        Some(Command::Serve(args)) => serve(args),
        None => serve(cli.serve),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
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
