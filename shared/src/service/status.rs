//! Status: where a session stands, and when to ask again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::domain::line::people_ahead;
use crate::domain::{Clock, EventId, LineShard, Session, SessionId, SessionStatus};
use crate::ports::SessionStore;

use super::ServiceError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    pub session: Session,
    /// For a waiting session the granter has filed.
    pub people_ahead: Option<u64>,
    /// When the client should poll next; `None` once there is nothing to wait for.
    pub poll_after: Option<Duration>,
}

impl StatusReport {
    pub fn position(&self) -> Option<u64> {
        self.people_ahead.map(|ahead| ahead + 1)
    }
}

/// Poll often near the front, rarely far back: the cost of a waiting room is
/// mostly status polls, and someone 50,000 places back gains nothing from
/// asking every two seconds.
pub fn poll_interval(session: &Session, people_ahead: Option<u64>) -> Option<Duration> {
    if session.status != SessionStatus::Waiting {
        return None;
    }
    let seconds = match people_ahead {
        None => 1,
        Some(0..=20) => 2,
        Some(21..=200) => 5,
        Some(201..=2_000) => 15,
        Some(_) => 30,
    };
    Some(Duration::from_secs(seconds))
}

/// Line shard items are read by every poll of every waiting user: a short
/// per-process cache turns thousands of reads per second of one hot item into
/// one read per second per function instance.
#[derive(Debug, Default)]
pub struct LineCache {
    ttl: Duration,
    entries: Mutex<HashMap<(EventId, u16), (LineShard, Instant)>>,
}

impl LineCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, event: &EventId, shard: u16) -> Option<LineShard> {
        let entries = self.entries.lock().ok()?;
        let (line, at) = entries.get(&(event.clone(), shard))?;
        (at.elapsed() < self.ttl).then(|| line.clone())
    }

    fn put(&self, event: &EventId, line: &LineShard) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert((event.clone(), line.shard), (line.clone(), Instant::now()));
        }
    }
}

pub struct StatusService<S> {
    pub store: S,
    pub clock: Arc<dyn Clock>,
    pub line_shards: u16,
    pub line_cache: LineCache,
}

impl<S: SessionStore> StatusService<S> {
    pub async fn status(&self, id: &SessionId) -> Result<StatusReport, ServiceError> {
        let session = self
            .store
            .get_session(id)
            .await?
            .ok_or(ServiceError::SessionNotFound)?;
        let people_ahead = match (session.status, session.place()) {
            (SessionStatus::Waiting, Some(place)) => {
                let line = self.line_shard(&session.event_id, place.shard).await?;
                Some(people_ahead(place.ticket, &line, self.line_shards))
            }
            _ => None,
        };
        Ok(StatusReport {
            poll_after: poll_interval(&session, people_ahead),
            session,
            people_ahead,
        })
    }

    async fn line_shard(&self, event: &EventId, shard: u16) -> Result<LineShard, ServiceError> {
        if let Some(line) = self.line_cache.get(event, shard) {
            return Ok(line);
        }
        let line = self.store.line_shard(event, shard).await?;
        self.line_cache.put(event, &line);
        Ok(line)
    }
}
