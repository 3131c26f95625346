//! One module per command. Each holds the command's flags (`Args`, or a
//! `Command` enum for command groups) and a `run` function; `main::run`
//! dispatches to them.

pub mod completions;
pub mod config;
pub mod daemon;
pub mod exec;
pub mod forget;
pub mod get;
pub mod list;
pub mod refresh;
pub mod status;
pub mod watch;
