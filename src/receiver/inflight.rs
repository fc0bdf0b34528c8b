//! The bytes of requests being read or decoded, over all connections and streams
//! (`receivers.otlp.max_inflight_mib`). A request is counted before its body is read —
//! its `Content-Length` when it declares one, else each chunk as it arrives — and
//! refused (retryable) when the budget is spent, so memory does not grow with the number
//! of connections or streams clients open: HTTP/2 and TCP flow control hold the rest of
//! a body back in the client.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;

/// The process-wide budget.
///
/// With `pipeline.memory_limit_mib` on, a hold must also fit in the memory limit beside
/// the heap in use, checked in the same atomic step, so however many streams start at
/// once the process never holds more than the limit plus one request.
#[derive(Debug)]
pub struct Inflight {
    used: AtomicU64,
    limit: u64,
    memory_limit: u64,
}

impl Inflight {
    /// A budget of `limit` bytes (and `memory_limit` bytes with the heap, 0: off).
    pub fn new(limit: u64, memory_limit: u64) -> Arc<Self> {
        Arc::new(Inflight {
            used: AtomicU64::new(0),
            limit,
            memory_limit,
        })
    }

    /// Bytes held now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    fn try_take(&self, n: u64) -> Result<(), Busy> {
        let heap = match crate::alloc::heap() {
            Some(h) if self.memory_limit > 0 => h,
            _ => 0,
        };
        let mut why = Busy::Inflight;
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                let t = u.checked_add(n)?;
                if t > self.limit {
                    why = Busy::Inflight;
                    return None;
                }
                if self.memory_limit > 0 && heap + t > self.memory_limit {
                    why = Busy::Memory;
                    return None;
                }
                Some(t)
            })
            .map(|_| ())
            .map_err(|_| why)
    }
}

/// What one request holds of the budget; given back when dropped (once the request has
/// been admitted into the shard queues, which account for it from then on, or refused).
#[derive(Debug)]
pub struct Held {
    budget: Arc<Inflight>,
    bytes: u64,
}

impl Held {
    /// Nothing held yet.
    pub fn new(budget: &Arc<Inflight>) -> Self {
        Held {
            budget: budget.clone(),
            bytes: 0,
        }
    }

    /// Holds at least `total` bytes in all; the reason (holding what it held) when the
    /// budget cannot give them.
    pub fn reach(&mut self, total: u64) -> Result<(), Busy> {
        if total <= self.bytes {
            return Ok(());
        }
        self.budget.try_take(total - self.bytes)?;
        self.bytes = total;
        Ok(())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// Why a hold was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// `receivers.otlp.max_inflight_mib` is spent
    Inflight,
    /// it would take the process over `pipeline.memory_limit_mib`
    Memory,
}

/// Why a body could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// over `limit` bytes
    TooLarge,
    /// the in-flight budget (or the memory limit) has no room for it
    Busy(Busy),
    /// the transport failed
    Transport(String),
}

/// Reads `body` (at most `limit` bytes) while holding its bytes in `held`: the declared
/// length first, then whatever arrives beyond it. A body that arrives in one chunk is
/// not copied.
pub async fn read_body(
    body: axum::body::Body,
    declared: Option<u64>,
    limit: usize,
    held: &mut Held,
) -> Result<Bytes, ReadError> {
    if let Some(n) = declared {
        if n > limit as u64 {
            return Err(ReadError::TooLarge);
        }
        held.reach(n).map_err(ReadError::Busy)?;
    }
    let mut body = body;
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ReadError::Transport(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if data.is_empty() {
            continue;
        }
        total += data.len();
        if total > limit {
            return Err(ReadError::TooLarge);
        }
        held.reach(total as u64).map_err(ReadError::Busy)?;
        chunks.push(data);
    }
    Ok(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop().unwrap_or_default(),
        _ => {
            let mut b = BytesMut::with_capacity(total);
            for c in chunks {
                b.extend_from_slice(&c);
            }
            b.freeze()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_taken_and_given_back() {
        let b = Inflight::new(100, 0);
        let mut a = Held::new(&b);
        assert!(a.reach(60).is_ok());
        assert!(a.reach(40).is_ok(), "already held");
        let mut c = Held::new(&b);
        assert_eq!(c.reach(41), Err(Busy::Inflight), "60 + 41 > 100");
        assert!(c.reach(40).is_ok());
        assert_eq!(b.used(), 100);
        drop(a);
        assert_eq!(b.used(), 40);
        assert!(c.reach(100).is_ok());
        drop(c);
        assert_eq!(b.used(), 0);
    }

    #[tokio::test]
    async fn a_body_is_refused_before_it_is_read_when_the_budget_is_spent() {
        let b = Inflight::new(10, 0);
        let mut held = Held::new(&b);
        let body = axum::body::Body::from(vec![1u8; 11]);
        let r = read_body(body, Some(11), 100, &mut held).await;
        assert!(matches!(r, Err(ReadError::Busy(Busy::Inflight))), "{r:?}");
        let mut held = Held::new(&b);
        let body = axum::body::Body::from(vec![1u8; 11]);
        let r = read_body(body, None, 100, &mut held).await;
        assert!(
            matches!(r, Err(ReadError::Busy(Busy::Inflight))),
            "streamed: {r:?}"
        );
        let mut held = Held::new(&b);
        let body = axum::body::Body::from(vec![1u8; 11]);
        let r = read_body(body, None, 10, &mut held).await;
        assert!(matches!(r, Err(ReadError::TooLarge)), "{r:?}");
        let mut held = Held::new(&b);
        let body = axum::body::Body::from(vec![1u8; 10]);
        assert_eq!(
            read_body(body, None, 10, &mut held).await.unwrap().len(),
            10
        );
        assert_eq!(b.used(), 10);
        drop(held);
        assert_eq!(b.used(), 0);
    }
}
