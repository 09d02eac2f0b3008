//! The `/metrics` endpoint of a job process (`weir run --metrics-addr`), on a thread of its own
//! so a busy dataflow never delays a scrape.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use weir_engine::stats::JobStats;

/// The content type of the Prometheus text format.
pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves `GET /metrics` (and `/healthz`) on `addr`; returns the bound address. Binding fails
/// here, before the job starts, with the address in the error.
pub fn serve(addr: &str, stats: Arc<JobStats>) -> Result<SocketAddr, String> {
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| format!("--metrics-addr {addr}: cannot listen: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("--metrics-addr {addr}: {e}"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("--metrics-addr {addr}: {e}"))?;
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let stats = stats.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, TEXT_FORMAT)],
                        stats.metrics().encode(),
                    )
                        .into_response()
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }));
    std::thread::Builder::new()
        .name("weir-metrics".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime");
            runtime.block_on(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => {
                        if let Err(e) = axum::serve(l, app).await {
                            tracing::error!("metrics endpoint on {bound}: {e}");
                        }
                    }
                    Err(e) => tracing::error!("metrics endpoint on {bound}: {e}"),
                }
            });
        })
        .map_err(|e| format!("metrics endpoint: {e}"))?;
    Ok(bound)
}
