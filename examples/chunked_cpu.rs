//! Server CPU for one request body sent in small writes.
//!
//! `cargo run --release --example chunked_cpu -- ADDR PID [BYTES] [PIECE] [chunked|length] [PAUSE_US]`
//! against a running push-cache (PID is its process, for `/proc/PID/stat`).
//! Sends a POST of BYTES (default 1 000 000) to `/health/live` (which
//! answers 405 once the body is in, so the CPU is the framing's), as
//! `Transfer-Encoding: chunked` with one PIECE-byte chunk per write
//! (default 100), or with `Content-Length` in PIECE-byte writes. The socket
//! has `TCP_NODELAY`, so every write leaves as its own segment; with
//! PAUSE_US (default 0) the client sleeps that long after each write, so a
//! slow sender's pieces reach the server one read at a time (the worst
//! case). Prints the server's CPU time spent while the body was sent.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(addr), Some(pid)) = (args.first(), args.get(1).and_then(|p| p.parse::<u32>().ok())) else {
        eprintln!("usage: chunked_cpu ADDR PID [BYTES] [PIECE] [chunked|length]");
        std::process::exit(2);
    };
    let bytes: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let piece: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(100);
    let chunked = args.get(4).map(String::as_str) != Some("length");
    let pause = Duration::from_micros(args.get(5).and_then(|a| a.parse().ok()).unwrap_or(0));
    let mut stream = TcpStream::connect(addr).expect("connect to the server");
    stream.set_nodelay(true).unwrap();
    let before = cpu_time(pid);
    let started = Instant::now();
    let writes = send(&mut stream, bytes, piece, chunked, pause);
    let status = read_status(&mut stream);
    let (cpu, wall) = (cpu_time(pid) - before, started.elapsed());
    let framing = if chunked { "chunked, one chunk per write" } else { "Content-Length" };
    println!(
        "{bytes} bytes ({framing}) in {writes} writes of {piece}, {pause:?} apart: status {status}, \
         server CPU {:.1} ms in {:.1} ms",
        cpu.as_secs_f64() * 1e3,
        wall.as_secs_f64() * 1e3
    );
}

/// Sends the request; returns the number of body writes.
fn send(stream: &mut TcpStream, bytes: usize, piece: usize, chunked: bool, pause: Duration) -> usize {
    let framing = if chunked { "Transfer-Encoding: chunked".to_string() } else { format!("Content-Length: {bytes}") };
    stream.write_all(format!("POST /health/live HTTP/1.1\r\nHost: t\r\n{framing}\r\n\r\n").as_bytes()).unwrap();
    let data = vec![b'p'; piece];
    let mut writes = 0;
    let mut left = bytes;
    while left > 0 {
        let n = left.min(piece);
        if chunked {
            stream.write_all(&[format!("{n:x}\r\n").as_bytes(), &data[..n], b"\r\n"].concat()).unwrap();
        } else {
            stream.write_all(&data[..n]).unwrap();
        }
        left -= n;
        writes += 1;
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
    if chunked {
        stream.write_all(b"0\r\n\r\n").unwrap();
    }
    writes
}

fn read_status(stream: &mut TcpStream) -> String {
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).unwrap_or(0);
    String::from_utf8_lossy(&head[..n]).split(' ').nth(1).unwrap_or("none").to_string()
}

/// CPU time of every thread of `pid`, to the nanosecond (schedstat).
fn cpu_time(pid: u32) -> Duration {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the server's /proc/PID/task");
    let nanos: u64 = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split(' ').next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(nanos)
}
