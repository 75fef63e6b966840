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
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
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

/// How far away a worker's timer driver's next wake-up is kept (see [`heartbeat`]).
const HEARTBEAT: Duration = Duration::from_millis(250);

/// Keeps a timer due within [`HEARTBEAT`] on the worker's event loop, for ever. Tokio's
/// time driver wakes its own event loop (an `eventfd` write, then an `epoll_wait` that
/// returns at once) whenever a timer is registered that is due before the next wake-up
/// it planned, even when the registering thread is the loop's own and the loop is not
/// parked (tokio-rs/tokio#5207). Every request registers timeouts (header read, upstream
/// answer, body), seconds away; with nothing sooner pending, about every other request
/// paid those two system calls. With this timer pending they are later than the planned
/// wake-up and register without a system call; the price is four wake-ups a second of
/// an idle worker.
async fn heartbeat() {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
    }
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
    /// Held while the connection lives (the gateway's count of open connections).
    pub hold: Box<dyn std::any::Any + Send>,
}

/// The running workers.
#[derive(Debug)]
pub struct Workers {
    txs: Vec<mpsc::UnboundedSender<Conn>>,
    /// Open connections per worker: a new one goes to the least loaded, so a worker
    /// stalled by a slow request stops receiving them.
    open: Arc<[AtomicUsize]>,
    next: AtomicUsize,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// Counts a connection as open on its worker until dropped.
struct OpenGuard(Arc<[AtomicUsize]>, usize);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        if let Some(n) = self.0.get(self.1) {
            n.fetch_sub(1, Ordering::Relaxed);
        }
    }
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
        let n = n.max(1);
        let open: Arc<[AtomicUsize]> = (0..n).map(|_| AtomicUsize::new(0)).collect();
        let mut txs = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        for i in 1..=n {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::Config(format!("cannot start connection worker {i}: {e}")))?;
            let (tx, mut rx) = mpsc::unbounded_channel::<Conn>();
            let serve = serve.clone();
            let stop = shutdown.clone();
            let load = Arc::clone(&open);
            let handle = std::thread::Builder::new()
                .name(format!("warden-conn-{i}"))
                .spawn(move || {
                    INDEX.with(|c| c.set(i));
                    rt.block_on(async move {
                        tokio::spawn(heartbeat());
                        loop {
                            tokio::select! {
                                c = rx.recv() => match c {
                                    Some(c) => {
                                        let guard = OpenGuard(Arc::clone(&load), i - 1);
                                        let conn = serve(c);
                                        tokio::spawn(async move {
                                            conn.await;
                                            drop(guard);
                                        });
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
            threads.push(handle);
        }
        Ok(Workers {
            txs,
            open,
            next: AtomicUsize::new(0),
            threads,
        })
    }

    /// Stop taking connections and wait (at most `limit`) for every worker thread to
    /// end, its connections and what they hold (the gateway, and through it the audit
    /// log) dropped with it, so the caller can then close the log knowing nothing still
    /// appends to it. Returns false if some worker did not end in time.
    pub async fn join(self, limit: Duration) -> bool {
        let Workers { txs, threads, .. } = self;
        drop(txs);
        let joined = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        });
        matches!(tokio::time::timeout(limit, joined).await, Ok(Ok(())))
    }

    /// Hand a connection to the worker with the fewest open connections (ties in
    /// turn); gives it back if every worker is gone.
    pub fn dispatch(&self, mut c: Conn) -> Result<(), Conn> {
        let n = self.txs.len();
        if n == 0 {
            return Err(c);
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let load = |w: usize| {
            self.open
                .get(w)
                .map_or(usize::MAX, |a| a.load(Ordering::Relaxed))
        };
        let turn = move |k: usize| (start + k) % n;
        // The first of the least loaded in turn; should it be gone, the others in turn.
        let best = (0..n).map(turn).min_by_key(|&w| load(w)).unwrap_or(start);
        let others = (0..n).map(turn).filter(move |&w| w != best);
        for w in std::iter::once(best).chain(others) {
            let (Some(tx), Some(count)) = (self.txs.get(w), self.open.get(w)) else {
                continue;
            };
            count.fetch_add(1, Ordering::Relaxed);
            match tx.send(c) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::SendError(back)) => {
                    count.fetch_sub(1, Ordering::Relaxed);
                    c = back;
                }
            }
        }
        Err(c)
    }

    /// Open connections of each worker.
    pub fn open_connections(&self) -> Vec<usize> {
        self.open
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .collect()
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
    use std::io::Read as _;
    use std::net::{TcpListener, TcpStream};
    use std::sync::mpsc as std_mpsc;
    use tokio::io::AsyncReadExt as _;

    fn conn(l: &TcpListener) -> (Conn, TcpStream) {
        let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (tcp, peer) = l.accept().unwrap();
        tcp.set_nonblocking(true).unwrap();
        let c = Conn {
            tcp,
            peer,
            token: CancellationToken::new(),
            hold: Box::new(()),
        };
        (c, client)
    }

    /// Connect, hand the connection to the workers and wait for its report.
    fn hand(
        w: &Workers,
        l: &TcpListener,
        rx: &std_mpsc::Receiver<(usize, String)>,
    ) -> ((usize, String), TcpStream) {
        let (c, client) = conn(l);
        w.dispatch(c).unwrap();
        (rx.recv_timeout(Duration::from_secs(10)).unwrap(), client)
    }

    fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
        let t0 = std::time::Instant::now();
        while !f() {
            assert!(t0.elapsed() < Duration::from_secs(10), "{what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Workers whose connections report (worker, thread name) and then stay open
    /// until the client closes; `held` is shared with every connection task.
    fn start(
        n: usize,
        shutdown: &CancellationToken,
        held: &Arc<()>,
    ) -> (Workers, std_mpsc::Receiver<(usize, String)>) {
        let (tx, rx) = std_mpsc::channel();
        let held = Arc::clone(held);
        let serve = move |c: Conn| {
            let (tx, held) = (tx.clone(), Arc::clone(&held));
            async move {
                // Registering the socket needs this worker's event loop.
                let mut tcp = tokio::net::TcpStream::from_std(c.tcp).unwrap();
                let name = std::thread::current().name().unwrap_or("").to_owned();
                tx.send((current(), name)).unwrap();
                let mut b = [0u8; 16];
                while tcp.read(&mut b).await.is_ok_and(|n| n > 0) {}
                drop(held);
            }
        };
        (Workers::start(n, serve, shutdown).unwrap(), rx)
    }

    #[test]
    fn connections_go_to_worker_threads_in_turn() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let shutdown = CancellationToken::new();
        let held = Arc::new(());
        let (w, rx) = start(2, &shutdown, &held);
        assert_eq!(w.len(), 2);
        let mut clients = Vec::new();
        let mut seen = Vec::new();
        for _ in 0..4 {
            let (report, client) = hand(&w, &l, &rx);
            clients.push(client);
            seen.push(report);
        }
        let idx: Vec<usize> = seen.iter().map(|s| s.0).collect();
        assert_eq!(idx, [1, 2, 1, 2]);
        for (i, name) in &seen {
            assert_eq!(name, &format!("warden-conn-{i}"));
        }
        assert_eq!(w.open_connections(), [2, 2]);
        assert_eq!(current(), 0, "the test thread is no worker");
        drop(clients);
        wait_until("connections never closed", || {
            w.open_connections() == [0, 0]
        });
    }

    #[test]
    fn a_new_connection_goes_to_the_least_loaded_worker() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let shutdown = CancellationToken::new();
        let held = Arc::new(());
        let (w, rx) = start(2, &shutdown, &held);
        let ((first, _), _keep) = hand(&w, &l, &rx);
        assert_eq!(first, 1);
        let ((second, _), short) = hand(&w, &l, &rx);
        assert_eq!(second, 2);
        drop(short);
        wait_until("worker 2's connection never closed", || {
            w.open_connections() == [1, 0]
        });
        // In turn it would be worker 1, which still holds a connection.
        let ((third, _), _keep3) = hand(&w, &l, &rx);
        assert_eq!(third, 2);
    }

    /// This thread's write system calls so far (`syscw` of `/proc/thread-self/io`).
    fn thread_writes() -> u64 {
        let io = std::fs::read_to_string("/proc/thread-self/io").unwrap();
        io.lines()
            .find_map(|l| l.strip_prefix("syscw: "))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// A request's timeouts, registered on a worker, cost no system call: without the
    /// heartbeat each registration wrote the worker's eventfd (about 1,000 writes here).
    #[test]
    fn registering_request_timeouts_on_a_worker_makes_no_system_call() {
        use futures_util::FutureExt as _;
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let shutdown = CancellationToken::new();
        let (tx, rx) = std_mpsc::channel();
        let serve = move |c: Conn| {
            let tx = tx.clone();
            async move {
                drop(c);
                // Let the event loop park and plan its next wake-up, as between requests.
                tokio::time::sleep(Duration::from_millis(5)).await;
                let before = thread_writes();
                for _ in 0..1000 {
                    // Polled once: registered with the timer driver, then dropped (a
                    // request that finished before its timeout).
                    let mut t = Box::pin(tokio::time::sleep(Duration::from_secs(30)));
                    assert!((&mut t).now_or_never().is_none());
                }
                tx.send(thread_writes() - before).unwrap();
            }
        };
        let w = Workers::start(1, serve, &shutdown).unwrap();
        let (c, _client) = conn(&l);
        w.dispatch(c).unwrap();
        let writes = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        // A heartbeat falling inside the loop may wake the driver once or twice.
        assert!(writes <= 5, "{writes} write system calls for 1,000 timers");
        shutdown.cancel();
    }

    #[test]
    fn join_waits_for_workers_and_their_connections_to_end() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let shutdown = CancellationToken::new();
        let held = Arc::new(());
        let (w, rx) = start(2, &shutdown, &held);
        let mut clients = Vec::new();
        for _ in 0..3 {
            let (_, client) = hand(&w, &l, &rx);
            client
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            clients.push(client);
        }
        assert_eq!(
            Arc::strong_count(&held),
            1 + 2 + 3,
            "test, workers, connections"
        );
        shutdown.cancel();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        assert!(rt.block_on(w.join(Duration::from_secs(10))));
        // Nothing of the workers is left holding what their connections held ...
        assert_eq!(Arc::strong_count(&held), 1);
        // ... and their connections are closed.
        for mut c in clients {
            assert_eq!(c.read(&mut [0u8; 4]).unwrap(), 0);
        }
    }
}
