//! Any bytes as a traces, metrics or logs request through the receiver and the shards
//! (the metrics and logs extraction included): never a panic, and every accepted span
//! is processed, late or invalid.
#![no_main]

use std::sync::{Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use momentum::pipeline::inline::Inline;
use momentum::receiver::Signal;

fn pipeline() -> &'static Mutex<Inline> {
    static P: OnceLock<Mutex<Inline>> = OnceLock::new();
    P.get_or_init(|| {
        let now = 1_750_000_000_000_000_000;
        Mutex::new(Inline::new(Default::default(), 2, now))
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let signal = match selector % 3 {
        0 => Signal::Traces,
        1 => Signal::Metrics,
        _ => Signal::Logs,
    };
    let mut p = pipeline().lock().unwrap();
    let _ = p.send(signal, body);
});
