//! Checks of the test harness itself: the shared cluster starts, hands out
//! separate databases (also to parallel tests) and runs pgbench.

use crate::support::cluster::cluster;

#[test]
fn cluster_starts_and_creates_databases() {
    let cluster = cluster();
    let first = cluster.create_database();
    let second = cluster.create_database();
    assert_ne!(first.name, second.name, "each test gets its own database");
    for db in [&first, &second] {
        let mut client = db.client();
        let row = client
            .query_one("SELECT 1::int4, current_database()", &[])
            .unwrap_or_else(|e| panic!("SELECT 1 in {}: {e}", db.name));
        assert_eq!(row.get::<_, i32>(0), 1);
        assert_eq!(row.get::<_, String>(1), db.name);
    }
}

#[test]
fn parallel_tests_get_distinct_databases() {
    let names: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| cluster().create_database().name))
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().expect("create_database panicked"))
            .collect()
    });
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "duplicate names in {names:?}");
}

#[test]
fn pgbench_runs_against_a_test_database() {
    let db = cluster().create_database();
    db.pgbench(&["-i", "-s", "1", "-q"]);
    let out = db.pgbench(&["-c", "2", "-t", "20"]);
    assert!(
        out.contains("number of transactions actually processed: 40/40"),
        "unexpected pgbench output:\n{out}"
    );
}
