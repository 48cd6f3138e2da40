//! PostgreSQL connection strings, read exactly as libpq reads them.
//!
//! Operators copy connection strings between psql, libpq-based tools and
//! pgfleet; tokio-postgres reads them differently in small ways (no
//! `PG*` variables, no `~/.pgpass`, other defaults), which turns a string
//! that works in psql into one that fails, or connects elsewhere, here.
//! This module gives pgfleet libpq's behaviour, std-only, and keeps
//! passwords out of every message it produces.
//!
//! - [`parse()`]: a URL or `keyword=value` string into [`Options`], exactly as
//!   written (one deliberate extension: unencoded `@ / ? #` in URL
//!   passwords, see [`parse()`]).
//! - [`resolve()`]: [`Options`] plus the [`Environment`] (`PG*` variables,
//!   the OS user, the home directory, the default socket directory) into a
//!   checked [`Target`].
//! - [`pgpass`]: libpq's password file, used by [`Target::password_for`].
//! - [`mask_passwords`]: a connection string safe to log.
//!
//! Inside, dependencies point one way, so each layer can be read and tested
//! on its own: the leaves (`error`, [`keywords`] with [`MASK`], `url`),
//! then `percent` and [`Options`], the readers `key_value` and
//! `url_parse`, then [`parse()`] and [`mask_passwords`] over them; last,
//! [`resolve()`], which reads [`Options`] into a [`Target`] (its types, with
//! [`Origin`], below it and knowing nothing of it).

mod environment;
mod error;
mod key_value;
pub mod keywords;
mod mask;
mod options;
mod parse;
pub mod percent;
pub mod pgpass;
mod resolve;
mod target;
#[cfg(test)]
mod test_support;
mod url;
mod url_parse;

pub use environment::{Environment, ProcessEnvironment};
pub use error::{ParseError, UrlPart};
pub use keywords::{Keyword, KEYWORDS, MASK};
pub use mask::mask_passwords;
pub use options::Options;
pub use parse::parse;
pub use pgpass::PgpassOutcome;
pub use resolve::{resolve, Problem, ResolveError, DEFAULT_PORT};
pub use target::{
    ChannelBinding, Endpoint, Host, Keepalives, LoadBalanceHosts, Origin, SslMode, SslNegotiation,
    Target, TargetSessionAttrs, UnhandledSetting,
};
