//! The table's stream as the granter's event source mapping delivers it:
//! the store's stream log, split into stream shards by item (records of one
//! item stay in order), filtered as the mapping's filter criteria filter it
//! (session INSERTs; event items whose backlog hint is armed), each shard
//! handed to its own granter instance in batches of up to 100 after the
//! stream's delay. Records the handler reports as failed (and whole batches
//! of an instance that died) are delivered again, up to the mapping's
//! retry limit; then they are dropped, as they would go to the stream's
//! dead-letter queue.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;
use waiting_room::domain::{Change, StreamRecord};

use super::store::SimStore;

/// Records per batch (`BatchSize` of the mapping in infra/template.yaml).
pub const BATCH_SIZE: usize = 100;
/// `MaximumRetryAttempts` of the mapping.
const MAX_RETRIES: u32 = 10;
/// How often the log is read and an idle shard looks for records.
pub const TICK: Duration = Duration::from_millis(20);

struct Pending {
    record: StreamRecord,
    visible_at: Instant,
    attempts: u32,
}

/// Records read from the store and not yet handled, per stream shard.
pub struct StreamFeed {
    store: Arc<SimStore>,
    delay: Duration,
    state: Mutex<FeedState>,
}

struct FeedState {
    position: usize,
    shards: Vec<VecDeque<Pending>>,
}

/// A batch taken from one shard.
pub struct Batch {
    pub records: Vec<StreamRecord>,
    attempts: Vec<u32>,
}

impl StreamFeed {
    pub fn new(store: Arc<SimStore>, shards: usize, delay: Duration) -> Arc<Self> {
        Arc::new(Self {
            store,
            delay,
            state: Mutex::new(FeedState {
                position: 0,
                shards: (0..shards.max(1)).map(|_| VecDeque::new()).collect(),
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, FeedState> {
        match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Reads what the store wrote since the last read into the shards.
    pub fn pull(&self) {
        let position = self.state().position;
        let (records, next) = self.store.inner.stream_since(position);
        let now = Instant::now();
        let mut state = self.state();
        state.position = next;
        let shards = state.shards.len() as u64;
        for record in records {
            let Some(key) = delivered(&record) else {
                continue;
            };
            let shard = usize::try_from(key % shards).unwrap_or(0);
            state.shards[shard].push_back(Pending {
                record,
                visible_at: now + self.delay,
                attempts: 0,
            });
        }
    }

    /// Up to `BATCH_SIZE` records of `shard` that have reached the mapping.
    pub fn take(&self, shard: usize) -> Option<Batch> {
        let now = Instant::now();
        let mut state = self.state();
        let queue = state.shards.get_mut(shard)?;
        let mut batch = Batch {
            records: Vec::new(),
            attempts: Vec::new(),
        };
        while batch.records.len() < BATCH_SIZE {
            if queue.front().is_none_or(|p| p.visible_at > now) {
                break;
            }
            if let Some(pending) = queue.pop_front() {
                batch.records.push(pending.record);
                batch.attempts.push(pending.attempts);
            }
        }
        (!batch.records.is_empty()).then_some(batch)
    }

    /// Puts the records of `batch` from `from` on back at the front of the
    /// shard, to be delivered again after `pause`. Returns how many were
    /// dropped for having been retried too often.
    pub fn retry(&self, shard: usize, batch: Batch, from: usize, pause: Duration) -> u64 {
        let visible_at = Instant::now() + pause;
        let mut state = self.state();
        let Some(queue) = state.shards.get_mut(shard) else {
            return 0;
        };
        let mut dropped = 0;
        let again: Vec<(StreamRecord, u32)> = batch
            .records
            .into_iter()
            .zip(batch.attempts)
            .skip(from)
            .collect();
        for (record, attempts) in again.into_iter().rev() {
            if attempts >= MAX_RETRIES {
                dropped += 1;
                continue;
            }
            queue.push_front(Pending {
                record,
                visible_at,
                attempts: attempts + 1,
            });
        }
        dropped
    }

    /// Records waiting in any shard.
    pub fn backlog(&self) -> usize {
        self.state().shards.iter().map(VecDeque::len).sum()
    }
}

/// The mapping's filter (infra/template.yaml): a record is delivered if it
/// is a session's INSERT or an event item whose backlog hint is armed.
/// Returns the key its stream shard is chosen by (records of one item stay
/// in one shard, in order).
fn delivered(record: &StreamRecord) -> Option<u64> {
    match record.change.as_ref().ok()? {
        Change::Session {
            old: None,
            new: Some(session),
        } => Some(session.id.stable_hash()),
        Change::Counters {
            event_id, after, ..
        } if after.backlog.armed => Some(fnv(event_id.as_str())),
        _ => None,
    }
}

fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
