//! Sources → one desired state: the routes to serve and their servers.

pub mod servers;
