//! Faults of the database itself, injected for real: restarts, crashes,
//! a server down at start, killed backends, a stalled server.
//!
//! These tests restart, stop and pause the server, so they are a test
//! binary of their own (a cluster of their own, see `support::cluster`) and
//! run one at a time. Each prints what it measured, for RELIABILITY.md
//! (`cargo test --test faults -- --nocapture`).

#[path = "../it/support/mod.rs"]
mod support;

mod coordination;
mod database;

use std::sync::{Mutex, MutexGuard};

/// One fault at a time: each test owns the cluster while it runs.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
