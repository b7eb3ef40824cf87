//! Sources → one desired state: the routes to serve and their servers.

pub mod overlay;
pub mod servers;
