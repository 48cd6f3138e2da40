//! Integration tests: one test binary, so that all tests share one
//! throwaway PostgreSQL cluster (see `support::cluster`).

mod backlog;
mod bulkheads;
mod cli;
mod connecting;
mod control;
mod coordination;
mod deploy;
mod discovery;
mod docs;
mod faults;
mod harness;
mod http;
mod invariant;
mod lanes;
mod logs;
mod operating;
mod pipelining;
mod pooler;
mod prepared;
mod reload;
mod shutdown;
mod startup;
mod supervision;
mod support;
mod vacuum;
mod value_types;
mod visibility;
mod worker;
