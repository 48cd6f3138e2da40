//! The command line: what to run, and which configuration files to layer.

use std::path::PathBuf;

use clap::Parser;

/// worker_spi's contention-free counters, folded from outside PostgreSQL.
///
/// Configuration layers, lowest first: the built-in defaults, each --config
/// FILE in order, then PGFLEET__<SECTION>__<KEY> environment variables.
///
/// SIGHUP reloads: it re-reads the built-in defaults, every --config file
/// and database.password_file. The environment of a running process cannot
/// change, so PGFLEET__ and libpq's PG* variables stay those it started
/// with; a bad configuration is rejected and the running one kept. SIGTERM
/// or SIGINT stops gracefully.
#[derive(Debug, Parser)]
#[command(name = "pgfleet", version, about, long_about)]
pub struct Cli {
    /// A YAML file overriding keys of the layers before it (repeatable).
    #[arg(short, long = "config", value_name = "FILE")]
    pub config: Vec<PathBuf>,

    /// Validate the configuration, connect once as the service would, and
    /// check the role's privileges; exit 0 if all is well, 2 on bad
    /// configuration, 1 if the database cannot be reached, refuses the
    /// connection, or the role lacks a privilege (the GRANT is printed).
    #[arg(long, conflicts_with = "print_config")]
    pub check: bool,

    /// Print the merged configuration as YAML, passwords masked, and exit.
    #[arg(long)]
    pub print_config: bool,

    /// Reload by itself, as SIGHUP does, when a --config file or
    /// database.password_file changes (polled every 0.5 s, following
    /// symlinks, as Kubernetes swaps mounted ConfigMaps and Secrets).
    #[arg(long)]
    pub watch_config: bool,
}
