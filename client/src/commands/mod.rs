//! One module per command. Each holds the command's flags (`Args`, or a
//! `Command` enum for command groups) and a `run` function; `main::run`
//! dispatches to them.

pub mod completions;
pub mod config;
pub mod daemon;
pub mod docker_credential;
pub mod exec;
pub mod forget;
pub mod get;
pub mod git_credential;
pub mod kubeconfig;
pub mod list;
pub mod login;
pub mod logout;
pub mod man;
pub mod refresh;
pub mod sdk_env;
pub mod service;
pub mod status;
pub mod watch;
