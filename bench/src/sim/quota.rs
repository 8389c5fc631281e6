//! AWS quotas the simulator enforces, as token buckets in virtual time.

use std::collections::HashMap;

use tokio::time::Instant;

/// Per DynamoDB partition (one item's key here): writes per second.
pub const PARTITION_WRITE_UNITS: f64 = 1_000.0;
/// Per DynamoDB partition: strongly consistent reads per second.
pub const PARTITION_READ_UNITS: f64 = 3_000.0;
/// Per SQS FIFO message group (high-throughput mode), unbatched sends.
pub const GROUP_SENDS_PER_SECOND: f64 = 300.0;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Buckets by key, each refilling at its rate up to one second's worth.
#[derive(Debug, Default)]
pub struct Quotas {
    buckets: HashMap<String, Bucket>,
}

impl Quotas {
    /// Takes every `(key, units, rate)` or none of them.
    pub fn take_all(&mut self, charges: &[(String, f64, f64)], now: Instant) -> bool {
        for (key, units, rate) in charges {
            let bucket = self.buckets.entry(key.clone()).or_insert(Bucket {
                tokens: *rate,
                at: now,
            });
            let refill = now.duration_since(bucket.at).as_secs_f64() * rate;
            bucket.tokens = (bucket.tokens + refill).min(*rate);
            bucket.at = now;
            if bucket.tokens < *units {
                return false;
            }
        }
        for (key, units, _) in charges {
            if let Some(bucket) = self.buckets.get_mut(key) {
                bucket.tokens -= units;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_bucket_allows_its_rate_and_refills() {
        let mut quotas = Quotas::default();
        let charge = vec![("k".to_owned(), 1.0, 10.0)];
        let now = Instant::now();
        let granted = (0..20).filter(|_| quotas.take_all(&charge, now)).count();
        assert_eq!(granted, 10, "one second's worth at once");
        tokio::time::advance(Duration::from_millis(500)).await;
        let granted = (0..20)
            .filter(|_| quotas.take_all(&charge, Instant::now()))
            .count();
        assert_eq!(granted, 5);
        let both = vec![
            ("k".to_owned(), 1.0, 10.0),
            ("other".to_owned(), 100.0, 10.0),
        ];
        assert!(!quotas.take_all(&both, Instant::now()), "all or nothing");
    }
}
