//! `pgfleet --check`: is this configuration good, and can it reach the
//! database? For deploy scripts and systemd's ExecStartPre.

use std::time::Duration;

use pgfleet_actors::db::describe;
use pgfleet_actors::settings::Settings;

pub const EXIT_UNREACHABLE: i32 = 1;

/// Connects once and asks the server its version.
pub fn run(settings: &Settings) -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("pgfleet: cannot start the async runtime: {e}");
            return EXIT_UNREACHABLE;
        }
    };
    let url = &settings.database.url;
    let result = runtime.block_on(async {
        // The same driver configuration as the service's pool: URL,
        // password keys, timeouts, application_name.
        let config = settings.database.pg_config().map_err(|e| describe(&e))?;
        let connect_timeout = settings.database.connect_timeout;
        let (client, connection) =
            tokio::time::timeout(connect_timeout, config.connect(tokio_postgres::NoTls))
                .await
                .map_err(|_| {
                    format!("no answer within {connect_timeout:?} (database.connect_timeout)")
                })?
                .map_err(|e| describe(&e))?;
        let connection = tokio::spawn(connection);
        let row = tokio::time::timeout(
            settings
                .database
                .connect_timeout
                .max(Duration::from_secs(1)),
            client.query_one("SELECT current_setting('server_version')", &[]),
        )
        .await
        .map_err(|_| "the server did not answer in time".to_owned())?
        .map_err(|e| describe(&e))?;
        drop(client);
        let _ = connection.await;
        Ok::<String, String>(row.get(0))
    });
    match result {
        Ok(version) => {
            println!(
                "configuration OK: {} workers on table {:?}; database reachable at {} (PostgreSQL {version})",
                settings.targets().len(),
                settings.workers.table,
                url.masked()
            );
            0
        }
        Err(e) => {
            eprintln!(
                "pgfleet: configuration OK, but the database cannot be reached at {}: {e}",
                url.masked()
            );
            EXIT_UNREACHABLE
        }
    }
}
