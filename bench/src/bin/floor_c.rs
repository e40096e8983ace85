//! Floor C: what one request and reply over the process's pipes cost, with nothing behind them.
//!
//! Usage: `floor-c` — reads socketmap netstrings from stdin until EOF and answers each at once
//! with the fixed `OK mailbox@example.org`, as a lookup answered from memory would: the floor
//! of every lookup on a kept connection (two process wake-ups and the pipe writes).
use std::io::{Read, Write};

const REPLY: &[u8] = b"22:OK mailbox@example.org,";

fn main() {
    let mut stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // Answer every complete netstring in the buffer.
        while let Some(colon) = buf.iter().position(|&b| b == b':') {
            let len: usize = std::str::from_utf8(&buf[..colon]).expect("length").parse().expect("length");
            if buf.len() < colon + len + 2 {
                break;
            }
            buf.drain(..colon + len + 2);
            stdout.write_all(REPLY).and_then(|()| stdout.flush()).expect("reply");
        }
        match stdin.read(&mut chunk).expect("read") {
            0 => return,
            n => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
