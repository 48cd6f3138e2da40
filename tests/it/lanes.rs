//! The lanes' order of service (`db::lanes`), driven on the service's own
//! pool against the throwaway cluster: a step that needs a connection of
//! its own (a schema's initialisation) goes first, whatever folds wait.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pgfleet_actors::conninfo::ProcessEnvironment;
use pgfleet_actors::db::{Connector, Database};
use pgfleet_actors::settings::ConfigSources;

use crate::support::cluster::cluster;

/// A one-connection pool on `url`, as the service builds it.
fn one_connection_pool(url: &str) -> Database {
    let environment: Vec<(String, String)> = [
        ("PGFLEET__DATABASE__URL", url),
        ("PGFLEET__DATABASE__POOL_SIZE", "1"),
        ("PGFLEET__DATABASE__CONNECT_TIMEOUT", "3s"),
    ]
    .iter()
    .map(|(key, value)| (key.to_string(), value.to_string()))
    .collect();
    let settings = ConfigSources::new(Vec::new())
        .load_with_env(&environment)
        .expect("the settings load");
    let log = slog::Logger::root(slog::Discard, slog::o!());
    let connector = Connector::new(&settings.database, &ProcessEnvironment, &log)
        .expect("the connector builds");
    Database::new(
        Arc::new(connector),
        &settings.database,
        Duration::from_secs(1),
        &log,
    )
}

/// A fold that queued for the pool, then found an initialisation waiting
/// and stood back, held its place in the pool's queue without looking at
/// it: the pool's wake-up went to it, the connection sat idle, and the initialisation
/// (and every fold behind it) waited out `connect_timeout`. Seen in a
/// rolling restart of three instances as a 5 s gap in the folds of the
/// instance taking over. The race goes either way at each try, so it is
/// tried eight times.
#[test]
fn an_initialisation_is_served_before_a_fold_that_queued_for_the_pool() {
    let db = cluster().create_database();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let database = one_connection_pool(&db.url());
        for round in 1..=8 {
            // A fold whose statement takes 300 ms: after OPEN_FOR its lane
            // takes no more folds, and it holds the pool's one connection.
            let slow = database.shared_connection(0).await.expect("the first fold's lane");
            let slow = tokio::task::spawn_local(async move {
                slow.client()
                    .simple_query("SELECT pg_sleep(0.3)")
                    .await
                    .expect("the slow fold");
            });
            tokio::time::sleep(Duration::from_millis(100)).await;
            // A fold of the same home: no lane open, no room in the pool,
            // so it queues for the pool's next connection.
            let queued = tokio::task::spawn_local({
                let database = database.clone();
                async move { database.shared_connection(0).await.map(drop) }
            });
            tokio::time::sleep(Duration::from_millis(20)).await;
            let asked = Instant::now();
            let own = database
                .own_connection()
                .await
                .expect("a connection of its own");
            let waited = asked.elapsed();
            drop(own);
            assert!(
                waited < Duration::from_millis(1500),
                "round {round}: the initialisation waited {waited:?} for the connection the slow fold gave back"
            );
            slow.await.expect("the slow fold ran");
            queued
                .await
                .expect("the queued fold ran")
                .expect("the queued fold had its connection once the initialisation was done");
        }
    });
}
