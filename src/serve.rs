//! The accept loop every listener shares (OTLP/gRPC, OTLP/HTTP, admin): HTTP/1.1 and
//! HTTP/2 (prior knowledge, as gRPC clients speak it, or by ALPN over TLS) with the
//! limits a hostile or broken client cannot get past, and the graceful close at
//! shutdown. See the README's security section.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

use crate::config::OtlpReceiverConfig;
use crate::tls::ServerTls;

/// What one listener allows a connection.
#[derive(Clone, Debug)]
pub struct Limits {
    /// HTTP/2 streams open at once on one connection
    pub max_streams: u32,
    /// largest request head, bytes
    pub max_header_bytes: usize,
    /// first byte, TLS handshake and each HTTP/1.1 request head must arrive within this
    pub header_timeout: Duration,
    /// a connection with no request in flight this long is closed
    pub idle_timeout: Duration,
}

impl Limits {
    /// The limits of `receivers.otlp`; the admin endpoint uses the same defaults.
    pub fn from_config(c: &OtlpReceiverConfig) -> Limits {
        Limits {
            max_streams: c.max_concurrent_streams.min(u32::MAX as u64) as u32,
            max_header_bytes: (c.max_header_kib as usize).saturating_mul(1024),
            header_timeout: Duration::from_nanos(c.read_header_timeout.as_nanos()),
            idle_timeout: Duration::from_nanos(c.idle_timeout.as_nanos()),
        }
    }
}

/// A budget of concurrent connections for one or more listeners.
#[derive(Clone)]
pub struct ConnLimit(Arc<tokio::sync::Semaphore>);

impl ConnLimit {
    /// At most `max` connections at once.
    pub fn new(max: usize) -> Self {
        ConnLimit(Arc::new(tokio::sync::Semaphore::new(max.max(1))))
    }
}

/// One listener: what it serves and how.
pub struct Listener {
    /// the bound socket
    pub socket: TcpListener,
    /// the routes
    pub router: axum::Router,
    /// its connection budget (shared by the two OTLP listeners)
    pub conns: ConnLimit,
    /// TLS, when configured
    pub tls: Option<Arc<ServerTls>>,
    /// per-connection limits
    pub limits: Limits,
}

/// Logs accept errors (EMFILE under a flood of connections, …) at most once a second,
/// with how many were left out.
#[derive(Default)]
struct AcceptErrors {
    last: Option<Instant>,
    suppressed: u64,
}

impl AcceptErrors {
    fn note(&mut self, e: &std::io::Error) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(suppressed = self.suppressed, "accept failed: {e}");
        self.last = Some(now);
        self.suppressed = 0;
    }
}

/// An accepted connection, after its TLS handshake when the listener has TLS.
enum Io {
    Plain(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>),
}

/// Requests in flight on one connection and when the last one began or ended.
struct Activity {
    started: Instant,
    inflight: AtomicUsize,
    last_ns: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let ns = self.started.elapsed().as_nanos() as u64;
        self.last_ns.store(ns, Ordering::Relaxed);
    }

    /// When the connection becomes idle-closable, if nothing happens before.
    fn idle_deadline(&self, idle: Duration) -> Instant {
        self.started + Duration::from_nanos(self.last_ns.load(Ordering::Relaxed)) + idle
    }

    fn idle(&self) -> bool {
        self.inflight.load(Ordering::Relaxed) == 0
    }
}

/// Counts a request in flight until dropped (when its response is ready).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(a: &Arc<Activity>) -> InFlight {
        a.inflight.fetch_add(1, Ordering::Relaxed);
        a.touch();
        InFlight(a.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves `l` until `stop`; then every connection finishes the requests it has and
/// closes, for at most `grace`, after which the rest are closed by force.
///
/// A connection beyond the budget is closed as soon as it is accepted (the client sees
/// the connection refused and retries, never a hang). One that sends nothing, does not
/// finish its TLS handshake, or (HTTP/1.1) does not finish a request head within
/// `header_timeout` is closed, as is one with no request in flight for `idle_timeout`;
/// a body must arrive within `receivers.otlp.read_timeout` (the receivers check it).
pub async fn serve(l: Listener, mut stop: watch::Receiver<bool>, grace: Duration) {
    let lim = l.limits.clone();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(lim.header_timeout)
        .max_buf_size(lim.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(8 << 20)
        .max_concurrent_streams(lim.max_streams)
        .max_header_list_size(lim.max_header_bytes.min(u32::MAX as usize) as u32);
    let mut conns = tokio::task::JoinSet::new();
    let mut errors = AcceptErrors::default();
    loop {
        tokio::select! {
            accepted = l.socket.accept() => {
                // finished connections leave the set as new ones come
                while conns.try_join_next().is_some() {}
                let (stream, _) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        errors.note(&e);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = l.conns.0.clone().try_acquire_owned() else {
                    drop(stream); // over the limit: closed at once, never left hanging
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let (router, builder, lim) = (l.router.clone(), builder.clone(), lim.clone());
                let acceptor = l.tls.as_ref().map(|t| t.acceptor());
                let mut stop = stop.clone();
                conns.spawn(async move {
                    let _permit = permit;
                    // Before it is served, a connection waits for nothing at shutdown.
                    let mut halt = stop.clone();
                    let ready = async {
                        // A connection that sends nothing gives its slot back.
                        let mut first = [0u8; 1];
                        match tokio::time::timeout(lim.header_timeout, stream.peek(&mut first)).await {
                            Ok(Ok(n)) if n > 0 => {}
                            _ => return None,
                        }
                        let Some(acceptor) = acceptor else {
                            return Some(Io::Plain(stream));
                        };
                        // The handshake has the same deadline: a client that stalls in it
                        // (or speaks plaintext to a TLS port) gives its slot back.
                        match tokio::time::timeout(lim.header_timeout, acceptor.accept(stream)).await {
                            Ok(Ok(s)) => Some(Io::Tls(Box::new(s))),
                            Ok(Err(e)) => {
                                tracing::debug!("TLS handshake failed: {e}");
                                None
                            }
                            Err(_) => {
                                tracing::debug!("TLS handshake not finished in time");
                                None
                            }
                        }
                    };
                    let io = tokio::select! {
                        io = ready => io,
                        _ = halt.changed() => None,
                    };
                    match io {
                        Some(Io::Plain(s)) => connection(s, router, &builder, &lim, &mut stop).await,
                        Some(Io::Tls(s)) => connection(s, router, &builder, &lim, &mut stop).await,
                        None => {}
                    }
                });
            }
            _ = stop.changed() => break,
        }
    }
    drop(l.socket);
    let drained = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!(
            open = conns.len(),
            "connections still open after the shutdown grace: closing them"
        );
    }
    conns.shutdown().await;
}

/// Serves one connection until the client closes it, it has been idle for
/// `idle_timeout`, or shutdown starts (then it finishes what it has and closes).
async fn connection<S>(
    io: S,
    router: axum::Router,
    builder: &auto::Builder<TokioExecutor>,
    lim: &Limits,
    stop: &mut watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let activity = Arc::new(Activity {
        started: Instant::now(),
        inflight: AtomicUsize::new(0),
        last_ns: AtomicU64::new(0),
    });
    let a = activity.clone();
    let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let guard = InFlight::begin(&a);
        let router = router.clone();
        async move {
            let resp = router.oneshot(req).await;
            drop(guard);
            resp
        }
    });
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        // while a request is in flight, look again an idle period later
        let idle_at = if activity.idle() {
            activity.idle_deadline(lim.idle_timeout)
        } else {
            Instant::now() + lim.idle_timeout
        };
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = stop.changed(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = tokio::time::sleep_until(idle_at.into()), if !closing => {
                if activity.idle() && Instant::now() >= activity.idle_deadline(lim.idle_timeout) {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}
