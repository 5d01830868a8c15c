//! `canarist mock-upstream`: the built-in OpenAI-compatible mock upstream, served until Ctrl-C.

use std::process::ExitCode;

use crate::mock::{MockArgs, MockError, MockState, load_config, serve};

/// `canarist mock-upstream`: serve until Ctrl-C.
pub async fn run(args: MockArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(&args)?;
    let listen = config.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| MockError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr()?;
    let models = config.models.len();
    let entries = config.dataset.len();
    let state = MockState::new(config);
    let token = state.shutdown_token();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        token.cancel();
    });
    println!(
        "canarist mock-upstream listening on http://{addr}/v1 ({models} models, {entries} dataset prompts, seed {})",
        args.seed
    );
    serve(listener, state).await?;
    Ok(ExitCode::SUCCESS)
}
