//! The `pgfleet` binary: read the command line and the configuration, set up
//! logging and signals, and run the actor system until it stops. Everything
//! else lives in the `pgfleet-actors` crate.

mod check;
mod cli;
mod logging;
mod signals;

use std::sync::Arc;

use actix::prelude::*;
use clap::Parser;
use pgfleet_actors::config_actor::{ConfigActor, Loaded, Reload};
use pgfleet_actors::config_watch::{self, WatchedFiles};
use pgfleet_actors::control::{Actions, ControlListener};
use pgfleet_actors::settings::ConfigSources;
use pgfleet_actors::supervisor::Supervisor;
use slog::{error, info, warn};

/// Bad configuration or usage (clap exits 2 on usage errors too).
const EXIT_BAD_CONFIG: i32 = 2;
const EXIT_RUNTIME_FAILURE: i32 = 1;

/// How long the last log lines may take to be written at exit: a stalled
/// log reader must not hold the process.
const LOG_FLUSH_WITHIN: std::time::Duration = std::time::Duration::from_secs(1);

fn main() {
    let early_reloads = signals::catch_early_reloads();
    std::process::exit(run(cli::Cli::parse(), early_reloads));
}

fn run(cli: cli::Cli, early_reloads: signals::EarlyReloads) -> i32 {
    let sources = ConfigSources::new(cli.config);
    // No logger yet (its settings are being read): the connector's is set
    // where it is used.
    let quiet = slog::Logger::root(slog::Discard, slog::o!());
    let loaded = match Loaded::read(&sources, &quiet) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("pgfleet: {e}");
            return EXIT_BAD_CONFIG;
        }
    };
    let settings = &loaded.settings;
    for warning in &settings.load_warnings {
        if cli.print_config || cli.check {
            eprintln!("pgfleet: warning: {warning}");
        }
    }
    if cli.print_config {
        return match serde_norway::to_string(settings) {
            Ok(yaml) => {
                print!("{yaml}");
                0
            }
            Err(e) => {
                eprintln!("pgfleet: cannot print the configuration: {e}");
                EXIT_RUNTIME_FAILURE
            }
        };
    }
    if cli.check {
        return check::run(loaded);
    }
    serve(sources, loaded, early_reloads, cli.watch_config)
}

/// Runs the service until the Supervisor stops the system.
fn serve(
    sources: ConfigSources,
    Loaded {
        settings,
        connector,
        control: control_connector,
    }: Loaded,
    early_reloads: signals::EarlyReloads,
    watch_config: bool,
) -> i32 {
    let logging = logging::start(&settings.log);
    let log = logging.log.clone();
    pgfleet_actors::panics::install_hook(log.clone());
    // Bound before anything says the service started: a port in use is the
    // first event, and ends the start before any actor runs.
    let listener = match pgfleet_actors::http::bind(&settings.http.listen) {
        Ok(listener) => listener,
        Err(e) => {
            error!(log, "cannot start: {e}"; "event" => "service_failed", "error" => e.clone());
            return stopped(logging, log, EXIT_RUNTIME_FAILURE);
        }
    };
    let settings = Arc::new(settings);
    let connector = Arc::new(connector.with_log(&log));
    let sharing = if settings.coordination.enabled {
        "; coordination on: it folds the share it holds"
    } else {
        ""
    };
    info!(log, "pgfleet {} started with {} workers{sharing}", env!("CARGO_PKG_VERSION"), settings.targets().len();
        "event" => "service_started", "version" => env!("CARGO_PKG_VERSION"),
        "workers" => settings.targets().len());
    for warning in &settings.load_warnings {
        warn!(log, "{warning}"; "event" => "config_warning");
    }

    let status = pgfleet_actors::status::Status::new();
    status.export_log_lines_dropped(logging.dropped.clone());
    let system = System::new();
    let started = system.block_on(async {
        let control_connector = control_connector.map(|c| Arc::new(c.with_log(&log)));
        let supervisor = Supervisor::new(
            Arc::clone(&settings),
            Arc::clone(&connector),
            control_connector.clone(),
            log.clone(),
            status.clone(),
        )
        .start();
        let actions = Actions::new(supervisor.clone().recipient(), &status);
        if let Some(listener) = listener {
            let http = pgfleet_actors::http::Serving {
                status: status.clone(),
                actions: actions.clone(),
                token_file: settings.http.token_file.clone(),
            };
            pgfleet_actors::http::serve(listener, http, &log)?;
        }
        let level = logging.level.clone().start();
        // The listener and the ConfigActor each need the other's address:
        // the listener's context is made first, and run once the
        // ConfigActor is started.
        let control_context = actix::Context::<ControlListener>::new();
        let control = control_context.address();
        let config = ConfigActor::new(
            sources,
            Arc::clone(&settings),
            vec![
                level.recipient(),
                supervisor.clone().recipient(),
                control.recipient(),
            ],
            status.clone(),
            log.clone(),
        );
        let config = if watch_config {
            let watched = WatchedFiles::default();
            let config = config.watching(watched.clone()).start();
            let reload = config.clone();
            config_watch::spawn(watched, move || reload.do_send(Reload))
                .map_err(|e| format!("cannot watch the configuration files: {e}"))?;
            config
        } else {
            config.start()
        };
        control_context.run(ControlListener::new(
            &settings,
            Arc::clone(&connector),
            control_connector,
            actions,
            config.clone().recipient(),
            &log,
        ));
        pgfleet_actors::test_hooks::pause("before_signals");
        signals::forward(early_reloads, config, supervisor, log.clone())
            .map_err(|e| format!("cannot handle signals: {e}"))
    });
    let exit_code = match started.map(|()| system.run_with_code()) {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            error!(log, "the actor system failed: {e}"; "event" => "service_failed", "error" => e.to_string());
            EXIT_RUNTIME_FAILURE
        }
        Err(e) => {
            error!(log, "cannot start: {e}"; "event" => "service_failed", "error" => e.clone());
            EXIT_RUNTIME_FAILURE
        }
    };
    // From here on, actors are dropped with the system: no panic.
    pgfleet_actors::panics::system_stopping();
    stopped(logging, log, exit_code)
}

/// The last line (`service_stopped`), then the log written out within
/// [`LOG_FLUSH_WITHIN`]; returns `exit_code`.
fn stopped(logging: logging::Logging, log: slog::Logger, exit_code: i32) -> i32 {
    info!(log, "pgfleet stopped with exit code {exit_code}"; "event" => "service_stopped", "exit_code" => exit_code);
    drop(log);
    logging.finish(LOG_FLUSH_WITHIN);
    exit_code
}
