//! Any bytes as a traces, metrics or logs request through the receiver and the shards
//! (the metrics and logs extraction included): never a panic, and every accepted span
//! is processed, late or invalid.
#![no_main]

#[path = "signal.rs"]
mod signal;

use std::sync::{Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use momentum::inline::Inline;

fn pipeline() -> &'static Mutex<Inline> {
    static P: OnceLock<Mutex<Inline>> = OnceLock::new();
    P.get_or_init(|| {
        let now = 1_750_000_000_000_000_000;
        Mutex::new(Inline::new(Default::default(), 2, now))
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((signal, body)) = signal::split(data) else {
        return;
    };
    let mut p = pipeline().lock().unwrap();
    let _ = p.send(signal, body);
});
