//! A replica of the in-memory store's line index, for `line_front`.
//!
//! `MemoryStore::line_front` walks its whole line index from the start to
//! find a shard (every waiting session of every shard before it is
//! compared), so with a long line most of a run's time went there: 40
//! reads of the fronts over 100,000 waiting sessions took 0.44 s. DynamoDB
//! answers the same query from the partition's sorted range. The replica
//! keeps the same index (waiting sessions by event, shard and place, each
//! change visible from the same due time the store drew for it, changes of
//! one session in order) in one sorted map per shard. It is fed from the
//! store's stream log (every session write, in order) and the due times
//! the store model drew for those writes; in debug builds every answer is
//! checked against the store's own.

use std::collections::{BTreeMap, HashMap};

use waiting_room::domain::{
    Change, EventId, LineEntry, Place, Session, SessionId, SessionStatus, StreamRecord, Timestamp,
};

type Shard = (EventId, u16);
/// A session's entry in the index: where it stands, and what it shows.
type Indexed = (Shard, Place, LineEntry);

#[derive(Default)]
pub struct LineReplica {
    visible: BTreeMap<Shard, BTreeMap<Place, LineEntry>>,
    key_of: HashMap<SessionId, (Shard, Place)>,
    pending: BTreeMap<(Timestamp, u64), (SessionId, Option<Indexed>)>,
    /// The due time of each session's latest pending change.
    last_due: HashMap<SessionId, Timestamp>,
    seq: u64,
    /// How far into the store's stream log the replica has read.
    pub position: usize,
}

fn entry_of(session: &Session) -> Option<Indexed> {
    (session.status() == SessionStatus::Waiting).then(|| {
        (
            (session.event_id.clone(), session.shard),
            session.place(),
            LineEntry {
                session_id: session.id.clone(),
                shard: session.shard,
                joined_at: session.joined_at,
                last_seen_at: session.last_seen_at,
                ticket: session.ticket,
            },
        )
    })
}

impl LineReplica {
    /// Takes in stream records written after `position`, the session
    /// writes among them each with the due time drawn for it, in order.
    /// Returns how many session writes had no due time (0 when the replica
    /// is in step with the store).
    pub fn follow(
        &mut self,
        records: &[StreamRecord],
        dues: &mut impl Iterator<Item = Timestamp>,
    ) -> u64 {
        let mut missing = 0;
        for record in records {
            let Ok(Change::Session { old, new }) = &record.change else {
                continue;
            };
            let Some(id) = new.as_ref().or(old.as_ref()).map(|s| s.id.clone()) else {
                continue;
            };
            let Some(due) = dues.next() else {
                missing += 1;
                continue;
            };
            let value = new.as_deref().and_then(entry_of);
            self.set(id, value, due);
        }
        missing
    }

    fn set(&mut self, id: SessionId, value: Option<Indexed>, due: Timestamp) {
        let due = self.last_due.get(&id).map_or(due, |last| due.max(*last));
        self.last_due.insert(id.clone(), due);
        self.seq += 1;
        self.pending.insert((due, self.seq), (id, value));
    }

    pub fn catch_up(&mut self, now: Timestamp) {
        while let Some(entry) = self.pending.first_entry() {
            let due = entry.key().0;
            if due > now {
                break;
            }
            let (id, value) = entry.remove();
            if self.last_due.get(&id) == Some(&due) {
                // Anything written from now on is due later than this.
                self.last_due.remove(&id);
            }
            if let Some((shard, place)) = self.key_of.remove(&id) {
                if let Some(line) = self.visible.get_mut(&shard) {
                    line.remove(&place);
                }
            }
            if let Some((shard, place, entry)) = value {
                self.key_of.insert(id, (shard.clone(), place.clone()));
                self.visible.entry(shard).or_default().insert(place, entry);
            }
        }
    }

    pub fn after(
        &self,
        event: &EventId,
        shard: u16,
        after: &Place,
        limit: usize,
    ) -> Vec<LineEntry> {
        use std::ops::Bound::{Excluded, Unbounded};
        self.visible
            .get(&(event.clone(), shard))
            .map(|line| {
                line.range((Excluded(after.clone()), Unbounded))
                    .take(limit)
                    .map(|(_, entry)| entry.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn front(&self, event: &EventId, shard: u16, limit: usize) -> Vec<LineEntry> {
        self.visible
            .get(&(event.clone(), shard))
            .map(|line| line.values().take(limit).cloned().collect())
            .unwrap_or_default()
    }
}
