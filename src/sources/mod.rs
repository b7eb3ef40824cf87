//! Where desired routes come from. Each source reads the outside world and
//! hands plain data to the pure stages.

pub mod git;
pub mod overrides;
pub mod swarm;
