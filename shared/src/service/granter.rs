//! The granter: files join messages into their event's line and admits from
//! the front while the event has free slots.
//!
//! Every message received is finished in the same batch — admitted, filed in
//! the line, or skipped — and then deleted. A message is never left in the
//! queue because its event is full: that would count towards the dead-letter
//! queue's `maxReceiveCount` for nothing but waiting (contract invariant 5)
//! and block the event's message group. The line itself lives in DynamoDB;
//! see docs/decisions/0004-line-and-shards.md.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::domain::admission::{
    AdmissionPolicy, Arrival, KnownEntries, LineAdvance, SessionChangeKind, new_arrivals,
    plan_line_advance,
};
use crate::domain::{
    Clock, EventCounters, EventId, LineEntry, LineState, SessionId, SessionStatus, Timestamp,
};
use crate::ports::{AdvanceOutcome, Delivery, JoinTicket, SessionStore};

use super::ServiceError;

/// How long to wait for the line index to show freshly filed sessions
/// before looking again (it is eventually consistent).
const INDEX_CATCH_UP: Duration = Duration::from_millis(50);

pub struct Granter<S> {
    pub store: S,
    pub clock: Arc<dyn Clock>,
    pub policy: AdmissionPolicy,
    pub line_shards: u16,
    pub ended_retention: Duration,
    /// What this instance last wrote of each line, to skip re-reading it.
    pub cache: LineCache,
}

/// What became of one batch of join messages.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchReport {
    /// Finished: delete them.
    pub handled: Vec<String>,
    /// Not finished because a dependency failed: leave them for redelivery.
    pub failed: Vec<String>,
    /// Bodies no join could have produced: retrying cannot help, so they go
    /// to the dead-letter queue for a human to look at.
    pub unreadable: Vec<Delivery>,
    pub admitted: u64,
}

/// What one line advance did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AdvanceReport {
    pub filed: u64,
    pub admitted: u64,
    pub abandoned: u64,
    /// Messages of sessions that were filed already, ended, or gone.
    pub skipped: Vec<SessionId>,
}

fn parse_ticket(body: &str) -> Option<Arrival> {
    let ticket: JoinTicket = serde_json::from_str(body).ok()?;
    let session_id = SessionId::parse(&ticket.session_id).ok()?;
    if session_id.event_id().as_str() != ticket.event_id {
        return None;
    }
    Some(Arrival {
        session_id,
        shard: ticket.shard,
        joined_at: Timestamp::from_millis(ticket.joined_at),
    })
}

impl<S: SessionStore> Granter<S> {
    /// Handle a batch of join messages (from a Lambda event or a receive).
    pub async fn handle_deliveries(&self, deliveries: &[Delivery]) -> BatchReport {
        let mut report = BatchReport::default();
        let mut by_event: BTreeMap<EventId, Vec<(&Delivery, Arrival)>> = BTreeMap::new();
        for delivery in deliveries {
            match parse_ticket(&delivery.body) {
                Some(arrival) => by_event
                    .entry(arrival.session_id.event_id())
                    .or_default()
                    .push((delivery, arrival)),
                None => {
                    tracing::error!(message_id = %delivery.message_id, "unreadable join message");
                    report.unreadable.push(delivery.clone());
                }
            }
        }
        let outcomes =
            futures::future::join_all(by_event.into_iter().map(|(event, messages)| async move {
                let arrivals = messages.iter().map(|(_, a)| a.clone()).collect();
                let outcome = self.advance(&event, arrivals).await;
                (event, messages, outcome)
            }))
            .await;
        for (event, messages, outcome) in outcomes {
            let ids = messages.iter().map(|(d, _)| d.message_id.clone());
            match outcome {
                Ok(advance) => {
                    report.admitted += advance.admitted;
                    report.handled.extend(ids);
                }
                Err(err) => {
                    // The whole event's messages come back: with FIFO order
                    // nothing after a failed message may be finished first.
                    tracing::warn!(event = %event, error = %err, "join messages not handled; they will be redelivered");
                    report.failed.extend(ids);
                }
            }
        }
        report
    }

    /// File `arrivals` (join messages of `event`, in queue order) and admit
    /// from the front of the line while slots are free. With no arrivals this
    /// is what a freed slot triggers.
    pub async fn advance(
        &self,
        event: &EventId,
        arrivals: Vec<Arrival>,
    ) -> Result<AdvanceReport, ServiceError> {
        self.advance_with(event, arrivals, None).await
    }

    /// As `advance`, starting from counters the caller has just seen (the
    /// new image of a stream record), fresher than the cached ones.
    pub async fn advance_with(
        &self,
        event: &EventId,
        mut arrivals: Vec<Arrival>,
        fresh_counters: Option<EventCounters>,
    ) -> Result<AdvanceReport, ServiceError> {
        let mut report = AdvanceReport::default();
        let mut cached = self.cache.take(event);
        let mut fresh_counters = fresh_counters;
        // Only setbacks (a lost write, a lagging index) count against the
        // budget: a write that applied is progress, and the granter that
        // wrote last must go on until the line is settled (see below).
        let mut setbacks = 0;
        let mut lost_last_write = false;
        // A wake-up (no arrivals) must not end quietly with a slot unused: it
        // fails instead, and the stream (or the local poller) retries it.
        let woken = arrivals.is_empty();
        while setbacks < SETBACKS_ALLOWED {
            // Counters must be fresh (a stale `active` would leave free slots
            // unused); shards and fronts may come from the cache, as every
            // write is conditioned on them.
            let (state, fronts, from_cache) = match (fresh_counters.take(), cached.take()) {
                (Some(counters), Some(line)) => (
                    LineState {
                        counters,
                        ..line.state
                    },
                    line.fronts,
                    true,
                ),
                (_, line) => {
                    let state = self.store.line_state(event, self.line_shards).await?;
                    let from_cache = line.is_some();
                    (
                        state,
                        line.map(|l| l.fronts).unwrap_or_default(),
                        from_cache,
                    )
                }
            };
            let mut state = state;
            let (known, moved_under_us) = self.read_fronts(&mut state, fronts).await?;
            // Arrivals the line already shows are filed (a redelivery): done.
            arrivals = new_arrivals(&arrivals, &known);
            let now = self.clock.now();
            // Losing to other granters again and again means they are
            // admitting (progress); file the arrivals without admitting, so
            // their messages are finished instead of waiting for redelivery.
            let file_only = setbacks >= FILE_ONLY_AFTER && !arrivals.is_empty();
            let policy = if file_only {
                &self.filing_policy()
            } else {
                &self.policy
            };
            let plan = plan_line_advance(&state, &arrivals, &known, policy, now);
            if plan.is_empty() && !plan.unfinished {
                self.cache.put(
                    event,
                    CachedLine {
                        state,
                        fronts: known.by_shard,
                    },
                );
                return Ok(report);
            }
            if plan.is_empty() && from_cache {
                // Other granters moved the line since it was cached: read
                // it all again before suspecting the index.
                continue;
            }
            if plan.is_empty() && moved_under_us && !woken {
                // Other granters are admitting from this line right now, and
                // our arrivals are in line (a plan files every arrival it
                // does not see there): the batch is done.
                return Ok(report);
            }
            if plan.is_empty() {
                setbacks += 1;
                lost_last_write = moved_under_us;
                if !moved_under_us {
                    tokio::time::sleep(INDEX_CATCH_UP).await;
                }
                continue;
            }
            let retain_until = now.plus(self.ended_retention);
            match self.store.advance_line(&plan, retain_until).await? {
                AdvanceOutcome::Applied => {
                    lost_last_write = false;
                    record(&mut report, &plan, arrivals.len());
                    let after = CachedLine::after(state, &plan, known, &arrivals);
                    arrivals.clear();
                    if !plan.unfinished {
                        self.cache.put(event, after);
                        return Ok(report);
                    }
                    fresh_counters = Some(after.state.counters.clone());
                    cached = Some(after);
                }
                AdvanceOutcome::Conflict { rejected } => {
                    tracing::debug!(event = %event, ?rejected, "line advance conflicted; reading the line again");
                    setbacks += 1;
                    lost_last_write = true;
                    if rejected.is_empty() {
                        // Another granter wrote the same line or counters:
                        // step aside a little, differently each time, so
                        // concurrent granters do not collide again.
                        let salt = arrivals.first().map_or_else(
                            || event.as_str().len() as u64,
                            |a| a.session_id.stable_hash(),
                        );
                        tokio::time::sleep(contention_pause(setbacks, salt)).await;
                    }
                    // Rejected arrivals were filed before (a redelivery), have
                    // ended, or are gone: their messages are finished as is.
                    arrivals.retain(|a| !rejected.contains(&a.session_id));
                    report.skipped.extend(rejected);
                }
            }
        }
        if arrivals.is_empty() && lost_last_write && !woken {
            // Everyone is filed and another granter's write beat ours. The
            // granter that writes last never stops on a lost write, so it
            // goes on admitting until the line is settled: nothing is left
            // for us to do, and our messages are finished.
            tracing::info!(event = %event, "line contended; filed, admissions left to the granter that won");
            return Ok(report);
        }
        Err(ServiceError::Contention)
    }

    /// The policy of a write that only files: no admissions, no expiries.
    fn filing_policy(&self) -> AdmissionPolicy {
        AdmissionPolicy {
            max_changes_per_write: 0,
            ..self.policy.clone()
        }
    }

    /// The front of each shard that has people waiting, enough of it to fill
    /// the free slots (and skip those who left), from the cache when it
    /// starts at the head and is long enough. Nothing is read when the event
    /// is full.
    async fn read_fronts(
        &self,
        state: &mut LineState,
        cached: Vec<Vec<LineEntry>>,
    ) -> Result<(KnownEntries, bool), ServiceError> {
        let free = state.counters.free_slots(self.policy.default_capacity);
        let mut known = KnownEntries {
            by_shard: vec![Vec::new(); state.shards.len()],
        };
        let mut moved_under_us = false;
        for index in 0..state.shards.len() {
            let shard = &state.shards[index];
            let front = cached.get(index).cloned().unwrap_or_default();
            let starts_at_head = front.first().is_some_and(|e| e.ticket == shard.head_ticket);
            let wanted = free.saturating_add(shard.ended_in_line).saturating_add(1);
            let reaches_end = front
                .last()
                .is_some_and(|e| e.ticket + 1 >= shard.next_ticket);
            let enough = starts_at_head && (front.len() as u64 >= wanted || reaches_end);
            known.by_shard[index] = if free == 0 || !shard.has_backlog() || enough {
                front
            } else {
                // Read ahead: the next freed slots are served from the cache.
                let entries = self
                    .store
                    .line_entries(&state.event_id, shard.shard, shard.head_ticket, FRONT_READ)
                    .await?;
                moved_under_us |= self.catch_up_with_head(state, index, &entries).await?;
                entries
            };
        }
        Ok((known, moved_under_us))
    }

    /// The front read from the index starts past the head read just before:
    /// either the index lags, or other granters admitted from this shard in
    /// between (admitted sessions leave the index). Reading the shard again
    /// tells which; with its newer head the front is whole again, and the
    /// write is conditioned on the newer state. True when the head moved.
    async fn catch_up_with_head(
        &self,
        state: &mut LineState,
        index: usize,
        entries: &[LineEntry],
    ) -> Result<bool, ServiceError> {
        let shard = &state.shards[index];
        let Some(first) = entries.first() else {
            return Ok(false);
        };
        if first.ticket <= shard.head_ticket {
            return Ok(false);
        }
        let newer = self.store.line_shard(&state.event_id, shard.shard).await?;
        let moved = newer.head_ticket > shard.head_ticket;
        if moved {
            state.shards[index] = newer;
        }
        Ok(moved)
    }
}

/// Setbacks before a granter with arrivals only files them.
const FILE_ONLY_AFTER: usize = 3;

/// Setbacks before a batch is given back to the queue. Generous: a batch
/// given back blocks its message groups for the visibility timeout, and
/// the users behind it would be overtaken; the backoff keeps this to a few
/// seconds at most.
const SETBACKS_ALLOWED: usize = 16;

/// Exponential backoff with jitter after the n-th setback: 5 ms, 10 ms,
/// 20 ms… (from n = 1) times a factor in [0.5, 1.5) from `salt`, which
/// differs between granters working on different messages.
fn contention_pause(setbacks: usize, salt: u64) -> Duration {
    let exponent = setbacks.saturating_sub(1).min(6);
    let base = Duration::from_millis(5 << exponent);
    let rotation = u32::try_from(exponent).unwrap_or(0) * 7;
    let mixed = salt
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(rotation);
    let jitter = 0.5 + (mixed % 1000) as f64 / 1000.0;
    base.mul_f64(jitter)
}

/// Line entries read per query: a page serves many freed slots.
const FRONT_READ: usize = 100;

/// What a granter instance last knew of an event's line. Only a hint: every
/// write is conditioned on it, and a conflict drops it.
#[derive(Debug, Clone)]
struct CachedLine {
    state: LineState,
    /// Per shard, the known entries from the head on.
    fronts: Vec<Vec<LineEntry>>,
}

impl CachedLine {
    /// The line as `plan` left it, had nothing else changed.
    fn after(
        mut state: LineState,
        plan: &LineAdvance,
        known: KnownEntries,
        arrivals: &[Arrival],
    ) -> Self {
        let mut fronts = known.by_shard;
        for advance in &plan.shards {
            let Some(index) = state.shards.iter().position(|s| s.shard == advance.shard) else {
                continue;
            };
            let shard = &mut state.shards[index];
            let complete_before = fronts[index]
                .last()
                .map_or(shard.head_ticket, |e| e.ticket + 1)
                >= shard.next_ticket;
            shard.stored = true;
            shard.next_ticket = advance.next;
            shard.head_ticket = advance.head;
            shard.filed_through = advance.filed_through;
            shard.ended_in_line = shard.ended_in_line.saturating_sub(advance.passed_ended);
            shard.abandoned += advance.abandoned;
            let front = &mut fronts[index];
            front.retain(|e| e.ticket >= advance.head);
            if complete_before {
                front.extend(filed_entries(plan, arrivals, advance.shard));
            }
        }
        let counters = &mut state.counters;
        counters.active += plan.admitted;
        counters.admitted += plan.admitted;
        counters.rate = plan.rate;
        counters.backlog = plan.backlog_after(counters.backlog);
        Self { state, fronts }
    }
}

/// The arrivals this write filed in `shard`, as the line index will show them.
fn filed_entries(plan: &LineAdvance, arrivals: &[Arrival], shard: u16) -> Vec<LineEntry> {
    plan.sessions
        .iter()
        .filter(|c| c.shard == shard && c.kind == SessionChangeKind::File)
        .filter_map(|c| {
            let arrival = arrivals.iter().find(|a| a.session_id == c.session_id)?;
            Some(LineEntry {
                session_id: c.session_id.clone(),
                ticket: c.ticket,
                status: SessionStatus::Waiting,
                joined_at: arrival.joined_at,
                // Unknown here; an abandonment based on it is re-checked by
                // the write's condition on the stored value.
                last_seen_at: arrival.joined_at,
            })
        })
        .collect()
}

/// Per-instance cache of lines, by event.
#[derive(Debug, Default)]
pub struct LineCache(Mutex<HashMap<EventId, CachedLine>>);

impl LineCache {
    fn take(&self, event: &EventId) -> Option<CachedLine> {
        self.0.lock().ok()?.remove(event)
    }

    fn put(&self, event: &EventId, line: CachedLine) {
        if let Ok(mut lines) = self.0.lock() {
            lines.insert(event.clone(), line);
        }
    }
}

fn record(report: &mut AdvanceReport, plan: &LineAdvance, arrivals: usize) {
    report.filed += arrivals as u64;
    report.admitted += plan.admitted;
    report.abandoned += plan.shards.iter().map(|s| s.abandoned).sum::<u64>();
}
