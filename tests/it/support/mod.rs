pub mod cluster;
pub mod load;
pub mod openssl;
pub mod pgbouncer;
pub mod pgfleet;
pub mod proxy;
pub mod tls;
pub mod writers;
