//! A TCP proxy in front of the test cluster, to make faults PostgreSQL
//! itself cannot: a port that refuses every session, or one that accepts
//! and then never answers (a stalled server), and to count connection
//! attempts.

#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Relay both ways.
    Forward = 0,
    /// Accept, then close at once: the database is down.
    Refuse = 1,
    /// Accept, and relay nothing either way until the mode changes.
    Stall = 2,
}

pub struct Proxy {
    port: u16,
    mode: Arc<AtomicU8>,
    accepted: Arc<AtomicUsize>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    pub fn start(target_port: u16, mode: Mode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let proxy = Proxy {
            port,
            mode: Arc::new(AtomicU8::new(mode as u8)),
            accepted: Arc::new(AtomicUsize::new(0)),
            open: Arc::new(Mutex::new(Vec::new())),
        };
        let (mode, accepted, open) = (
            Arc::clone(&proxy.mode),
            Arc::clone(&proxy.accepted),
            Arc::clone(&proxy.open),
        );
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                accepted.fetch_add(1, Ordering::SeqCst);
                if mode.load(Ordering::SeqCst) == Mode::Refuse as u8 {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                if let (Ok(c), Ok(s)) = (client.try_clone(), server.try_clone()) {
                    open.lock().expect("proxy lock").extend([c, s]);
                }
                relay(
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                    Arc::clone(&mode),
                );
                relay(server, client, Arc::clone(&mode));
            }
        });
        proxy
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    pub fn set_mode(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Connections accepted so far (each one a connection attempt).
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Closes every relayed connection, as a server crash would.
    pub fn cut_all(&self) {
        for stream in self.open.lock().expect("proxy lock").drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// Copies `from` to `to`, holding the bytes back while the mode is Stall.
fn relay(mut from: TcpStream, mut to: TcpStream, mode: Arc<AtomicU8>) {
    thread::spawn(move || {
        let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
        let mut buffer = [0u8; 16 * 1024];
        loop {
            while mode.load(Ordering::SeqCst) == Mode::Stall as u8 {
                thread::sleep(Duration::from_millis(20));
            }
            match from.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => {
                    while mode.load(Ordering::SeqCst) == Mode::Stall as u8 {
                        thread::sleep(Duration::from_millis(20));
                    }
                    if to.write_all(&buffer[..n]).is_err() {
                        break;
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    continue
                }
                Err(_) => break,
            }
        }
        let _ = to.shutdown(Shutdown::Both);
    });
}
