//! The client's command line (contract §8): `recond recon run|list|show|assoc|cancel` and the
//! connection options every subcommand takes. Parsing only; [`super::commands`] acts.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

/// `recond recon ...`: talk to a running recond server.
#[derive(Debug, Args)]
pub struct ReconArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(subcommand)]
    pub command: ReconCommand,
}

/// Where the server is and who is asking.
#[derive(Debug, Args)]
pub struct ConnArgs {
    /// The server's base URL (default: http:// + server.listen of the configuration file).
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<String>,
    /// The configuration file whose server.listen gives the default URL.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// User name; the password comes from RECOND_PASSWORD (or use RECOND_USER, or
    /// RECOND_TOKEN for a bearer token).
    #[arg(long, global = true, value_name = "NAME")]
    pub user: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ReconCommand {
    /// Start a reconciliation of MAPPING (and follow it with --follow).
    Run(RunArgs),
    /// List the runs the server keeps (oldest first).
    List,
    /// Show one run: its summary and its situations × actions table.
    Show {
        /// The run id (the `_id` that `recon run` printed), not an object id.
        run_id: String,
    },
    /// List a run's association entries (runs started with --persist-associations).
    Assoc(AssocArgs),
    /// Ask the server to cancel a run.
    Cancel {
        /// The run id.
        run_id: String,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The mapping's name.
    pub mapping: String,
    /// Follow the run: a live progress bar on a terminal, periodic lines otherwise, then a
    /// table of situations × actions. The exit code then tells how the run ended.
    #[arg(long)]
    pub follow: bool,
    /// Analysis run: assess situations and actions, change nothing.
    #[arg(long)]
    pub analyze: bool,
    /// Keep per-object association entries (`recond recon assoc`).
    #[arg(long)]
    pub persist_associations: bool,
    /// Record attribute changes in the association entries.
    #[arg(long)]
    pub record_changes: bool,
    /// Run even past the mapping's deletion guard (reconGuard), for this run only.
    #[arg(long)]
    pub ignore_guard: bool,
    /// Exit 0, not 3, when the run succeeded with failed entries.
    #[arg(long)]
    pub allow_failures: bool,
}

#[derive(Debug, Args)]
pub struct AssocArgs {
    /// The run id.
    pub run_id: String,
    /// Only entries of this situation (e.g. ABSENT).
    #[arg(long, value_name = "S")]
    pub situation: Option<String>,
    /// Print each entry's attribute changes (`changes`) when it has them.
    #[arg(long)]
    pub diff: bool,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}
