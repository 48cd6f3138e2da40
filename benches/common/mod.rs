//! What the benchmarks share: rounds and medians, `/metrics` scraped and
//! read (gauges, counters, histogram buckets), the process's memory and CPU
//! from `/proc`, pgbench's report, the JSON figures and the charts' font.
//!
//! Included by each benchmark with `#[path = "common/mod.rs"] mod common;`,
//! like `tests/it/support`; a benchmark uses only part of it.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Whether `cargo bench` started this benchmark. Under `cargo test
/// --all-targets` (as CI runs it) the binary starts without `--bench`, and
/// only says how to run it.
pub fn asked_to_run(name: &str) -> bool {
    let asked = std::env::args().any(|arg| arg == "--bench");
    if !asked {
        println!("{name}: run with `cargo bench --bench {name}`");
    }
    asked
}

/// Rounds of each measurement: `PGFLEET_BENCH_ROUNDS`, else `default`.
pub fn rounds(default: usize) -> usize {
    match std::env::var("PGFLEET_BENCH_ROUNDS") {
        Ok(value) if !value.trim().is_empty() => match value.trim().parse::<usize>() {
            Ok(n) if n >= 1 => n,
            _ => panic!("PGFLEET_BENCH_ROUNDS={value:?}: a whole number of at least 1"),
        },
        _ => default,
    }
}

/// The median (the mean of the middle two for an even count); NaN for none.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

/// The `q` quantile of `values` by nearest rank; NaN for none.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// "127.0.0.1:PORT" with a port that was free a moment ago.
pub fn free_listen() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    format!("127.0.0.1:{port}")
}

/// One scrape of `/metrics`: each sample line, by its name with labels
/// (`pgfleet_workers{state="running"}`), and its value.
#[derive(Clone, Debug, Default)]
pub struct Scrape {
    pub samples: BTreeMap<String, f64>,
}

impl Scrape {
    /// `GET /metrics`, or None while nothing answers.
    pub fn get(listen: &str) -> Option<Scrape> {
        let mut stream = TcpStream::connect(listen).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: bench\r\n\r\n")
            .ok()?;
        let mut body = String::new();
        stream.read_to_string(&mut body).ok()?;
        let (head, body) = body.split_once("\r\n\r\n")?;
        if !head.starts_with("HTTP/1.") || !head.contains(" 200 ") {
            return None;
        }
        let samples = body
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .filter_map(|line| {
                let (key, value) = line.rsplit_once(' ')?;
                Some((key.to_string(), value.parse::<f64>().ok()?))
            })
            .collect();
        Some(Scrape { samples })
    }

    /// The sample of exactly this name and labels.
    pub fn value(&self, key: &str) -> Option<f64> {
        self.samples.get(key).copied()
    }

    /// The sum of every series of `name` (any labels).
    pub fn sum(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|(key, _)| {
                key.strip_prefix(name)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('{'))
            })
            .map(|(_, value)| value)
            .sum()
    }

    /// The cumulative buckets of histogram `name` (`NAME_bucket{le=".."}`),
    /// by upper bound, `+Inf` last.
    pub fn buckets(&self, name: &str) -> Vec<(f64, f64)> {
        let prefix = format!("{name}_bucket{{le=\"");
        let mut buckets: Vec<(f64, f64)> = self
            .samples
            .iter()
            .filter_map(|(key, value)| {
                let le = key.strip_prefix(&prefix)?.strip_suffix("\"}")?;
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((bound, *value))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        buckets
    }
}

/// What a histogram counted between two scrapes: per bucket (upper bound,
/// observations in that bucket alone).
#[derive(Clone, Debug)]
pub struct HistogramDelta {
    pub buckets: Vec<(f64, f64)>,
}

/// A quantile read from buckets: linearly interpolated within its bucket,
/// which lies between `lower` and `upper`.
#[derive(Clone, Copy, Debug)]
pub struct BucketQuantile {
    pub value: f64,
    pub lower: f64,
    pub upper: f64,
}

impl BucketQuantile {
    /// "1.9 ms (1-2.5 ms)": the estimate, and the bucket it lies in, the
    /// one thing buckets say for sure.
    pub fn describe_ms(&self) -> String {
        if self.value.is_nan() {
            return "no ticks".into();
        }
        let upper = if self.upper.is_infinite() {
            "inf".into()
        } else {
            format!("{}", self.upper * 1e3)
        };
        format!(
            "{:.2} ms ({}-{upper} ms)",
            self.value * 1e3,
            self.lower * 1e3
        )
    }
}

impl HistogramDelta {
    pub fn between(before: &Scrape, after: &Scrape, name: &str) -> HistogramDelta {
        let (a, b) = (before.buckets(name), after.buckets(name));
        assert_eq!(a.len(), b.len(), "the buckets of {name} changed");
        let mut previous = 0.0;
        let buckets = a
            .iter()
            .zip(&b)
            .map(|((bound, before), (_, after))| {
                let cumulative = after - before;
                let own = cumulative - previous;
                previous = cumulative;
                (*bound, own.max(0.0))
            })
            .collect();
        HistogramDelta { buckets }
    }

    pub fn count(&self) -> f64 {
        self.buckets.iter().map(|(_, n)| n).sum()
    }

    /// The `q` quantile, interpolated within its bucket (the first bucket
    /// starts at 0; in `+Inf` the estimate is the last finite bound).
    pub fn quantile(&self, q: f64) -> BucketQuantile {
        let total = self.count();
        let nan = BucketQuantile {
            value: f64::NAN,
            lower: f64::NAN,
            upper: f64::NAN,
        };
        if total <= 0.0 {
            return nan;
        }
        let rank = q * total;
        let (mut below, mut lower) = (0.0, 0.0);
        for &(upper, n) in &self.buckets {
            if n > 0.0 && below + n >= rank {
                let value = if upper.is_infinite() {
                    lower
                } else {
                    lower + (upper - lower) * ((rank - below) / n).clamp(0.0, 1.0)
                };
                return BucketQuantile {
                    value,
                    lower,
                    upper,
                };
            }
            below += n;
            lower = upper;
        }
        nan
    }

    /// The upper bound of the highest bucket anything fell into: the
    /// most any observation can have been.
    pub fn max_bound(&self) -> Option<f64> {
        self.buckets
            .iter()
            .rev()
            .find(|(_, n)| *n > 0.0)
            .map(|(bound, _)| *bound)
    }
}

/// The numbers of `/proc/PID/status` by field name (`"VmRSS:"`; sizes in
/// kB); NaN for a field that is not there.
fn proc_status(pid: i32) -> impl Fn(&str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    move |name| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    }
}

/// kB to MB (10^6 bytes).
const KB_TO_MB: f64 = 1024.0 / 1e6;

/// (VmRSS, VmHWM) of a process, in MB (10^6 bytes).
pub fn memory_mb(pid: i32) -> (f64, f64) {
    let field = proc_status(pid);
    (field("VmRSS:") * KB_TO_MB, field("VmHWM:") * KB_TO_MB)
}

/// Where a process's memory is: (RssAnon MB, RssFile MB, threads).
pub fn memory_detail(pid: i32) -> (f64, f64, f64) {
    let field = proc_status(pid);
    (
        field("RssAnon:") * KB_TO_MB,
        field("RssFile:") * KB_TO_MB,
        field("Threads:"),
    )
}

/// CPU seconds (user + system) a process has used so far.
pub fn cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/stat: {e}"));
    // After the command name, in parentheses that may hold anything:
    // state is field 3, utime 14 and stime 15.
    let rest = &stat[stat.rfind(')').expect("a comm field") + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields[i - 3].parse::<f64>().expect("a tick count");
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(14) + ticks(15)) / hz
}

/// What pgbench reported.
#[derive(Clone, Debug, Default)]
pub struct PgbenchRun {
    pub tps: f64,
    /// "number of transactions actually processed".
    pub transactions: u64,
    /// "number of failed transactions" (PostgreSQL 15 on; 0 before).
    pub failed: u64,
    /// tps of each second, from `-P 1`.
    pub per_second: Vec<f64>,
}

/// Runs pgbench (no vacuum, TLS off as the test writers do) with `args`
/// on `db`, and reads its report.
pub fn pgbench(db: &crate::support::cluster::TestDb, args: &[&str]) -> PgbenchRun {
    let port = db.port.to_string();
    let output = Command::new(db.pgbench_path())
        .env("PGSSLMODE", "disable")
        .args(["-n", "-h", "127.0.0.1", "-p", &port, "-U", "postgres"])
        .args(args)
        .arg(&db.name)
        .stdin(Stdio::null())
        .output()
        .expect("run pgbench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "pgbench {args:?} failed:\n{stderr}{stdout}"
    );
    let number = |prefix: &str| -> Option<f64> {
        stdout.lines().find_map(|line| {
            line.strip_prefix(prefix)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse::<f64>().ok())
        })
    };
    let per_second = stderr
        .lines()
        .filter_map(|line| {
            // progress: 1.0 s, 11434.8 tps, lat 0.698 ms stddev 0.419, 0 failed
            let rest = line.strip_prefix("progress: ")?;
            let tps = rest.split(", ").nth(1)?.strip_suffix(" tps")?;
            tps.parse::<f64>().ok()
        })
        .collect();
    PgbenchRun {
        tps: number("tps = ").unwrap_or_else(|| panic!("no tps in pgbench's output:\n{stdout}")),
        transactions: number("number of transactions actually processed: ")
            .unwrap_or_else(|| panic!("no transaction count in pgbench's output:\n{stdout}"))
            as u64,
        failed: number("number of failed transactions: ").unwrap_or(0.0) as u64,
        per_second,
    }
}

/// Where the figures go: `$CARGO_TARGET_DIR/bench/NAME.json`, else
/// `target/bench/NAME.json` in the package.
pub fn write_json(name: &str, value: &serde_json::Value) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("bench");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let path = dir.join(format!("{name}.json"));
    let text = serde_json::to_string_pretty(value).expect("JSON");
    std::fs::write(&path, text + "\n").unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    path
}

/// `docs/NAME` in the package, the directory created if need be.
pub fn doc_path(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir.join(name)
}

/// Gives plotters a font (it draws text through ab_glyph, which has none
/// of its own): `PGFLEET_BENCH_FONT`, else a common sans-serif TTF of the
/// system. False, with the reason printed, when there is none.
pub fn register_font() -> bool {
    const CANDIDATES: [&str; 5] = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
    ];
    let chosen = std::env::var("PGFLEET_BENCH_FONT")
        .ok()
        .filter(|path| !path.is_empty())
        .into_iter()
        .chain(CANDIDATES.iter().map(|path| path.to_string()))
        .find_map(|path| std::fs::read(&path).ok());
    let Some(bytes) = chosen else {
        println!(
            "  (no chart: no font found; set PGFLEET_BENCH_FONT=/path/to/font.ttf, \
             or on Debian `apt-get install fonts-dejavu-core`)"
        );
        return false;
    };
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    let mut ok = true;
    for family in ["sans-serif", "serif", "monospace"] {
        ok &= plotters::style::register_font(family, plotters::style::FontStyle::Normal, bytes)
            .is_ok();
    }
    if !ok {
        println!("  (no chart: the font file could not be read as a font)");
    }
    ok
}
