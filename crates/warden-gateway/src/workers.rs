//! Connection workers: threads that each run a single-threaded event loop and serve
//! the client connections the accepting task hands them in turn. A request then stays
//! on one thread from the client's bytes to the upstream's answer (its upstream
//! connection comes from that worker's own pool, see [`current`]), so nothing wakes a
//! second thread: on a work-stealing runtime every request woke an idle worker and
//! crossed threads between the client's connection and the pooled upstream connection.
//! Work is spread per connection, not per request, as nginx's worker processes do.

use crate::Error;
use std::cell::Cell;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

thread_local! {
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// The worker running on this thread, 1 to n; 0 on any other thread. Used to pick the
/// worker's own upstream client.
pub fn current() -> usize {
    INDEX.with(Cell::get)
}

/// An accepted client connection handed to a worker.
#[derive(Debug)]
pub struct Conn {
    /// The socket (non-blocking), registered with the worker's event loop on arrival.
    pub tcp: std::net::TcpStream,
    /// The client's address.
    pub peer: SocketAddr,
    /// Cancelled by lockdown.
    pub token: CancellationToken,
}

/// The running workers.
#[derive(Debug)]
pub struct Workers {
    txs: Vec<mpsc::UnboundedSender<Conn>>,
    next: AtomicUsize,
}

impl Workers {
    /// Start `n` (at least 1) worker threads; each serves the connections it is given
    /// with `serve` until `shutdown` is cancelled or the [`Workers`] are dropped, and
    /// its open connections end with it.
    pub fn start<F, Fut>(n: usize, serve: F, shutdown: &CancellationToken) -> Result<Workers, Error>
    where
        F: Fn(Conn) -> Fut + Send + Clone + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut txs = Vec::with_capacity(n);
        for i in 1..=n.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::Config(format!("cannot start connection worker {i}: {e}")))?;
            let (tx, mut rx) = mpsc::unbounded_channel::<Conn>();
            let serve = serve.clone();
            let stop = shutdown.clone();
            std::thread::Builder::new()
                .name(format!("warden-conn-{i}"))
                .spawn(move || {
                    INDEX.with(|c| c.set(i));
                    rt.block_on(async move {
                        loop {
                            tokio::select! {
                                c = rx.recv() => match c {
                                    Some(c) => {
                                        tokio::spawn(serve(c));
                                    }
                                    None => break,
                                },
                                () = stop.cancelled() => break,
                            }
                        }
                    });
                })
                .map_err(|e| Error::Config(format!("cannot start connection worker {i}: {e}")))?;
            txs.push(tx);
        }
        Ok(Workers {
            txs,
            next: AtomicUsize::new(0),
        })
    }

    /// Hand a connection to the next worker; gives it back if every worker is gone.
    pub fn dispatch(&self, mut c: Conn) -> Result<(), Conn> {
        let n = self.txs.len();
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        for k in 0..n {
            let Some(tx) = self.txs.get((first + k) % n) else {
                break;
            };
            match tx.send(c) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::SendError(back)) => c = back,
            }
        }
        Err(c)
    }

    /// How many workers were started.
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    /// Never true: at least one worker is started.
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::sync::mpsc as std_mpsc;
    use std::time::Duration;

    fn conn(l: &TcpListener) -> (Conn, TcpStream) {
        let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (tcp, peer) = l.accept().unwrap();
        tcp.set_nonblocking(true).unwrap();
        let c = Conn {
            tcp,
            peer,
            token: CancellationToken::new(),
        };
        (c, client)
    }

    #[test]
    fn connections_go_round_robin_to_worker_threads_and_stop_with_shutdown() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let (tx, rx) = std_mpsc::channel();
        let shutdown = CancellationToken::new();
        let serve = move |c: Conn| {
            let tx = tx.clone();
            async move {
                // Registering the socket needs this worker's event loop.
                let tcp = tokio::net::TcpStream::from_std(c.tcp).unwrap();
                let name = std::thread::current().name().unwrap_or("").to_owned();
                tx.send((current(), name, tcp.peer_addr().unwrap()))
                    .unwrap();
            }
        };
        let w = Workers::start(2, serve, &shutdown).unwrap();
        assert_eq!(w.len(), 2);
        let mut clients = Vec::new();
        let mut seen = Vec::new();
        for _ in 0..4 {
            let (c, client) = conn(&l);
            w.dispatch(c).unwrap();
            clients.push(client);
            seen.push(rx.recv_timeout(Duration::from_secs(10)).unwrap());
        }
        let idx: Vec<usize> = seen.iter().map(|s| s.0).collect();
        assert_eq!(idx, [1, 2, 1, 2]);
        for (i, name, _) in &seen {
            assert_eq!(name, &format!("warden-conn-{i}"));
        }
        assert_eq!(current(), 0, "the test thread is no worker");
        // After shutdown every worker's loop ends and a connection comes back.
        shutdown.cancel();
        let t0 = std::time::Instant::now();
        loop {
            let (c, _client) = conn(&l);
            let peer = c.peer;
            match w.dispatch(c) {
                Err(back) => {
                    assert_eq!(back.peer, peer);
                    break;
                }
                Ok(()) => {
                    assert!(
                        t0.elapsed() < Duration::from_secs(10),
                        "workers never stopped"
                    );
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }
}
