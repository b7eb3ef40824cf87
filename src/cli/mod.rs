//! The binary's commands that talk to a daemon or run one.

pub mod serve;
