//! The granter: files join messages into their event's line and admits from
//! the front while the event has free slots.
//!
//! Every message received is finished in the same batch — admitted, filed in
//! the line, or skipped — and then deleted. A message is never left in the
//! queue because its event is full: that would count towards the dead-letter
//! queue's `maxReceiveCount` for nothing but waiting (contract invariant 5)
//! and block the event's message group. The line itself lives in DynamoDB;
//! see docs/decisions/0004-line-and-shards.md.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::domain::admission::{
    AdmissionPolicy, Arrival, KnownEntries, LineAdvance, plan_line_advance,
};
use crate::domain::{Clock, EventId, LineState, SessionId, Timestamp};
use crate::ports::{AdvanceOutcome, Delivery, JoinTicket, SessionStore};

use super::{MAX_ATTEMPTS, ServiceError};

/// How long to wait for the line index to show freshly filed sessions
/// before looking again (it is eventually consistent).
const INDEX_CATCH_UP: Duration = Duration::from_millis(50);

pub struct Granter<S> {
    pub store: S,
    pub clock: Arc<dyn Clock>,
    pub policy: AdmissionPolicy,
    pub line_shards: u16,
    pub ended_retention: Duration,
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
        mut arrivals: Vec<Arrival>,
    ) -> Result<AdvanceReport, ServiceError> {
        let mut report = AdvanceReport::default();
        for _ in 0..MAX_ATTEMPTS {
            let state = self.store.line_state(event, self.line_shards).await?;
            let known = self.read_fronts(&state).await?;
            let now = self.clock.now();
            let plan = plan_line_advance(&state, &arrivals, &known, &self.policy, now);
            if plan.is_empty() && !plan.unfinished {
                return Ok(report);
            }
            if plan.is_empty() {
                tokio::time::sleep(INDEX_CATCH_UP).await;
                continue;
            }
            let retain_until = now.plus(self.ended_retention);
            match self.store.advance_line(&plan, retain_until).await? {
                AdvanceOutcome::Applied => {
                    record(&mut report, &plan, arrivals.len());
                    arrivals.clear();
                    if !plan.unfinished {
                        return Ok(report);
                    }
                }
                AdvanceOutcome::Conflict { rejected } => {
                    tracing::debug!(event = %event, ?rejected, shards = ?plan.shards, admitted = plan.admitted, sessions = plan.sessions.len(), "line advance conflicted; planning again");
                    // Rejected arrivals were filed before (a redelivery), have
                    // ended, or are gone: their messages are finished as is.
                    arrivals.retain(|a| !rejected.contains(&a.session_id));
                    report.skipped.extend(rejected);
                }
            }
        }
        Err(ServiceError::Contention)
    }

    /// The front of each shard that has people waiting, enough of it to fill
    /// the free slots (and skip those who left). Nothing is read when the
    /// event is full.
    async fn read_fronts(&self, state: &LineState) -> Result<KnownEntries, ServiceError> {
        let free = state.counters.free_slots(self.policy.default_capacity);
        let mut known = KnownEntries {
            by_shard: vec![Vec::new(); state.shards.len()],
        };
        if free == 0 {
            return Ok(known);
        }
        for (index, shard) in state.shards.iter().enumerate() {
            if !shard.has_backlog() {
                continue;
            }
            let wanted = free.saturating_add(shard.ended_in_line).saturating_add(1);
            let limit = usize::try_from(wanted)
                .unwrap_or(usize::MAX)
                .min(self.policy.max_changes_per_write.max(1) * 2);
            known.by_shard[index] = self
                .store
                .line_entries(&state.event_id, shard.shard, shard.head_ticket, limit)
                .await?;
        }
        Ok(known)
    }
}

fn record(report: &mut AdvanceReport, plan: &LineAdvance, arrivals: usize) {
    report.filed += arrivals as u64;
    report.admitted += plan.admitted;
    report.abandoned += plan.shards.iter().map(|s| s.abandoned).sum::<u64>();
}
