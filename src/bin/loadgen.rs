//! push-cache-loadgen: HTTP/1.1 load generator and HdrHistogram reporter.
//!
//! Each connection runs on its own thread with keep-alive. Closed loop
//! (default) sends the next request as soon as the last answer arrives; open
//! loop (`--rate R`) schedules requests at a fixed total rate and measures
//! each from the moment it *should* have been sent, so a stalled server is
//! not hidden by the client waiting politely (coordinated omission).
//!
//!   push-cache-loadgen --url http://127.0.0.1:8080/api/customers --keys-from-list \
//!     --connections 64 --threads-note --duration 10 --warmup 2 [--rate 50000] \
//!     [--miss-ratio 0.1] [--inm-ratio 0.2] [--hgrm out.hgrm] [--json out.json]

use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Options {
    url: String,
    connections: usize,
    duration: Duration,
    warmup: Duration,
    rate: Option<f64>,
    miss_ratio: f64,
    inm_ratio: f64,
    keys: Vec<String>,
    hgrm: Option<String>,
    json: Option<String>,
}

fn die(msg: &str) -> ! {
    eprintln!("push-cache-loadgen: {msg}");
    std::process::exit(2)
}

fn parse() -> Options {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |name: &str| args.iter().position(|a| a == name).map(|i| args.get(i + 1).cloned().unwrap_or_else(|| die(&format!("{name} needs a value"))));
    let has = |name: &str| args.iter().any(|a| a == name);
    let num = |name: &str, default: f64| get(name).map(|v| v.parse::<f64>().unwrap_or_else(|_| die(&format!("{name}: not a number")))).unwrap_or(default);
    let url = get("--url").unwrap_or_else(|| die("--url http://HOST:PORT/api/ROUTE is required"));
    let keys = if let Some(file) = get("--keys-file") {
        std::fs::read_to_string(&file).unwrap_or_else(|e| die(&format!("{file}: {e}"))).lines().filter(|l| !l.is_empty()).map(str::to_string).collect()
    } else if has("--keys-from-list") {
        keys_from_list(&url, num("--sample", 100_000.0) as usize)
    } else {
        let pattern = get("--keys-pattern").unwrap_or_else(|| "acct-{:08}".into());
        (0..num("--keys-count", 100_000.0) as usize).map(|i| expand(&pattern, i)).collect()
    };
    if keys.is_empty() {
        die("no keys: load data first or pass --keys-file/--keys-pattern");
    }
    Options {
        url,
        connections: num("--connections", 64.0) as usize,
        duration: Duration::from_secs_f64(num("--duration", 10.0)),
        warmup: Duration::from_secs_f64(num("--warmup", 1.0)),
        rate: get("--rate").map(|r| r.parse().unwrap_or_else(|_| die("--rate: not a number"))),
        miss_ratio: num("--miss-ratio", 0.0),
        inm_ratio: num("--inm-ratio", 0.0),
        keys,
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
    serde_json::from_str(body).unwrap_or_else(|_| die(&format!("the list endpoint did not answer a JSON array: {}", &text[..text.len().min(200)])))
}

/// What one connection thread measured.
struct Tally {
    hist: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    socket_errors: u64,
}

fn connection(o: Arc<Options>, index: usize, measuring: Arc<AtomicBool>, stop: Arc<AtomicBool>) -> Tally {
    let (host, path) = split_url(&o.url);
    let mut tally = Tally { hist: Histogram::new_with_bounds(1, 60_000_000, 3).unwrap(), statuses: BTreeMap::new(), socket_errors: 0 };
    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ (index as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let interval = o.rate.map(|r| Duration::from_secs_f64(o.connections as f64 / r));
    let mut conn: Option<BufReader<TcpStream>> = None;
    let start = Instant::now();
    let mut next = start;
    let mut request = Vec::with_capacity(256);
    while !stop.load(Ordering::Relaxed) {
        if interval.is_some() {
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
        }
        let intended = if interval.is_some() { next } else { Instant::now() };
        build_request(&o, &host, &path, &mut rng, &mut request);
        let result = exchange(&mut conn, &host, &request);
        let took = intended.elapsed();
        if measuring.load(Ordering::Relaxed) {
            match result {
                Some(status) => {
                    *tally.statuses.entry(status).or_insert(0) += 1;
                    let _ = tally.hist.record((took.as_micros() as u64).max(1));
                }
                None => tally.socket_errors += 1,
            }
        }
        if let Some(iv) = interval {
            next += iv;
        }
    }
    tally
}

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

fn build_request(o: &Options, host: &str, path: &str, rng: &mut u64, out: &mut Vec<u8>) {
    out.clear();
    let roll = (xorshift(rng) % 10_000) as f64 / 10_000.0;
    let _ = if roll < o.miss_ratio {
        write!(out, "GET {path}/absent-{} HTTP/1.1\r\nHost: {host}\r\n", xorshift(rng) % 1_000_000_000)
    } else {
        write!(out, "GET {path}/{} HTTP/1.1\r\nHost: {host}\r\n", o.keys[(xorshift(rng) % o.keys.len() as u64) as usize])
    };
    if (xorshift(rng) % 10_000) as f64 / 10_000.0 < o.inm_ratio {
        out.extend_from_slice(b"If-None-Match: *\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Sends one request and reads its response; `None` on a socket error
/// (the connection is then re-opened for the next request).
fn exchange(conn: &mut Option<BufReader<TcpStream>>, host: &str, request: &[u8]) -> Option<u16> {
    if conn.is_none() {
        let s = TcpStream::connect(host).ok()?;
        let _ = s.set_nodelay(true);
        let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
        *conn = Some(BufReader::with_capacity(64 * 1024, s));
    }
    let result = (|| {
        let c = conn.as_mut()?;
        c.get_mut().write_all(request).ok()?;
        read_response(c)
    })();
    if result.is_none() {
        *conn = None;
    }
    result
}

fn read_response(c: &mut BufReader<TcpStream>) -> Option<u16> {
    let mut line = String::new();
    c.read_line(&mut line).ok()?;
    let status: u16 = line.split_whitespace().nth(1)?.parse().ok()?;
    let mut length = 0usize;
    let mut close = false;
    loop {
        line.clear();
        if c.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((name, value)) = l.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            } else if name.eq_ignore_ascii_case("connection") && value.trim().eq_ignore_ascii_case("close") {
                close = true;
            }
        }
    }
    if status != 304 {
        let mut body = vec![0u8; length];
        c.read_exact(&mut body).ok()?;
    }
    (!close).then_some(status)
}

fn main() {
    let o = Arc::new(parse());
    let (measuring, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let threads: Vec<_> = (0..o.connections)
        .map(|i| {
            let (o, m, s) = (o.clone(), measuring.clone(), stop.clone());
            std::thread::spawn(move || connection(o, i, m, s))
        })
        .collect();
    std::thread::sleep(o.warmup);
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    std::thread::sleep(o.duration);
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut total = Tally { hist: Histogram::new_with_bounds(1, 60_000_000, 3).unwrap(), statuses: BTreeMap::new(), socket_errors: 0 };
    for t in threads {
        let t = t.join().expect("connection thread");
        total.hist.add(&t.hist).unwrap();
        for (s, n) in t.statuses {
            *total.statuses.entry(s).or_insert(0) += n;
        }
        total.socket_errors += t.socket_errors;
    }
    report(&o, &total, elapsed);
}

fn report(o: &Options, t: &Tally, elapsed: Duration) {
    let h = &t.hist;
    let count = h.len();
    let rps = count as f64 / elapsed.as_secs_f64();
    let mode = o.rate.map_or("closed loop".to_string(), |r| format!("open loop at {r:.0} req/s (corrected for coordinated omission)"));
    println!("{} connections, {mode}, {:.1} s measured after {:.1} s warm-up", o.connections, elapsed.as_secs_f64(), o.warmup.as_secs_f64());
    println!("requests: {count}  throughput: {rps:.0} req/s  socket errors: {}", t.socket_errors);
    println!("statuses: {}", t.statuses.iter().map(|(s, n)| format!("{s}={n}")).collect::<Vec<_>>().join(" "));
    let pct = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  p99.99 {:.3}  max {:.3}",
        pct(0.5), pct(0.9), pct(0.99), pct(0.999), pct(0.9999), h.max() as f64 / 1000.0
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
        std::fs::write(path, serde_json::to_vec_pretty(&summary).unwrap()).unwrap_or_else(|e| die(&format!("{path}: {e}")));
    }
}

/// The standard HdrHistogram percentile distribution text (values in ms),
/// readable by the HdrHistogram plotter.
fn hgrm(h: &Histogram<u64>) -> String {
    let mut out = format!("{:>12} {:>14} {:>10} {:>14}\n\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)");
    for v in h.iter_quantiles(5) {
        let q = v.quantile_iterated_to();
        let inv = if q < 1.0 { format!("{:14.2}", 1.0 / (1.0 - q)) } else { format!("{:>14}", "inf") };
        out.push_str(&format!("{:12.3} {:14.12} {:10} {inv}\n", v.value_iterated_to() as f64 / 1000.0, q, v.count_since_last_iteration()));
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
}
