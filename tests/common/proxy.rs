//! A TCP proxy that can fail on demand, for outage tests.
//!
//! Why: a real broker that restarts comes back with its topics, their IDs
//! and their offsets. tansu with memory storage comes back empty, with new
//! topic IDs, which is a different event (a topic deleted and re-created).
//! Putting the broker behind this proxy lets a test take "the broker" away
//! the way a crash does (every connection reset, new ones refused) and bring
//! it back with its log intact.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Proxy {
    pub port: u16,
    upstream: SocketAddr,
    state: Arc<State>,
}

#[derive(Default)]
struct State {
    /// Every connection the proxy holds, both sides, so `cut` can reset them.
    open: Mutex<Vec<TcpStream>>,
    /// Set while the proxy is cut; the accept loop then ends.
    down: AtomicBool,
}

impl Proxy {
    /// Listens on `port` and forwards every connection to `upstream`.
    pub fn start(port: u16, upstream: SocketAddr) -> Proxy {
        let proxy = Proxy { port, upstream, state: Arc::default() };
        proxy.listen();
        proxy
    }

    /// Resets every open connection and refuses new ones until `restore`.
    pub fn cut(&self) {
        self.state.down.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees `down` and drops the listener.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        // Wait until the port refuses connections, then reset what is open.
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            std::thread::sleep(Duration::from_millis(10));
        }
        for s in self.state.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Accepts connections again, on the same port.
    pub fn restore(&self) {
        self.state.down.store(false, Ordering::SeqCst);
        self.listen();
    }

    fn listen(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).expect("proxy port");
        let (state, upstream) = (self.state.clone(), self.upstream);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if state.down.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(upstream) else { continue };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                pipe(&state, &client, &server);
                pipe(&state, &server, &client);
            }
        });
    }
}

/// Copies `from` to `to` on a thread until either side ends.
fn pipe(state: &State, from: &TcpStream, to: &TcpStream) {
    let (mut from, mut to) = (from.try_clone().unwrap(), to.try_clone().unwrap());
    state.open.lock().unwrap().push(from.try_clone().unwrap());
    std::thread::spawn(move || {
        let mut buf = [0u8; 64 * 1024];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}
