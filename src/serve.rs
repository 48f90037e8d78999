//! The HTTP server loop: the API's router on hyper's HTTP/1 connections, with two bounds
//! `axum::serve` does not offer: a time limit on receiving a request's headers (which hyper
//! also applies to a kept-alive connection waiting for its next request, so it is the idle
//! limit as well) and a cap on open connections. Everything else is what `axum::serve` does:
//! one task per connection, and on shutdown no new connections while every open one finishes
//! its request in flight.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::config::HttpSettings;

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting and waits for
/// the open connections to finish the requests they are serving (idle ones close at once).
///
/// At `max_connections` open connections the loop stops accepting: new connections wait in
/// the kernel's listen backlog (and past it are refused by the kernel) until one closes. A
/// connection that sends no complete headers within `header_timeout`, or stays idle that
/// long between requests, is closed; slow bodies are bounded by the handlers that read them
/// (`ingest.body_timeout`).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &HttpSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    // Connections watch `stop` to begin a graceful close; each holds a `done` receiver, so
    // `done_tx.closed()` resolves once the last of them has ended.
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, done_rx) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    let mut at_capacity = false;
    loop {
        let permit = match open.clone().try_acquire_owned() {
            Ok(permit) => {
                at_capacity = false;
                permit
            }
            Err(_) => {
                if !at_capacity {
                    at_capacity = true;
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "HTTP connections at their limit (http.max_connections); new ones wait until one closes."
                    );
                }
                tokio::select! {
                    permit = open.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                    () = &mut shutdown => break,
                }
            }
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let conn =
            builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let mut stop = stop_rx.clone();
        let done = done_rx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _done = done;
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "HTTP connection ended with an error.");
                    }
                    return;
                }
                _ = stop.wait_for(|stop| *stop) => conn.as_mut().graceful_shutdown(),
            }
            if let Err(error) = conn.await {
                tracing::debug!(%error, "HTTP connection ended with an error.");
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(done_rx);
    done_tx.closed().await;
    Ok(())
}

/// As `axum::serve` does: a connection reset before it was accepted is nothing; any other
/// error (out of file descriptors, typically) is logged and retried after a pause.
async fn accept_error(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "Cannot accept a connection; retrying in 1 s.");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
