//! The live side of HAProxy: its process, master CLI and admin socket.
//!
//! * [`process`]: start (or find again) an HAProxy in master-worker mode,
//!   keep its stderr, validate configs with `haproxy -c`, stop it.
//! * [`master`]: the master CLI (`-S <socket>`): `show proc` and reloads
//!   whose outcome is confirmed, since HAProxy 2.6 answers `reload` with
//!   nothing.
//! * [`admin`]: the admin stats socket (`stats socket ... level admin`):
//!   runtime changes that need no reload (server address, state, weight)
//!   and reading the live state back.
//!
//! * [`certs`]: whether HAProxy can load a certificate, and certificates
//!   added, replaced and removed through the admin socket.
//! * [`driver`]: observes the live HAProxy and carries out a plan through
//!   these, the I/O edge of the pipeline.
//!
//! Both sockets take one command per connection here. Every text sent is
//! checked first: a newline or `;` would let a value start a second command.

pub mod admin;
pub mod certs;
pub mod driver;
pub mod master;
pub mod process;

#[cfg(test)]
mod tests;
mod wire;
