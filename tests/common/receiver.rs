//! A webhook receiver for the delivery tests: a real HTTP server on an ephemeral port that
//! records every request and answers from a script (status, redirect, an endless body).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

/// How the receiver answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// This status, with a short text body that echoes the request path.
    Status(u16),
    /// 302 to this location.
    Redirect(String),
    /// This status with a body that never ends.
    Endless(u16),
    /// This status as [`Reply::Status`], after waiting this long.
    Slow(std::time::Duration, u16),
}

/// A request as the receiver got it.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Default)]
struct Script {
    requests: parking_lot::Mutex<Vec<Request>>,
    /// Answers for the next requests, in order; 200 once they are used up.
    replies: parking_lot::Mutex<VecDeque<Reply>>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    script: Arc<Script>,
    server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// A receiver answering `replies` in order, then 200.
    pub async fn start(replies: Vec<Reply>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let addr = listener.local_addr().expect("a bound address");
        let script = Arc::new(Script::default());
        script.replies.lock().extend(replies);
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(script.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            script,
            server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.script.requests.lock().clone()
    }

    pub fn count(&self) -> usize {
        self.script.requests.lock().len()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn receive(
    State(script): State<Arc<Script>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    script.requests.lock().push(Request {
        path: path.clone(),
        headers,
        body: body.to_vec(),
    });
    let reply = script
        .replies
        .lock()
        .pop_front()
        .unwrap_or(Reply::Status(200));
    if let Reply::Slow(wait, _) = reply {
        tokio::time::sleep(wait).await;
    }
    match reply {
        Reply::Status(code) | Reply::Slow(_, code) => (
            StatusCode::from_u16(code).expect("a valid status"),
            format!("receiver says {code} for {path}"),
        )
            .into_response(),
        Reply::Redirect(location) => {
            (StatusCode::FOUND, [(header::LOCATION, location)], "moved").into_response()
        }
        Reply::Endless(code) => {
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let stream = endless(chunk);
            (
                StatusCode::from_u16(code).expect("a valid status"),
                Body::from_stream(stream),
            )
                .into_response()
        }
    }
}

/// The same chunk forever.
fn endless(chunk: Bytes) -> impl tokio_stream::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    tokio_stream::iter(std::iter::repeat(chunk).map(Ok))
}
