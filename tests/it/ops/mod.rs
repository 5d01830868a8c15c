//! For the people who run canarist: secrets from the environment, commands that need only what
//! they use, config tooling. Every test here runs the real binary.

mod completions;
mod config_tooling;
mod store_commands;
