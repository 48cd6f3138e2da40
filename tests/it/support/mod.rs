pub mod cluster;
pub mod pgfleet;
