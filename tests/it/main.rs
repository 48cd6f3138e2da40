//! Integration tests: one test binary, so that all tests share one
//! throwaway PostgreSQL cluster (see `support::cluster`).

mod harness;
mod worker;
mod support;
