//! push-cache-loadgen: HTTP/1.1 load generator and HdrHistogram reporter.
//!
//! Why it is built this way: the latencies it prints must be the server's,
//! not the client's scheduler's. An earlier version ran one blocking OS
//! thread per connection and paced with `thread::sleep`; pinned to one CPU
//! with 64 connections, run-queue wake-ups and sleep timer slack put
//! milliseconds into its p99 (2.4 ms against a server answering in ~100 µs)
//! and capped it well below `wrk`. Here every connection is one task on a
//! glommio executor (`--threads`, default 1): switching between connections
//! costs no context switch, all sockets share one io_uring, and pacing uses
//! glommio timers, which carry no timer slack. Idle executors park in the
//! kernel (no spinning), so the client does not steal the server's CPU.
//!
//! Closed loop (default) sends a connection's next request as soon as the
//! last answer arrives. Open loop (`--rate R`) spreads R over the
//! connections: each sends at fixed intervals from a common start (phases
//! staggered so the total is evenly spaced) and measures every request from
//! the moment it *should* have been sent. A connection that falls behind
//! sends at once and never skips a slot, so a stalled server is not hidden
//! by the client waiting politely (coordinated omission).
//!
//!   push-cache-loadgen --url http://127.0.0.1:8080/api/customers --keys-from-list \
//!     --connections 64 --threads 1 [--cpus 2,3] --duration 10 --warmup 2 [--rate 50000] \
//!     [--miss-ratio 0.1] [--inm-ratio 0.2] [--hgrm out.hgrm] [--json out.json]

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream as AsyncTcp;
use glommio::{LocalExecutorBuilder, Placement};
use hdrhistogram::Histogram;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::rc::Rc;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// Registered io_uring buffer memory per executor; the load generator does
/// no file I/O, so glommio's 10 MiB default would be wasted.
const IO_MEMORY: usize = 512 * 1024;
/// Per-connection read buffer; a response head must fit in it.
const READ_BUFFER: usize = 64 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_HEADERS: usize = 32;

struct Options {
    url: String,
    connections: usize,
    threads: usize,
    cpus: Option<Vec<usize>>,
    duration: Duration,
    warmup: Duration,
    rate: Option<f64>,
    mix: Mix,
    hgrm: Option<String>,
    json: Option<String>,
}

/// What to ask for: the request line pieces and the key/miss/304 mix.
struct Mix {
    addr: SocketAddr,
    /// `GET /api/route/`
    prefix: Vec<u8>,
    /// ` HTTP/1.1\r\nHost: host\r\n`
    suffix: Vec<u8>,
    keys: Vec<String>,
    miss_ratio: f64,
    inm_ratio: f64,
}

fn die(msg: &str) -> ! {
    eprintln!("push-cache-loadgen: {msg}");
    std::process::exit(2)
}

fn parse() -> Options {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .map(|i| args.get(i + 1).cloned().unwrap_or_else(|| die(&format!("{name} needs a value"))))
    };
    let has = |name: &str| args.iter().any(|a| a == name);
    let num = |name: &str, default: f64| {
        get(name).map(|v| v.parse::<f64>().unwrap_or_else(|_| die(&format!("{name}: not a number")))).unwrap_or(default)
    };
    let url = get("--url").unwrap_or_else(|| die("--url http://HOST:PORT/api/ROUTE is required"));
    let keys: Vec<String> = if let Some(file) = get("--keys-file") {
        std::fs::read_to_string(&file)
            .unwrap_or_else(|e| die(&format!("{file}: {e}")))
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    } else if has("--keys-from-list") {
        keys_from_list(&url, num("--sample", 100_000.0) as usize)
    } else {
        let pattern = get("--keys-pattern").unwrap_or_else(|| "acct-{:08}".into());
        (0..num("--keys-count", 100_000.0) as usize).map(|i| expand(&pattern, i)).collect()
    };
    if keys.is_empty() {
        die("no keys: load data first or pass --keys-file/--keys-pattern");
    }
    let connections = (num("--connections", 64.0) as usize).max(1);
    let cpus = get("--cpus")
        .map(|t| cpu_list(&t).unwrap_or_else(|| die(&format!("--cpus: expected a CPU list like 0-3,6, found `{t}`"))));
    Options {
        connections,
        threads: (num("--threads", 1.0) as usize).clamp(1, connections),
        cpus,
        duration: Duration::from_secs_f64(num("--duration", 10.0)),
        warmup: Duration::from_secs_f64(num("--warmup", 1.0)),
        rate: get("--rate").map(|r| {
            r.parse()
                .ok()
                .filter(|r: &f64| *r > 0.0 && r.is_finite())
                .unwrap_or_else(|| die("--rate: not a positive number"))
        }),
        mix: Mix::new(&url, keys, num("--miss-ratio", 0.0), num("--inm-ratio", 0.0)),
        url,
        hgrm: get("--hgrm"),
        json: get("--json"),
    }
}

/// `acct-{:08}` with i = 42 -> `acct-00000042`; `{}` -> plain number.
fn expand(pattern: &str, i: usize) -> String {
    if let Some(start) = pattern.find("{:0") {
        let end = pattern[start..].find('}').map(|e| start + e).unwrap_or(pattern.len());
        let width: usize = pattern[start + 3..end].parse().unwrap_or(0);
        return format!("{}{:0width$}{}", &pattern[..start], i, &pattern[(end + 1).min(pattern.len())..]);
    }
    pattern.replacen("{}", &i.to_string(), 1)
}

/// `0-3,6` -> [0, 1, 2, 3, 6]; `None` if malformed or empty.
fn cpu_list(text: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                if a > b || b - a >= 4096 {
                    return None;
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().ok()?),
        }
    }
    (!cpus.is_empty()).then_some(cpus)
}

fn split_url(url: &str) -> (String, String) {
    let rest = url.strip_prefix("http://").unwrap_or_else(|| die("only http:// URLs"));
    let slash = rest.find('/').unwrap_or(rest.len());
    (rest[..slash].to_string(), rest[slash..].trim_end_matches('/').to_string())
}

fn keys_from_list(url: &str, limit: usize) -> Vec<String> {
    let (host, path) = split_url(url);
    let mut conn = TcpStream::connect(&host).unwrap_or_else(|e| die(&format!("{host}: {e}")));
    write!(conn, "GET {path}?limit={limit} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).unwrap_or_else(|e| die(&e.to_string()));
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("[]");
    serde_json::from_str(body).unwrap_or_else(|_| {
        die(&format!("the list endpoint did not answer a JSON array: {}", &text[..text.len().min(200)]))
    })
}

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

fn roll(rng: &mut u64) -> f64 {
    (xorshift(rng) % 10_000) as f64 / 10_000.0
}

impl Mix {
    /// Resolves the host once, so connections never call the resolver.
    fn new(url: &str, keys: Vec<String>, miss_ratio: f64, inm_ratio: f64) -> Mix {
        let (host, path) = split_url(url);
        let addr = host
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .unwrap_or_else(|| die(&format!("{host}: cannot resolve")));
        let prefix = format!("GET {path}/").into_bytes();
        let suffix = format!(" HTTP/1.1\r\nHost: {host}\r\n").into_bytes();
        Mix { addr, prefix, suffix, keys, miss_ratio, inm_ratio }
    }

    /// Writes the next request into `out` (cleared first, capacity reused).
    fn build(&self, rng: &mut u64, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&self.prefix);
        if roll(rng) < self.miss_ratio {
            out.extend_from_slice(b"absent-");
            out.extend_from_slice(itoa::Buffer::new().format(xorshift(rng) % 1_000_000_000).as_bytes());
        } else {
            out.extend_from_slice(self.keys[(xorshift(rng) % self.keys.len() as u64) as usize].as_bytes());
        }
        out.extend_from_slice(&self.suffix);
        if roll(rng) < self.inm_ratio {
            out.extend_from_slice(b"If-None-Match: *\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// What one executor's connections measured.
struct Tally {
    hist: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    socket_errors: u64,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            hist: Histogram::new_with_bounds(1, 60_000_000, 3).unwrap(),
            statuses: BTreeMap::new(),
            socket_errors: 0,
        }
    }

    fn record(&mut self, status: Option<u16>, took: Duration) {
        match status {
            Some(status) => {
                *self.statuses.entry(status).or_insert(0) += 1;
                let _ = self.hist.record((took.as_micros() as u64).max(1));
            }
            None => self.socket_errors += 1,
        }
    }

    fn merge(&mut self, other: Tally) {
        self.hist.add(&other.hist).unwrap();
        for (s, n) in other.statuses {
            *self.statuses.entry(s).or_insert(0) += n;
        }
        self.socket_errors += other.socket_errors;
    }
}

/// The run's clock: schedules start at `start`, answers completing in
/// `[measure_from, end)` are recorded, and nothing is sent from `end` on.
#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    measure_from: Instant,
    end: Instant,
}

impl Window {
    fn new(start: Instant, o: &Options) -> Window {
        let measure_from = start + o.warmup;
        Window { start, measure_from, end: measure_from + o.duration }
    }

    fn measures(&self, t: Instant) -> bool {
        t >= self.measure_from && t < self.end
    }
}

/// Open-loop schedule of one connection: `base + k * interval`.
struct Pace {
    base: Instant,
    interval: Duration,
    k: u32,
}

impl Pace {
    /// Connection `index` of `n` at `rate` total: interval n/rate, phase
    /// offset index/n of an interval so the n schedules interleave evenly.
    fn new(rate: f64, index: usize, n: usize, start: Instant) -> Pace {
        let interval = Duration::from_secs_f64(n as f64 / rate);
        Pace { base: start + interval.mul_f64(index as f64 / n as f64), interval, k: 0 }
    }

    /// The next intended send time, or `None` once it is past `end`.
    fn next(&mut self, end: Instant) -> Option<Instant> {
        let at = self.base + self.interval * self.k;
        self.k += 1;
        (at < end).then_some(at)
    }
}

/// Waits on a glommio timer until `at`; returns at once if already late.
async fn sleep_until(at: Instant) {
    let now = Instant::now();
    if at > now {
        glommio::timer::sleep(at - now).await;
    }
}

/// A parsed response head.
#[derive(Debug, PartialEq)]
struct Head {
    status: u16,
    /// Bytes of the status line and headers, including the blank line.
    len: usize,
    body: usize,
    keep_alive: bool,
}

fn bad_data(what: impl ToString) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Parses a response head from the start of `bytes`; `Ok(None)` if more
/// bytes are needed.
fn parse_head(bytes: &[u8]) -> io::Result<Option<Head>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut r = httparse::Response::new(&mut headers);
    let len = match r.parse(bytes).map_err(bad_data)? {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => return Ok(None),
    };
    let status = r.code.unwrap_or(0);
    let mut head = Head { status, len, body: 0, keep_alive: r.version == Some(1) };
    for h in r.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            head.body = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| bad_data("bad Content-Length"))?;
        } else if h.name.eq_ignore_ascii_case("connection") {
            head.keep_alive = !h.value.eq_ignore_ascii_case(b"close");
        }
    }
    if status == 304 || status == 204 || status < 200 {
        head.body = 0;
    }
    Ok(Some(head))
}

/// Read buffer of one connection: bytes `start..end` are unread.
struct Inbox {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Inbox {
    fn new() -> Inbox {
        Inbox { buf: vec![0; READ_BUFFER].into_boxed_slice(), start: 0, end: 0 }
    }

    fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads more from `s`, moving unread bytes to the front if needed.
    async fn fill(&mut self, s: &mut AsyncTcp) -> io::Result<()> {
        if self.end == self.buf.len() {
            if self.start == 0 {
                return Err(bad_data("response head larger than the read buffer"));
            }
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        let n = s.read(&mut self.buf[self.end..]).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.end += n;
        Ok(())
    }
}

/// One keep-alive connection, re-opened after an error or a close.
struct Conn {
    addr: SocketAddr,
    stream: Option<AsyncTcp>,
    inbox: Inbox,
}

impl Conn {
    /// Sends `request` and reads the answer: its status, or `None` on a
    /// socket or protocol error.
    async fn exchange(&mut self, request: &[u8]) -> Option<u16> {
        let result = self.try_exchange(request).await;
        if !matches!(result, Ok(Head { keep_alive: true, .. })) {
            self.stream = None;
            self.inbox.consume(self.inbox.end - self.inbox.start);
        }
        result.ok().map(|h| h.status)
    }

    async fn try_exchange(&mut self, request: &[u8]) -> io::Result<Head> {
        if self.stream.is_none() {
            let s = AsyncTcp::connect(self.addr).await?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(READ_TIMEOUT))?;
            self.stream = Some(s);
        }
        let s = self.stream.as_mut().expect("connected above");
        s.write_all(request).await?;
        read_response(s, &mut self.inbox).await
    }
}

async fn read_response(s: &mut AsyncTcp, inbox: &mut Inbox) -> io::Result<Head> {
    let head = loop {
        if let Some(head) = parse_head(inbox.data())? {
            break head;
        }
        inbox.fill(s).await?;
    };
    inbox.consume(head.len);
    let mut left = head.body;
    loop {
        let n = left.min(inbox.end - inbox.start);
        inbox.consume(n);
        left -= n;
        if left == 0 {
            return Ok(head);
        }
        inbox.fill(s).await?;
    }
}

/// One connection's task: send, wait for the answer, record, repeat.
async fn connection(o: Arc<Options>, index: usize, w: Window, tally: Rc<RefCell<Tally>>) {
    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ (index as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let mut pace = o.rate.map(|r| Pace::new(r, index, o.connections, w.start));
    let mut conn = Conn { addr: o.mix.addr, stream: None, inbox: Inbox::new() };
    let mut request = Vec::with_capacity(256);
    loop {
        let intended = match pace.as_mut() {
            Some(p) => match p.next(w.end) {
                Some(at) => {
                    sleep_until(at).await;
                    at
                }
                None => break,
            },
            None => Instant::now(),
        };
        o.mix.build(&mut rng, &mut request);
        let status = conn.exchange(&request).await;
        let done = Instant::now();
        if w.measures(done) {
            tally.borrow_mut().record(status, done - intended);
        }
        if done >= w.end {
            break;
        }
    }
}

/// Runs connections `id, id + threads, ...` on this executor.
async fn executor(o: Arc<Options>, id: usize, w: Window) -> Tally {
    let tally = Rc::new(RefCell::new(Tally::new()));
    let tasks: Vec<_> = (id..o.connections)
        .step_by(o.threads)
        .map(|i| glommio::spawn_local(connection(o.clone(), i, w, tally.clone())))
        .collect();
    for t in tasks {
        t.await;
    }
    Rc::try_unwrap(tally).ok().expect("all connection tasks finished").into_inner()
}

/// Starts executor `id`. It reports ready, then waits for the common start.
fn spawn_executor(
    o: &Arc<Options>,
    id: usize,
    ready: mpsc::Sender<()>,
    go: mpsc::Receiver<Instant>,
) -> glommio::ExecutorJoinHandle<Tally> {
    let placement = o.cpus.as_ref().map_or(Placement::Unbound, |c| Placement::Fixed(c[id % c.len()]));
    let o = o.clone();
    LocalExecutorBuilder::new(placement)
        .name(&format!("loadgen-{id}"))
        .io_memory(IO_MEMORY)
        .spawn(move || {
            let _ = ready.send(());
            let start = go.recv().unwrap_or_else(|_| die("main thread gone"));
            async move { executor(o.clone(), id, Window::new(start, &o)).await }
        })
        .unwrap_or_else(|e| die(&format!("executor {id}: {e}")))
}

fn main() {
    let o = Arc::new(parse());
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut go = Vec::new();
    let handles: Vec<_> = (0..o.threads)
        .map(|id| {
            let (go_tx, go_rx) = mpsc::channel();
            go.push(go_tx);
            spawn_executor(&o, id, ready_tx.clone(), go_rx)
        })
        .collect();
    for _ in 0..o.threads {
        ready_rx.recv_timeout(Duration::from_secs(10)).unwrap_or_else(|_| die("an executor failed to start"));
    }
    let start = Instant::now();
    for g in go {
        let _ = g.send(start);
    }
    let mut total = Tally::new();
    for h in handles {
        total.merge(h.join().unwrap_or_else(|e| die(&format!("executor: {e}"))));
    }
    report(&o, &total, o.duration);
}

fn report(o: &Options, t: &Tally, elapsed: Duration) {
    let h = &t.hist;
    let count = h.len();
    let rps = count as f64 / elapsed.as_secs_f64();
    let mode = o.rate.map_or("closed loop".to_string(), |r| {
        format!("open loop at {r:.0} req/s (corrected for coordinated omission)")
    });
    println!(
        "{} connections, {mode}, {:.1} s measured after {:.1} s warm-up",
        o.connections,
        elapsed.as_secs_f64(),
        o.warmup.as_secs_f64()
    );
    println!("requests: {count}  throughput: {rps:.0} req/s  socket errors: {}", t.socket_errors);
    println!("statuses: {}", t.statuses.iter().map(|(s, n)| format!("{s}={n}")).collect::<Vec<_>>().join(" "));
    let pct = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  p99.99 {:.3}  max {:.3}",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(0.999),
        pct(0.9999),
        h.max() as f64 / 1000.0
    );
    if let Some(path) = &o.hgrm {
        std::fs::write(path, hgrm(h)).unwrap_or_else(|e| die(&format!("{path}: {e}")));
    }
    if let Some(path) = &o.json {
        let summary = serde_json::json!({
            "url": o.url, "connections": o.connections, "rate": o.rate, "seconds": elapsed.as_secs_f64(),
            "requests": count, "throughput": rps, "socket_errors": t.socket_errors,
            "statuses": t.statuses.iter().map(|(s, n)| (s.to_string(), *n)).collect::<BTreeMap<_, _>>(),
            "latency_us": {"p50": h.value_at_quantile(0.5), "p90": h.value_at_quantile(0.9), "p99": h.value_at_quantile(0.99),
                "p99_9": h.value_at_quantile(0.999), "p99_99": h.value_at_quantile(0.9999), "max": h.max(), "mean": h.mean()},
        });
        std::fs::write(path, serde_json::to_vec_pretty(&summary).unwrap())
            .unwrap_or_else(|e| die(&format!("{path}: {e}")));
    }
}

/// The standard HdrHistogram percentile distribution text (values in ms),
/// readable by the HdrHistogram plotter.
fn hgrm(h: &Histogram<u64>) -> String {
    let mut out = format!("{:>12} {:>14} {:>10} {:>14}\n\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)");
    for v in h.iter_quantiles(5) {
        let q = v.quantile_iterated_to();
        let inv = if q < 1.0 { format!("{:14.2}", 1.0 / (1.0 - q)) } else { format!("{:>14}", "inf") };
        out.push_str(&format!(
            "{:12.3} {:14.12} {:10} {inv}\n",
            v.value_iterated_to() as f64 / 1000.0,
            q,
            v.count_since_last_iteration()
        ));
    }
    out.push_str(&format!(
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]\n#[Max     = {:12.3}, Total count    = {:12}]\n#[Buckets = {:12}, SubBuckets     = {:12}]\n",
        h.mean() / 1000.0, h.stdev() / 1000.0, h.max() as f64 / 1000.0, h.len(), h.buckets(), h.distinct_values()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_patterns() {
        assert_eq!(expand("acct-{:08}", 42), "acct-00000042");
        assert_eq!(expand("k{}", 7), "k7");
    }

    #[test]
    fn builds_requests() {
        let mix = Mix::new("http://127.0.0.1:8099/api/users/", vec!["acct-1".into()], 0.0, 1.0);
        let (mut rng, mut out) = (7u64, b"stale".to_vec());
        mix.build(&mut rng, &mut out);
        assert_eq!(out, b"GET /api/users/acct-1 HTTP/1.1\r\nHost: 127.0.0.1:8099\r\nIf-None-Match: *\r\n\r\n");
        let miss = Mix { miss_ratio: 1.0, inm_ratio: 0.0, ..mix };
        miss.build(&mut rng, &mut out);
        assert!(
            out.starts_with(b"GET /api/users/absent-") && out.ends_with(b" HTTP/1.1\r\nHost: 127.0.0.1:8099\r\n\r\n")
        );
    }

    #[test]
    fn parses_response_heads() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(parse_head(ok).unwrap(), Some(Head { status: 200, len: 38, body: 5, keep_alive: true }));
        assert_eq!(parse_head(&ok[..20]).unwrap(), None);
        let not_modified = b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\nConnection: close\r\n\r\n";
        assert_eq!(
            parse_head(not_modified).unwrap(),
            Some(Head { status: 304, len: not_modified.len(), body: 0, keep_alive: false })
        );
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
    }

    #[test]
    fn cpu_lists_and_pacing() {
        assert_eq!(cpu_list("0-2,5"), Some(vec![0, 1, 2, 5]));
        assert_eq!(cpu_list("3-1"), None);
        let t0 = Instant::now();
        let mut p = Pace::new(1000.0, 1, 4, t0);
        assert_eq!(p.next(t0 + Duration::from_secs(1)), Some(t0 + Duration::from_millis(1)));
        assert_eq!(p.next(t0 + Duration::from_secs(1)), Some(t0 + Duration::from_millis(5)));
        assert_eq!(p.next(t0 + Duration::from_millis(9)), None);
    }
}
