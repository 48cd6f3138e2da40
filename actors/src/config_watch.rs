//! `--watch-config`: a change to a `--config` file or to
//! `database.password_file` reloads as SIGHUP does.
//!
//! Kubernetes updates a mounted ConfigMap or Secret by swapping a symlink
//! (`..data`), which inotify on the file's path does not see; so the files
//! are polled instead, following symlinks, on a thread of their own (a hung
//! mount stalls that thread, never the actors). A change reloads once the
//! files have been still for one more poll, so an editor's several writes
//! make one reload.
//!
//! The watcher knows nothing of actors: it is told what to call when the
//! files changed (the binary passes a closure that sends the ConfigActor a
//! `Reload`), so the ConfigActor can own the list of files without the two
//! modules depending on each other.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// How often the files are looked at.
pub const POLL_EVERY: Duration = Duration::from_millis(500);

/// The files to watch; the ConfigActor updates the list when a reload
/// changes `database.password_file`.
#[derive(Clone, Default)]
pub struct WatchedFiles(Arc<Mutex<Vec<PathBuf>>>);

impl WatchedFiles {
    pub fn set(&self, files: Vec<PathBuf>) {
        if let Ok(mut current) = self.0.lock() {
            *current = files;
        }
    }

    fn get(&self) -> Vec<PathBuf> {
        self.0.lock().map(|files| files.clone()).unwrap_or_default()
    }
}

/// What a file looks like from outside: a rewrite, a replacement or a
/// symlink swap changes it; `None` when it is not there.
type Fingerprint = Option<(SystemTime, u64, u64)>;

fn fingerprint(path: &PathBuf) -> Fingerprint {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len(), meta.ino()))
}

/// Starts the watcher thread; it lives as long as the process and calls
/// `on_change` once per settled change.
pub fn spawn(files: WatchedFiles, on_change: impl Fn() + Send + 'static) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("pgfleet-config-watch".into())
        .spawn(move || {
            let snapshot = |files: &WatchedFiles| -> Vec<(PathBuf, Fingerprint)> {
                files
                    .get()
                    .into_iter()
                    .map(|path| {
                        let print = fingerprint(&path);
                        (path, print)
                    })
                    .collect()
            };
            let mut seen = snapshot(&files);
            let mut changed = false;
            loop {
                std::thread::sleep(POLL_EVERY);
                let now = snapshot(&files);
                if now != seen {
                    seen = now;
                    changed = true;
                } else if std::mem::take(&mut changed) {
                    on_change();
                }
            }
        })
        .map(drop)
}
