pub mod cluster;
pub mod pgbouncer;
pub mod pgfleet;
pub mod proxy;
pub mod tls;
pub mod writers;
