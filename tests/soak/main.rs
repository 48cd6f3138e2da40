//! The chaos soak (`scripts/soak.sh [--seconds N] [--seed S]`, SPEC §11):
//! a throwaway cluster and a PgBouncer, two pgfleet instances folding 10
//! schemas each that pgbench writers fill (one connected directly, with
//! prepared and pipelined folds; one through PgBouncer in transaction
//! mode), and for N seconds faults drawn at random from the
//! seed: server restarts and crashes, terminated backends, the server
//! paused with SIGSTOP, a migration's table locks, VACUUM storms, reloads
//! that add and remove schemas, pgfleet killed with SIGKILL and started
//! again, PgBouncer restarted, a counter's `ALTER TYPE`.
//!
//! After each fault, and at the end, every schema's ledger is checked in
//! one snapshot: `total + remaining deltas == committed deltas`, the
//! committed ones counted by an audit row each writer inserts in the same
//! transaction (see `support::writers`). At the end the fleet must fold
//! every remaining delta (no fault left it stuck), and pgfleet's memory
//! and open files must not have grown past the bound printed.
//!
//! A test binary without libtest's harness: `cargo test --all-targets`
//! runs it with no arguments, a one-minute soak with a seed taken from the
//! clock (printed, so a failure can be replayed); a positional argument
//! (`scripts/test.sh http`) that does not match "soak" skips it. It prints
//! one line per fault and a last line with the figures, and exits non-zero
//! on any loss.

#[path = "../it/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use support::cluster::{cluster, TestDb};
use support::pgbouncer::PgBouncer;
use support::pgfleet::{eventually, execute, schema_names, Pgfleet};
use support::writers::Writers;

const SCHEMAS: usize = 20;
/// pgfleet's memory at the end may be at most this factor of what it was
/// 5 s after its start, plus [`RSS_SLACK_KB`]; its open files at most
/// [`FD_SLACK`] more.
const RSS_FACTOR: f64 = 1.5;
const RSS_SLACK_KB: u64 = 16 * 1024;
const FD_SLACK: usize = 16;

struct Options {
    seconds: u64,
    seed: u64,
}

/// `--seconds N`, `--seed S`; None when a test filter rules the soak out.
fn options() -> Result<Option<Options>, String> {
    let mut options = Options {
        seconds: 60,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Result<u64, String> {
            let value = args.next().ok_or(format!("{name} needs a value"))?;
            value
                .parse()
                .map_err(|_| format!("{name} {value:?}: a whole number"))
        };
        match arg.as_str() {
            "--seconds" => options.seconds = number("--seconds")?,
            "--seed" => options.seed = number("--seed")?,
            "--help" | "-h" => {
                return Err("usage: scripts/soak.sh [--seconds N] [--seed S]".into());
            }
            "--list" => {
                println!("soak: test");
                std::process::exit(0);
            }
            // (Its value is taken either way.)
            "--skip"
                if args
                    .next()
                    .is_some_and(|skip| "soak".contains(skip.as_str())) =>
            {
                return Ok(None);
            }
            // libtest's other flags, as cargo test or nextest pass them.
            flag if flag.starts_with('-') => {}
            filter if !"soak".contains(filter) => return Ok(None),
            _ => {}
        }
    }
    Ok(Some(options))
}

fn main() {
    let options = match options() {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("soak: filtered out");
            return;
        }
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    match Soak::new(&options).run(&options) {
        Ok(summary) => println!("{summary}"),
        Err(failure) => {
            println!("soak FAILED (seed {}): {failure}", options.seed);
            std::process::exit(1);
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    ServerRestart,
    ServerCrash,
    TerminateBackends,
    ServerPaused,
    MigrationLock,
    VacuumStorm,
    Reload,
    KillPgfleet,
    RestartPgBouncer,
    AlterType,
}

const FAULTS: [Fault; 10] = [
    Fault::ServerRestart,
    Fault::ServerCrash,
    Fault::TerminateBackends,
    Fault::ServerPaused,
    Fault::MigrationLock,
    Fault::VacuumStorm,
    Fault::Reload,
    Fault::KillPgfleet,
    Fault::RestartPgBouncer,
    Fault::AlterType,
];

/// pgfleet's memory and open files, 5 s after its start and now.
#[derive(Default)]
struct Footprint {
    started: Option<Instant>,
    first: Option<(u64, usize)>,
    last: Option<(u64, usize)>,
}

/// One pgfleet instance and the schemas it folds.
struct Fleet {
    name: &'static str,
    through_pgbouncer: bool,
    schemas: Vec<String>,
    /// How many of `schemas` its configuration lists now.
    configured: usize,
    pgfleet: Option<Pgfleet>,
    footprint: Footprint,
}

impl Fleet {
    fn yaml(&self) -> String {
        format!(
            "workers:\n  schemas: [{}]\nrestart:\n  delay: 500ms\n  max_delay: 5s\n  max_restarts: 1000\nlog:\n  summary_every: 0s\n",
            self.schemas[..self.configured].join(", ")
        )
    }

    fn pgfleet(&self) -> &Pgfleet {
        self.pgfleet.as_ref().expect("pgfleet runs")
    }
}

struct Soak {
    db: TestDb,
    bouncer: PgBouncer,
    schemas: Vec<String>,
    rng: StdRng,
    fleets: [Fleet; 2],
    /// Counters already altered to bigint.
    altered: Vec<String>,
    counts: BTreeMap<Fault, usize>,
    began: Instant,
}

impl Soak {
    fn new(options: &Options) -> Self {
        let db = cluster().create_database();
        let bouncer = PgBouncer::start(cluster().port(), "transaction", "");
        let schemas = schema_names(SCHEMAS);
        for schema in &schemas {
            execute(
                &db,
                &format!(
                    "CREATE SCHEMA {schema} CREATE TABLE counted (type text CHECK (type IN ('total', 'delta')), value integer) \
                     CREATE UNIQUE INDEX counted_unique_total ON counted (type) WHERE type = 'total'; \
                     INSERT INTO {schema}.counted VALUES ('total', 0)"
                ),
            );
        }
        let (direct, pooled) = schemas.split_at(SCHEMAS / 2);
        let fleet = |name, through_pgbouncer, schemas: &[String]| Fleet {
            name,
            through_pgbouncer,
            schemas: schemas.to_vec(),
            configured: schemas.len(),
            pgfleet: None,
            footprint: Footprint::default(),
        };
        let fleets = [
            fleet("direct", false, direct),
            fleet("pgbouncer", true, pooled),
        ];
        Soak {
            db,
            bouncer,
            schemas,
            rng: StdRng::seed_from_u64(options.seed),
            fleets,
            altered: Vec::new(),
            counts: BTreeMap::new(),
            began: Instant::now(),
        }
    }

    fn say(&self, line: &str) {
        println!("[{:6.1}s] {line}", self.began.elapsed().as_secs_f64());
    }

    fn start_pgfleet(&mut self, fleet: usize) {
        let url = if self.fleets[fleet].through_pgbouncer {
            self.bouncer.url(&self.db.name)
        } else {
            self.db.url()
        };
        let pgfleet = Pgfleet::start_with(
            &self.db,
            &self.fleets[fleet].yaml(),
            &[("PGFLEET__DATABASE__URL", url.as_str())],
        );
        self.fleets[fleet].footprint = Footprint {
            started: Some(Instant::now()),
            ..Footprint::default()
        };
        self.fleets[fleet].pgfleet = Some(pgfleet);
    }

    /// Samples each pgfleet's RSS and open files.
    fn sample(&mut self) {
        for fleet in &mut self.fleets {
            fleet.sample();
        }
    }
}

impl Fleet {
    fn sample(&mut self) {
        let Some(pid) = self.pgfleet.as_ref().map(Pgfleet::pid) else {
            return;
        };
        let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|line| line.strip_prefix("VmRSS:"))
                    .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse().ok())
            });
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|dir| dir.count())
            .ok();
        let (Some(rss), Some(fds)) = (rss, fds) else {
            return;
        };
        let settled = self
            .footprint
            .started
            .is_some_and(|at| at.elapsed() >= Duration::from_secs(5));
        if settled && self.footprint.first.is_none() {
            self.footprint.first = Some((rss, fds));
        }
        self.footprint.last = Some((rss, fds));
    }

    fn footprint_check(&self) -> Result<String, String> {
        let (Some((rss0, fds0)), Some((rss1, fds1))) = (self.footprint.first, self.footprint.last)
        else {
            return Ok(format!(
                "{}: footprint not sampled (restarted too late)",
                self.name
            ));
        };
        let rss_bound = (rss0 as f64 * RSS_FACTOR) as u64 + RSS_SLACK_KB;
        let fd_bound = fds0 + FD_SLACK;
        let text = format!(
            "{}: RSS {:.1} -> {:.1} MB (bound {:.1}), open files {fds0} -> {fds1} (bound {fd_bound})",
            self.name,
            rss0 as f64 / 1024.0,
            rss1 as f64 / 1024.0,
            rss_bound as f64 / 1024.0
        );
        if rss1 > rss_bound || fds1 > fd_bound {
            Err(format!("pgfleet grew: {text}"))
        } else {
            Ok(text)
        }
    }
}

impl Soak {
    /// Every schema's `total + remaining deltas` against its committed
    /// deltas, in one snapshot. Err names the schemas that differ.
    fn ledger(&self) -> Result<i64, String> {
        let mut client = self.db.client();
        let mut tx = client
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .start()
            .map_err(|e| format!("ledger: {e}"))?;
        let sums = self
            .schemas
            .iter()
            .map(|s| format!("SELECT '{s}' AS schema, coalesce(sum(value), 0)::numeric AS counted FROM {s}.counted"))
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let rows = tx
            .query(
                &format!(
                    "SELECT sums.schema, sums.counted::text, coalesce(audit.n, 0)::text \
                       FROM ({sums}) AS sums \
                       LEFT JOIN (SELECT schema, count(*) AS n FROM public.audit GROUP BY schema) AS audit \
                              ON audit.schema = sums.schema"
                ),
                &[],
            )
            .map_err(|e| format!("ledger: {e}"))?;
        tx.commit().map_err(|e| format!("ledger: {e}"))?;
        let mut committed = 0;
        let mut wrong = Vec::new();
        for row in rows {
            let (schema, counted, audited): (String, String, String) =
                (row.get(0), row.get(1), row.get(2));
            if counted != audited {
                wrong.push(format!(
                    "{schema}: total + deltas {counted}, committed {audited}"
                ));
            }
            committed += audited.parse::<i64>().unwrap_or(0);
        }
        if wrong.is_empty() {
            Ok(committed)
        } else {
            Err(format!("deltas lost or doubled: {}", wrong.join("; ")))
        }
    }

    /// Deltas not folded yet, in every schema.
    fn remaining(&self) -> i64 {
        let union = self
            .schemas
            .iter()
            .map(|s| format!("SELECT count(*) AS n FROM {s}.counted WHERE type = 'delta'"))
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        self.db
            .client()
            .query_one(&format!("SELECT sum(n)::int8 FROM ({union}) AS rows"), &[])
            .map_or(i64::MAX, |row| row.get(0))
    }

    fn run(mut self, options: &Options) -> Result<String, String> {
        println!(
            "soak: {} s, seed {}, {SCHEMAS} schemas, pgbench writers; two pgfleet instances, \
             direct and through PgBouncer (transaction mode), {} schemas each",
            options.seconds,
            options.seed,
            SCHEMAS / 2
        );
        for fleet in 0..self.fleets.len() {
            self.start_pgfleet(fleet);
        }
        for fleet in &self.fleets {
            eventually("every worker started", || {
                fleet.pgfleet().events("worker_started").len() >= fleet.schemas.len()
            });
        }
        let writers = Writers::start(&self.db, &self.schemas);
        let until = Instant::now() + Duration::from_secs(options.seconds);
        while Instant::now() < until {
            let pause = Duration::from_millis(self.rng.random_range(1_000..3_000));
            thread::sleep(pause);
            self.sample();
            let fault = FAULTS[self.rng.random_range(0..FAULTS.len())];
            let what = self.inject(fault);
            *self.counts.entry(fault).or_default() += 1;
            self.say(&what);
            // The invariant holds at every instant, faults or not.
            if let Err(lost) = self.ledger_when_up() {
                writers.stop();
                return Err(lost);
            }
        }
        // Calm: every schema configured, pgfleet running, writers stopped.
        for fleet in &mut self.fleets {
            if fleet.configured != fleet.schemas.len() {
                fleet.configured = fleet.schemas.len();
                fleet.pgfleet().reload(&fleet.yaml());
            }
        }
        thread::sleep(Duration::from_secs(1));
        self.sample();
        let runs = writers.stop();
        let committed = self.ledger_when_up()?;
        let calm = Instant::now();
        let settled = Instant::now() + Duration::from_secs(60);
        while self.remaining() != 0 {
            if Instant::now() > settled {
                return Err(format!(
                    "{} deltas still unfolded 60 s after the last fault: the fleet is stuck",
                    self.remaining()
                ));
            }
            thread::sleep(Duration::from_millis(100));
        }
        let drained = calm.elapsed();
        self.ledger_when_up()?;
        let mut failed = 0;
        let mut footprints = Vec::new();
        for fleet in &self.fleets {
            let given_up = fleet.pgfleet().events("worker_given_up");
            if !given_up.is_empty() {
                return Err(format!("{}: workers given up: {given_up:?}", fleet.name));
            }
            failed += fleet.pgfleet().events("worker_failed").len();
            footprints.push(fleet.footprint_check()?);
        }
        let footprint = footprints.join("; ");
        let faults: Vec<String> = self
            .counts
            .iter()
            .map(|(fault, n)| format!("{n} {}", name(*fault)))
            .collect();
        Ok(format!(
            "soak OK: {} s, seed {}, {} faults ({}); {committed} deltas committed by {runs} pgbench runs, \
             total + remaining deltas equal in all {SCHEMAS} schemas after every fault, all folded {:.1} s \
             after the last; {failed} worker failures since each pgfleet's last start, 0 given up; {footprint}",
            options.seconds,
            options.seed,
            self.counts.values().sum::<usize>(),
            faults.join(", "),
            drained.as_secs_f64(),
        ))
    }

    /// The ledger, once the server answers again (a fault may have just
    /// restarted it).
    fn ledger_when_up(&self) -> Result<i64, String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.ledger() {
                Ok(committed) => return Ok(committed),
                Err(lost) if lost.starts_with("deltas") => return Err(lost),
                Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(100)),
                Err(other) => return Err(other),
            }
        }
    }

    /// Injects `fault`; returns the line that says what happened.
    fn inject(&mut self, fault: Fault) -> String {
        match fault {
            Fault::ServerRestart | Fault::ServerCrash => {
                let mode = if fault == Fault::ServerRestart {
                    "fast"
                } else {
                    "immediate"
                };
                let began = Instant::now();
                let output = cluster().pg_ctl(&["restart", "-m", mode, "-w"]);
                format!(
                    "{}: pg_ctl restart -m {mode} {} in {:.1} s",
                    name(fault),
                    if output.status.success() {
                        "done"
                    } else {
                        "FAILED"
                    },
                    began.elapsed().as_secs_f64()
                )
            }
            Fault::TerminateBackends => {
                // pgfleet's sessions (through PgBouncer: its server
                // connections), as pg_terminate_backend or an operator's
                // script would end them.
                let ended = self
                    .db
                    .client()
                    .query_one(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                          WHERE pid <> pg_backend_pid() AND backend_type = 'client backend' \
                            AND datname = current_database() \
                            AND application_name IS DISTINCT FROM 'pgbench'",
                        &[],
                    )
                    .map_or_else(
                        |e| format!("none ({e})"),
                        |row| row.get::<_, i64>(0).to_string(),
                    );
                format!("{}: {ended} backends terminated", name(fault))
            }
            Fault::ServerPaused => {
                let for_ms = self.rng.random_range(500..3_000);
                let pids = server_pids();
                signal_all(&pids, "STOP");
                thread::sleep(Duration::from_millis(for_ms));
                signal_all(&pids, "CONT");
                format!(
                    "{}: {} server processes stopped for {for_ms} ms",
                    name(fault),
                    pids.len()
                )
            }
            Fault::MigrationLock => {
                let for_ms = self.rng.random_range(500..4_000);
                let count = self.rng.random_range(1..=SCHEMAS);
                let tables: Vec<String> = self.schemas[..count]
                    .iter()
                    .map(|s| format!("{s}.counted"))
                    .collect();
                let result = self.db.client().batch_execute(&format!(
                    "BEGIN; LOCK TABLE {} IN EXCLUSIVE MODE; SELECT pg_sleep({}); COMMIT",
                    tables.join(", "),
                    for_ms as f64 / 1000.0
                ));
                format!(
                    "{}: {count} tables locked for {for_ms} ms{}",
                    name(fault),
                    result.map_or_else(|e| format!(" (ended early: {e})"), |()| String::new())
                )
            }
            Fault::VacuumStorm => {
                let mut done = 0;
                for _ in 0..3 {
                    for schema in &self.schemas {
                        if self
                            .db
                            .client()
                            .batch_execute(&format!("VACUUM {schema}.counted"))
                            .is_ok()
                        {
                            done += 1;
                        }
                    }
                }
                format!("{}: {done} VACUUMs", name(fault))
            }
            Fault::Reload => {
                let which = self.rng.random_range(0..self.fleets.len());
                let fleet = &mut self.fleets[which];
                fleet.configured = self.rng.random_range(1..=fleet.schemas.len());
                fleet.pgfleet().reload(&fleet.yaml());
                format!(
                    "{}: SIGHUP to the {} instance, now folding {} of its {} schemas",
                    name(fault),
                    fleet.name,
                    fleet.configured,
                    fleet.schemas.len()
                )
            }
            Fault::KillPgfleet => {
                let which = self.rng.random_range(0..self.fleets.len());
                if let Some(mut pgfleet) = self.fleets[which].pgfleet.take() {
                    pgfleet.signal(libc::SIGKILL);
                    pgfleet.wait_exit(Duration::from_secs(10));
                }
                self.start_pgfleet(which);
                format!(
                    "{}: the {} instance killed and started again",
                    name(fault),
                    self.fleets[which].name
                )
            }
            Fault::RestartPgBouncer => {
                self.bouncer.restart();
                format!("{}: killed and started again", name(fault))
            }
            Fault::AlterType => {
                let left: Vec<&String> = self
                    .schemas
                    .iter()
                    .filter(|s| !self.altered.contains(s))
                    .collect();
                if left.is_empty() {
                    return format!("{}: every counter is bigint already", name(fault));
                }
                let schema = left[self.rng.random_range(0..left.len())].clone();
                let result = self.db.client().batch_execute(&format!(
                    "ALTER TABLE {schema}.counted ALTER value TYPE bigint"
                ));
                let said = match result {
                    Ok(()) => {
                        self.altered.push(schema.clone());
                        "done".to_owned()
                    }
                    Err(e) => format!("failed: {e}"),
                };
                format!(
                    "{}: ALTER TABLE {schema}.counted ALTER value TYPE bigint {said}",
                    name(fault)
                )
            }
        }
    }
}

fn name(fault: Fault) -> &'static str {
    match fault {
        Fault::ServerRestart => "server restart",
        Fault::ServerCrash => "server crash",
        Fault::TerminateBackends => "terminated backends",
        Fault::ServerPaused => "server SIGSTOP",
        Fault::MigrationLock => "migration lock",
        Fault::VacuumStorm => "VACUUM storm",
        Fault::Reload => "reload",
        Fault::KillPgfleet => "pgfleet SIGKILL",
        Fault::RestartPgBouncer => "PgBouncer restart",
        Fault::AlterType => "ALTER TYPE",
    }
}

/// The postmaster and its children.
fn server_pids() -> Vec<String> {
    let Ok(pidfile) = std::fs::read_to_string(cluster().datadir().join("postmaster.pid")) else {
        return Vec::new();
    };
    let Some(postmaster) = pidfile.lines().next().map(|line| line.trim().to_owned()) else {
        return Vec::new();
    };
    let children = Command::new("pgrep")
        .args(["-P", &postmaster])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    std::iter::once(postmaster)
        .chain(children.split_whitespace().map(str::to_owned))
        .collect()
}

fn signal_all(pids: &[String], signal: &str) {
    for pid in pids {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid)
            .status();
    }
}
