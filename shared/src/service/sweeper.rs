//! The sweeper, run on a schedule, does two things:
//!
//! - **Expiry.** It ends active sessions whose stay is over and gives their
//!   slots back, exactly once even with several sweepers and concurrent
//!   leaves. It reads the sparse expiry index (active sessions only, by end
//!   time), never the table: every bucket at once, many sessions of one
//!   event per write, and a bucket that fails does not hold up the others.
//! - **Reconciliation.** A safety net that depends on no single wake-up: for
//!   every event it finds people waiting while a slot is free (and admits
//!   them), people waiting while the backlog hint would not wake anyone (and
//!   arms it), and lines that stayed empty (and clears the hint, in two
//!   steps). Each repair is counted: in a healthy system it stays at zero.
//!
//! Waiting users who stopped polling are expired by the granter when they
//! reach the front of the line (docs/decisions/0009-expiry.md).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::domain::admission::BacklogChange;
use crate::domain::line::BACKLOG_CLEAR_DELAY;
use crate::domain::session::EXPIRY_BUCKETS;
use crate::domain::{EventCounters, EventId, LineEntry, SessionId, Timestamp};
use crate::ports::{EventStore, ExpiryStore, LineStore, StoreError};

use super::ServiceError;
use super::granter::{Granter, Wake};
use super::patience::contention_pause;
use super::session_command::SessionCommands;

/// Pages per bucket per run, so a run always ends; the next run continues.
const MAX_PAGES: usize = 50;
/// Sessions per expiry write (a transaction takes 100 items; one is the
/// event's counters).
const EXPIRIES_PER_WRITE: usize = 50;
/// Events reconciled at once.
const RECONCILE_CONCURRENCY: usize = 8;
/// Attempts at one expiry write that keeps colliding.
const EXPIRY_ATTEMPTS: usize = 8;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    pub expired: u64,
    /// Overdue sessions another party ended or extended first.
    pub skipped: u64,
    /// Sessions or buckets that could not be handled this run (the next
    /// run retries them).
    pub failed: u64,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReconcileReport {
    pub events: u64,
    /// Events found with someone waiting longer than a wake-up takes
    /// (`SERVED_WITHIN`) beside a slot that could admit them and that
    /// nobody filled for `STRANDED_AFTER`; repaired or not. What the stall
    /// alarm watches.
    pub stranded: u64,
    /// Each event as the reconciliation read it.
    pub gauges: Vec<EventGauge>,
    /// Events where someone waited while a slot was free: a wake-up was
    /// missed (or is about to arrive), and the reconciliation admitted.
    pub repaired: u64,
    /// Events where someone waited behind a full event with no hint armed.
    pub armed: u64,
    /// Hints cleared after the line stayed empty.
    pub cleared: u64,
    pub failed: u64,
}

pub struct Sweeper<S> {
    pub commands: SessionCommands<S>,
    pub page: usize,
}

impl<S: ExpiryStore> Sweeper<S> {
    pub async fn sweep(&self) -> SweepReport {
        let reports =
            futures::future::join_all((0..EXPIRY_BUCKETS).map(|bucket| self.sweep_bucket(bucket)))
                .await;
        reports
            .into_iter()
            .fold(SweepReport::default(), |total, r| SweepReport {
                expired: total.expired + r.expired,
                skipped: total.skipped + r.skipped,
                failed: total.failed + r.failed,
            })
    }

    async fn sweep_bucket(&self, bucket: u16) -> SweepReport {
        let mut report = SweepReport::default();
        for _ in 0..MAX_PAGES {
            let now = self.commands.clock.now();
            let overdue = match self
                .commands
                .store
                .overdue_sessions(bucket, now, self.page)
                .await
            {
                Ok(overdue) => overdue,
                Err(err) => {
                    tracing::warn!(bucket, error = %err, "could not read the expiry index; the next sweep retries");
                    report.failed += 1;
                    return report;
                }
            };
            let mut by_event: BTreeMap<EventId, Vec<SessionId>> = BTreeMap::new();
            for id in &overdue {
                by_event.entry(id.event_id()).or_default().push(id.clone());
            }
            let before = report.expired;
            for (event, ids) in by_event {
                for chunk in ids.chunks(EXPIRIES_PER_WRITE) {
                    self.expire_chunk(&event, chunk.to_vec(), &mut report).await;
                }
            }
            if overdue.len() < self.page || report.expired == before {
                break;
            }
        }
        report
    }

    /// One write for many sessions of one event; those that are no longer
    /// overdue (extended, ended) drop out and the rest are written again.
    async fn expire_chunk(
        &self,
        event: &EventId,
        mut ids: Vec<SessionId>,
        report: &mut SweepReport,
    ) {
        let store = &self.commands.store;
        for attempt in 1..=EXPIRY_ATTEMPTS {
            if ids.is_empty() {
                return;
            }
            let now = self.commands.clock.now();
            let retain_until = now.plus(self.commands.ended_retention);
            match store.expire_overdue(event, &ids, now, retain_until).await {
                Ok(expiry) if expiry.skipped.is_empty() => {
                    report.expired += expiry.expired.len() as u64;
                    return;
                }
                Ok(expiry) => {
                    report.expired += expiry.expired.len() as u64;
                    report.skipped += expiry.skipped.len() as u64;
                    ids.retain(|id| !expiry.skipped.contains(id) && !expiry.expired.contains(id));
                }
                Err(StoreError::Contention(_)) => {
                    tokio::time::sleep(contention_pause(attempt, event.as_str().len() as u64))
                        .await;
                }
                Err(err) => {
                    tracing::warn!(event = %event, sessions = ids.len(), error = %err, "could not expire; the next sweep retries");
                    report.failed += ids.len() as u64;
                    return;
                }
            }
        }
        report.failed += ids.len() as u64;
    }
}

/// One event as the reconciliation read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventGauge {
    pub event_id: EventId,
    pub active: u64,
    /// Slots the line may take now (none while paused).
    pub free: u64,
    /// Waiting, as the event's report estimates it.
    pub waiting: u64,
    /// How long the longest-waiting fan at a shard's front has been
    /// admissible (since their join, or the opening's draw); none when
    /// nobody waits or the event holds its line.
    pub queue_age: Option<Duration>,
    pub stranded: bool,
}

/// How long a free slot beside a waiting fan must go unfilled, no one
/// admitted meanwhile, before the event counts as stranded: far longer than
/// a working wake-up takes (tens of milliseconds), short enough for a run
/// that looks at many events.
pub const STRANDED_AFTER: Duration = Duration::from_secs(2);

/// How long a join may wait for its own wake-up (its join message reaching a
/// granter) before the reconciliation, finding it unserved, counts a repair.
/// Seconds in practice; a granter that died holding the message delays it by
/// the queue's visibility timeout, and then the reconciliation that serves
/// the fan first does count: it shortened a wait.
pub const SERVED_WITHIN: Duration = Duration::from_secs(10);

/// The reconciliation: the granter's logic, run for every event on the
/// sweeper's schedule instead of on a wake-up.
pub struct Reconciler<S> {
    pub granter: Granter<S>,
}

impl<S: EventStore + LineStore> Reconciler<S> {
    #[tracing::instrument(name = "reconcile", skip_all)]
    pub async fn reconcile(&self) -> Result<ReconcileReport, ServiceError> {
        let events = self.granter.store.events().await?;
        let mut report = ReconcileReport {
            events: events.len() as u64,
            ..ReconcileReport::default()
        };
        for chunk in events.chunks(RECONCILE_CONCURRENCY) {
            let outcomes =
                futures::future::join_all(chunk.iter().map(|event| self.reconcile_event(event)))
                    .await;
            for (event, outcome) in chunk.iter().zip(outcomes) {
                if let Ok((_, gauge)) = &outcome {
                    report.stranded += u64::from(gauge.stranded);
                    report.gauges.push(gauge.clone());
                }
                match outcome.map(|(repair, _)| repair) {
                    Ok(Repair::None) => {}
                    Ok(Repair::Admitted) => report.repaired += 1,
                    Ok(Repair::Armed) => report.armed += 1,
                    Ok(Repair::Cleared) => report.cleared += 1,
                    Err(err) => {
                        tracing::warn!(event = %event, error = %err, "could not reconcile; the next run retries");
                        report.failed += 1;
                    }
                }
            }
        }
        if report.repaired + report.armed > 0 {
            tracing::warn!(
                repaired = report.repaired,
                armed = report.armed,
                "reconciliation found waiting users no wake-up had served"
            );
        }
        Ok(report)
    }

    async fn reconcile_event(&self, event: &EventId) -> Result<(Repair, EventGauge), ServiceError> {
        let granter = &self.granter;
        let store = &granter.store;
        // Opens or closes the event if its time has come (nothing else may
        // be woken for an event nobody joins at the time).
        let counters = granter.event_now(event).await?;
        let mut waiting = Vec::new();
        for shard in 0..granter.line_shards.max(1) {
            waiting.extend(store.line_front(event, shard, 1).await?);
        }
        // A paused event's free slots wait on purpose: nothing to repair.
        let now = granter.clock.now();
        let free = counters.admittable(granter.policy.default_capacity, now);
        // Someone who joined a moment ago may simply not be served yet: their
        // own join message is on its way. Only a fan left longer than that
        // counts as a wake-up gone missing (the repair is made either way).
        // (A pre-queue's places are its draw's: it waits from the opening.)
        let oldest = waiting
            .iter()
            .map(|entry| counters.eligible_since(entry))
            .min();
        // Before the draw settles nobody is served on purpose.
        let drawing = counters.held_until(now).is_some();
        let holds = drawing || !counters.state.admits();
        let missed = !drawing && oldest.is_some_and(|since| now.since(since) >= SERVED_WITHIN);
        let queue_age = oldest.filter(|_| !holds).map(|since| now.since(since));
        let shards: Vec<u16> = (0..granter.line_shards.max(1)).collect();
        let tickets = store.ticket_counters(event, &shards).await?;
        let mut stranded = false;
        let (counters, free) = if missed && free > 0 {
            // In a busy sale a slot is often free for the moment between an
            // exit and the admission it wakes: look again a little later. A
            // line that admitted nobody meanwhile, beside a slot still
            // free, is stranded (what the stall alarm counts).
            tokio::time::sleep(STRANDED_AFTER).await;
            let again = store.event_counters(event, granter.line_shards).await?;
            let free_again = again.admittable(granter.policy.default_capacity, granter.clock.now());
            stranded = again.admitted == counters.admitted && free_again > 0;
            (again, free_again)
        } else {
            (counters, free)
        };
        let gauge = EventGauge {
            event_id: event.clone(),
            active: counters.active,
            free,
            waiting: counters.waiting(&tickets),
            queue_age,
            stranded,
        };
        let repair = self
            .repair(event, counters, &waiting, free, missed, now)
            .await?;
        Ok((repair, gauge))
    }

    async fn repair(
        &self,
        event: &EventId,
        counters: EventCounters,
        waiting: &[LineEntry],
        free: u64,
        missed: bool,
        now: Timestamp,
    ) -> Result<Repair, ServiceError> {
        let granter = &self.granter;
        let store = &granter.store;
        if !waiting.is_empty() && free > 0 {
            let report = granter
                .advance(
                    event,
                    Wake {
                        counters: Some(counters),
                        known: Vec::new(),
                        use_cache: false,
                    },
                )
                .await?;
            if report.admitted + report.abandoned > 0 && missed {
                tracing::warn!(event = %event, admitted = report.admitted, "reconciliation admitted from a line no wake-up served");
                return Ok(Repair::Admitted);
            }
            return Ok(Repair::None);
        }
        if !waiting.is_empty() {
            if counters.backlog.is_firm() {
                return Ok(Repair::None);
            }
            let armed = store
                .update_backlog(event, BacklogChange::arm(&counters))
                .await?;
            return Ok(if armed && missed {
                Repair::Armed
            } else {
                Repair::None
            });
        }
        match counters.backlog.empty_since {
            None if counters.backlog.armed => {
                store
                    .update_backlog(event, BacklogChange::MarkEmpty { at: now })
                    .await?;
                Ok(Repair::None)
            }
            Some(marked_at) if now.since(marked_at) >= BACKLOG_CLEAR_DELAY => {
                let cleared = store
                    .update_backlog(event, BacklogChange::Clear { marked_at })
                    .await?;
                Ok(if cleared {
                    Repair::Cleared
                } else {
                    Repair::None
                })
            }
            _ => Ok(Repair::None),
        }
    }
}

enum Repair {
    None,
    Admitted,
    Armed,
    Cleared,
}
