//! placeholder
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {}
