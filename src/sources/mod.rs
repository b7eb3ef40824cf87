//! Where desired routes come from. Each source reads the outside world and
//! hands plain `RoutesFile` text or data to the pure stages.

pub mod git;
