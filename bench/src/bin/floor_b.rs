//! Floor B: what one HTTP request costs on a kept-alive connection with reqwest alone (rustls
//! with ring, as pfxhttp), with nothing else around it.
//!
//! Usage: `floor-b URL N [current-thread]` — one warm-up request, then N timed POSTs with a small
//! JSON body on the same connection; prints each request's nanoseconds, one per line. Without
//! the third argument the client is reqwest's blocking one, the minimal reqwest client (floor
//! B); with it, reqwest's async client on a current-thread runtime driven by the calling thread,
//! the way pfxhttp drives it (floor B').
use std::io::Write;
use std::time::Instant;

fn tls() -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth()
}

fn body(i: usize) -> String {
    format!("{{\"key\":\"user{i}@example.org\"}}")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (url, n) = (args[1].as_str(), args[2].parse::<usize>().expect("N"));
    let request: Box<dyn Fn(usize)> = if args.get(3).map(String::as_str) == Some("current-thread") {
        let client = reqwest::Client::builder().tls_backend_preconfigured(tls()).build().expect("client");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        Box::new(move |i| {
            runtime.block_on(async {
                let response = client
                    .post(url)
                    .header("Content-Type", "application/json")
                    .body(body(i))
                    .send()
                    .await
                    .expect("request");
                assert!(response.status().is_success(), "status {}", response.status());
                std::hint::black_box(response.bytes().await.expect("body"));
            })
        })
    } else {
        let client = reqwest::blocking::Client::builder().tls_backend_preconfigured(tls()).build().expect("client");
        Box::new(move |i| {
            let response =
                client.post(url).header("Content-Type", "application/json").body(body(i)).send().expect("request");
            assert!(response.status().is_success(), "status {}", response.status());
            std::hint::black_box(response.bytes().expect("body"));
        })
    };
    request(0);
    let mut times = Vec::with_capacity(n);
    for i in 1..=n {
        let start = Instant::now();
        request(i);
        times.push(start.elapsed().as_nanos());
    }
    let mut out = std::io::stdout().lock();
    for t in times {
        writeln!(out, "{t}").expect("stdout");
    }
}
