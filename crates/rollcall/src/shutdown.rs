//! The one way every long-running command (monitor, peer, agent, demo) learns it should stop.

/// Completes on Ctrl-C or SIGTERM.
pub async fn signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler only fails outside a runtime");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
