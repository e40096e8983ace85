//! Floor B: what one HTTP request costs on a kept-alive connection with the client pfxhttp uses
//! (reqwest blocking, rustls with ring), with nothing else around it.
//!
//! Usage: `floor-b URL N` — one warm-up request, then N timed POSTs with a small JSON body on the
//! same connection; prints each request's nanoseconds, one per line.
use std::io::Write;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (url, n) = (&args[1], args[2].parse::<usize>().expect("N"));
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let client = reqwest::blocking::Client::builder().tls_backend_preconfigured(tls).build().expect("client");
    let request = |i: usize| {
        let body = format!("{{\"key\":\"user{i}@example.org\"}}");
        let response = client.post(url).header("Content-Type", "application/json").body(body).send().expect("request");
        assert!(response.status().is_success(), "status {}", response.status());
        response.bytes().expect("body")
    };
    request(0);
    let mut times = Vec::with_capacity(n);
    for i in 1..=n {
        let start = Instant::now();
        std::hint::black_box(request(i));
        times.push(start.elapsed().as_nanos());
    }
    let mut out = std::io::stdout().lock();
    for t in times {
        writeln!(out, "{t}").expect("stdout");
    }
}
