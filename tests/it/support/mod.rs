pub mod cluster;
pub mod pgfleet;
pub mod proxy;
pub mod writers;
