//! The input layout of the targets that take any signal: the first byte picks traces,
//! metrics or logs, the rest is the body.

use momentum::receiver::Signal;

/// `(signal, body)` of `data`; `None` when it is empty.
pub fn split(data: &[u8]) -> Option<(Signal, &[u8])> {
    let (&selector, body) = data.split_first()?;
    let signal = match selector % 3 {
        0 => Signal::Traces,
        1 => Signal::Metrics,
        _ => Signal::Logs,
    };
    Some((signal, body))
}
