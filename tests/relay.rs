//! A TCP relay in front of the test provider that behaves as the network between an app and its
//! provider sometimes does: it keeps the provider's close of a connection from the app until the
//! app's next packet, or forgets a connection left idle and resets it when the app next writes.
//! Either way the app learns of the close only by a reset of the request it sent on it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the relay treats a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayMode {
    /// Passes everything, closes as either side closes (counts connections).
    Plain,
    /// When the provider closes a connection, the app's side stays open, silent, and is reset
    /// when the app next sends on it: a balancer or firewall that dropped the flow.
    HoldClose,
    /// A connection idle for longer than this is forgotten: the app's next packet on it gets a
    /// reset (and the provider's side is closed): a NAT gateway's idle timeout.
    ResetIdle(Duration),
}

/// A running relay; stops when dropped.
pub struct Relay {
    /// The port the app connects to.
    pub port: u16,
    connections: Arc<AtomicU64>,
    resets: Arc<AtomicU64>,
    swallowing: Arc<AtomicBool>,
    dropping: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// A relay on a free loopback port in front of `upstream`.
    pub async fn start(upstream: SocketAddr, mode: RelayMode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::on(listener, upstream, mode)
    }

    /// A relay listening on `listener` in front of `upstream`.
    pub fn on(listener: TcpListener, upstream: SocketAddr, mode: RelayMode) -> Self {
        let port = listener.local_addr().unwrap().port();
        let (connections, resets) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (opened, reset) = (connections.clone(), resets.clone());
        let swallowing = Arc::new(AtomicBool::new(false));
        let swallow = swallowing.clone();
        let dropping = Arc::new(AtomicBool::new(false));
        let drop_answer = dropping.clone();
        let task = tokio::spawn(async move {
            while let Ok((app, _)) = listener.accept().await {
                opened.fetch_add(1, Ordering::SeqCst);
                let (reset, swallow, drop_answer) = (reset.clone(), swallow.clone(), drop_answer.clone());
                tokio::spawn(async move {
                    let Ok(provider) = TcpStream::connect(upstream).await else { return };
                    if relay(app, provider, mode, &swallow, &drop_answer).await {
                        reset.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
        Self { port, connections, resets, swallowing, dropping, task }
    }

    /// The next answer the provider sends, on any connection, is not passed on: the app's
    /// connection is reset instead. The provider did receive the request: the rare edge where
    /// a resend reaches it twice.
    pub fn drop_next_answer(&self) {
        self.dropping.store(true, Ordering::SeqCst);
    }

    /// While on, what the app sends is dropped and nothing comes back, on open connections and
    /// new ones alike: a provider that hangs, or a network that lost its route.
    pub fn swallow(&self, on: bool) {
        self.swallowing.store(on, Ordering::SeqCst);
    }

    /// Connections the app opened through the relay.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    /// Connections the relay reset under the app's next request.
    pub fn resets(&self) -> u64 {
        self.resets.load(Ordering::SeqCst)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Relays one connection until it ends; whether it ended by resetting the app's side.
async fn relay(
    mut app: TcpStream,
    mut provider: TcpStream,
    mode: RelayMode,
    swallow: &AtomicBool,
    drop_answer: &AtomicBool,
) -> bool {
    let (mut from_app, mut from_provider) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    let mut last = Instant::now();
    let mut provider_closed = false;
    // Whether the provider was sent bytes it has not answered yet: its close then comes as a
    // reset of that request at once (a packet meeting a closed socket), never held.
    let mut awaiting_answer = false;
    let reset = loop {
        let (mut app_read, mut app_write) = app.split();
        let (mut provider_read, mut provider_write) = provider.split();
        tokio::select! {
            read = app_read.read(&mut from_app) => {
                let n = read.unwrap_or(0);
                if n == 0 {
                    break false;
                }
                if swallow.load(Ordering::SeqCst) {
                    continue;
                }
                let forgotten = matches!(mode, RelayMode::ResetIdle(idle) if last.elapsed() > idle);
                if provider_closed || forgotten {
                    break true;
                }
                if provider_write.write_all(&from_app[..n]).await.is_err() {
                    break true;
                }
                awaiting_answer = true;
                last = Instant::now();
            }
            read = provider_read.read(&mut from_provider), if !provider_closed => {
                let n = read.unwrap_or(0);
                if n == 0 {
                    if awaiting_answer {
                        break true;
                    }
                    if mode == RelayMode::HoldClose {
                        // The app is not told: its next packet meets a reset.
                        provider_closed = true;
                        continue;
                    }
                    break false;
                }
                if drop_answer.swap(false, Ordering::SeqCst) {
                    break true;
                }
                if app_write.write_all(&from_provider[..n]).await.is_err() {
                    break false;
                }
                awaiting_answer = false;
                last = Instant::now();
            }
        }
    };
    if reset {
        // SO_LINGER 0: the close is a reset, as a middlebox that forgot the flow answers.
        let _ = app.set_zero_linger();
    }
    reset
}
