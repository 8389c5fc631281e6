//! The granter: admits from the front of an event's line while the event has
//! free slots, and numbers new joins so their users can see their position.
//!
//! A session is in line from the moment its join is written
//! (docs/decisions/0017-join-takes-the-place.md); the granter decides only
//! *when* the people at the front get in, never who is at the front. It is
//! woken from three sides, any of which suffices: join messages (SQS FIFO),
//! the table stream (a join written, a slot freed, capacity changed), and
//! the periodic reconciliation. Every message received is finished in the
//! same batch; a message is never left in the queue because its event is
//! full (that would count towards the dead-letter queue for nothing but
//! waiting).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::domain::admission::{
    AdmissionPlan, AdmissionPolicy, BacklogChange, TRANSACTION_ITEM_LIMIT, plan_admissions,
    plan_numbering,
};
use crate::domain::{
    Clock, EventCounters, EventId, EventState, LineEntry, SessionId, ShardView, StateChange,
    TicketCounter, Timestamp,
};
use crate::ports::{
    Arrival, Delivery, EventStore, JoinQueueMessage, LineStore, StoreError, WriteOutcome,
};

use super::ServiceError;
use super::patience::{Outcome, Patience, SETBACKS_ALLOWED, contention_pause};

pub struct Granter<S> {
    pub store: S,
    pub clock: Arc<dyn Clock>,
    pub policy: AdmissionPolicy,
    pub line_shards: u16,
    pub ended_retention: Duration,
    /// What this instance last read of each line, to serve freed slots
    /// without reading the fronts again.
    pub fronts: FrontCache,
}

/// What became of one batch of join queue messages.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchReport {
    /// Finished: delete them.
    pub handled: Vec<String>,
    /// Not finished because a dependency failed: leave them for redelivery.
    pub failed: Vec<String>,
    /// Their event's line is held for its draw: give them back until then
    /// (they are the alarm clock of the opening).
    pub held: Vec<(String, Timestamp)>,
    /// Bodies nothing could have produced: retrying cannot help, so they go
    /// to the dead-letter queue for a human to look at.
    pub unreadable: Vec<Delivery>,
    /// Events whose joins were numbered but whose advance ran out of
    /// setbacks: the messages are done but for that advance, which whoever
    /// runs the batch hands to the event's wake-up group (decision 0028).
    pub unadvanced: Vec<Unadvanced>,
    /// Events whose advance was handed to their wake-up group.
    pub handed_off: Vec<EventId>,
    pub admitted: u64,
}

/// An event's share of a batch whose joins are numbered and whose advance
/// is still to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unadvanced {
    pub event: EventId,
    /// The messages it came from (done once the advance is handed on).
    pub messages: Vec<String>,
    /// The joins among them, for the wake-up to carry: the line index may
    /// not show them yet.
    pub arrivals: Vec<Arrival>,
}

/// What one advance of a line did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AdvanceReport {
    pub admitted: u64,
    /// Waiting users abandoned (expired) for not polling.
    pub abandoned: u64,
    /// The backlog hint was armed (someone waits behind a full event).
    pub armed: bool,
}

impl AdvanceReport {
    pub fn did_anything(&self) -> bool {
        self.admitted > 0 || self.abandoned > 0 || self.armed
    }
}

/// Why and how a line is advanced.
#[derive(Debug, Clone, Default)]
pub struct Wake {
    /// Counters just seen (a stream record's new image), fresher than a read.
    pub counters: Option<EventCounters>,
    /// Waiting sessions heard of directly, that the line index may not show
    /// yet (just joined).
    pub known: Vec<LineEntry>,
    /// The fronts this instance read before may serve (a freed slot).
    pub use_cache: bool,
}

/// Line entries read per shard: a page serves many freed slots.
const FRONT_READ: usize = 100;
/// Pre-queue entries numbered per write (with the counter, within one
/// transaction's 100 items).
const DRAW_PAGE: usize = 90;
/// Writes of the draw's numbering per shard per call: about 900 fans, a
/// fraction of a second, so an advance or a batch never waits long for it.
const DRAW_PAGES_PER_CALL: usize = 10;
/// A cached front older than this is read again.
const FRONT_CACHE_AGE: Duration = Duration::from_secs(30);

impl<S: LineStore + EventStore> Granter<S> {
    /// Handle a batch of join queue messages (from a Lambda event or a
    /// receive): number the joins, then advance each event once. Events are
    /// independent: one failing gives back (or hands on) its own messages
    /// only.
    #[tracing::instrument(name = "join_messages", skip_all, fields(messages = deliveries.len()))]
    pub async fn handle_deliveries(&self, deliveries: &[Delivery]) -> BatchReport {
        let mut report = BatchReport::default();
        let mut by_event: BTreeMap<EventId, (Vec<&Delivery>, Vec<LineEntry>)> = BTreeMap::new();
        for delivery in deliveries {
            match read_message(&delivery.body) {
                Some((event, carried)) => {
                    let (messages, arrivals) = by_event.entry(event).or_default();
                    messages.push(delivery);
                    arrivals.extend(carried);
                }
                None => {
                    tracing::error!(message_id = %delivery.message_id, "unreadable join queue message");
                    report.unreadable.push(delivery.clone());
                }
            }
        }
        let outcomes = futures::future::join_all(by_event.into_iter().map(
            |(event, (messages, arrivals))| async move {
                // Kept for a hand-on only: a clone shares the session ids.
                let carried = arrivals.clone();
                let outcome = self.handle_event(&event, arrivals).await;
                (event, messages, carried, outcome)
            },
        ))
        .await;
        for (event, messages, carried, outcome) in outcomes {
            let ids = messages.iter().map(|d| d.message_id.clone());
            match outcome {
                Ok(advance) => {
                    report.admitted += advance.admitted;
                    report.handled.extend(ids);
                }
                Err(EventFailure::Held(until)) => {
                    tracing::info!(event = %event, until = %until.to_rfc3339(), messages = messages.len(), "line held for its draw; messages come back then");
                    report.held.extend(ids.map(|id| (id, until)));
                }
                Err(EventFailure::Unadvanced) => {
                    let arrivals = carried.iter().map(|a| arrival_of(&event, a)).collect();
                    report.unadvanced.push(Unadvanced {
                        event,
                        messages: ids.collect(),
                        arrivals,
                    });
                }
                Err(EventFailure::Retry(err)) => {
                    // The event's messages come back after the visibility
                    // timeout; its users keep their places meanwhile, and
                    // the other wake-ups (stream, reconciliation) go on.
                    tracing::warn!(event = %event, error = %err, "join messages not handled; they will be redelivered");
                    report.failed.extend(ids);
                }
            }
        }
        report
    }

    async fn handle_event(
        &self,
        event: &EventId,
        arrivals: Vec<LineEntry>,
    ) -> Result<AdvanceReport, EventFailure> {
        let counters = self.counters(event).await.map_err(EventFailure::Retry)?;
        if let Some(until) = counters.held_until(self.clock.now()) {
            // Nobody is numbered or admitted before the draw is complete.
            return Err(EventFailure::Held(until));
        }
        let known = self
            .number(event, &counters, arrivals)
            .await
            .map_err(|err| match err {
                ServiceError::Held { until } => EventFailure::Held(until),
                err => EventFailure::Retry(err),
            })?;
        // The joins stand behind whatever this instance read of the line in
        // the last half minute: a cached front serves them as it serves a
        // freed slot (reading every shard's front for every batch of joins
        // made a sale's first minutes read the line over and over).
        self.advance(
            event,
            Wake {
                counters: Some(counters),
                known,
                use_cache: true,
            },
        )
        .await
        .map_err(|err| match err {
            // Out of setbacks (other writers on the event, a lagging
            // index): the joins are numbered and in line, and what is left
            // is a wake-up's work.
            ServiceError::Contention => EventFailure::Unadvanced,
            err => EventFailure::Retry(err),
        })
    }

    /// The event's counters, with the default capacity stored on first use.
    async fn counters(&self, event: &EventId) -> Result<EventCounters, ServiceError> {
        let counters = self.store.event_counters(event, self.line_shards).await?;
        self.registered(event, counters).await
    }

    async fn registered(
        &self,
        event: &EventId,
        counters: EventCounters,
    ) -> Result<EventCounters, ServiceError> {
        let counters = self.on_time(event, counters).await?;
        if counters.capacity.is_some() {
            return Ok(counters);
        }
        Ok(self
            .store
            .register_event(event, self.policy.default_capacity, self.line_shards)
            .await?)
    }

    /// Opens a scheduled event whose time has come, closes one whose
    /// closing time has, and answers with the counters after. The write is
    /// conditioned on the state read: of many granters seeing it at once
    /// one makes the change, and the opening's time is `opensAt` whoever
    /// makes it (so `admits_from` is the same for all).
    async fn on_time(
        &self,
        event: &EventId,
        counters: EventCounters,
    ) -> Result<EventCounters, ServiceError> {
        let now = self.clock.now();
        let change = match (counters.opens_at, counters.closes_at) {
            (Some(opens_at), _) if counters.opening_due(now) => StateChange {
                on_time: true,
                ..StateChange::opening(event, &counters, opens_at)
            },
            (_, Some(closes_at)) if counters.closing_due(now) => StateChange {
                on_time: true,
                ..StateChange::plain(event.clone(), counters.state, EventState::Closed, closes_at)
            },
            _ => return Ok(counters),
        };
        if self.store.set_event_state(&change).await? {
            tracing::info!(event = %event, from = %change.from, to = %change.to, "the event's time came");
        }
        Ok(self.store.event_counters(event, self.line_shards).await?)
    }

    /// The event's counters now (after opening or closing it on time).
    pub async fn event_now(&self, event: &EventId) -> Result<EventCounters, ServiceError> {
        let counters = self.store.event_counters(event, self.line_shards).await?;
        self.on_time(event, counters).await
    }

    /// Gives the line of `shard` its tickets in place order (the pre-queue
    /// in draw order, then whoever joined after the opening and is not
    /// numbered yet), a page per write, and marks the shard drawn. Runs
    /// once the draw has settled, before anyone of the shard is numbered
    /// from a join message; tickets given meanwhile at the front (by
    /// `number_before_admitting`, also in place order) are kept. At most
    /// `pages` writes per call: the counter keeps how far it got, and the
    /// next call resumes there. `true` once the shard is drawn.
    async fn draw_shard(
        &self,
        event: &EventId,
        counters: &EventCounters,
        shard: u16,
        pages: usize,
    ) -> Result<bool, ServiceError> {
        for _ in 0..pages {
            let counter = self.ticket_counter(event, shard).await?;
            if counter.drawn {
                return Ok(true);
            }
            let page = match &counter.drawn_through {
                None => self.store.line_front(event, shard, DRAW_PAGE).await?,
                Some(place) => {
                    self.store
                        .line_after(event, shard, place, DRAW_PAGE)
                        .await?
                }
            };
            let reached_end = page.len() < DRAW_PAGE;
            let mut pending: Vec<SessionId> = page
                .iter()
                .filter(|e| e.ticket.is_none())
                .map(|e| e.session_id.clone())
                .collect();
            let mut counter = counter;
            let mut setbacks = 0;
            let applied = loop {
                let mut plan = plan_numbering(
                    event,
                    &counter,
                    &pending,
                    counters.head(shard),
                    self.line_shards,
                );
                plan.completes_draw = reached_end;
                plan.draw_cursor = page.last().map(LineEntry::place);
                match self.store.number_sessions(&plan).await {
                    Ok(WriteOutcome::Applied) => break true,
                    Ok(WriteOutcome::Conflict { rejected }) => {
                        // Numbered at the front meanwhile, gone, or another
                        // granter drew this page: read the counter again.
                        pending.retain(|id| !rejected.contains(id));
                    }
                    Err(StoreError::Contention(_)) => {
                        tokio::time::sleep(contention_pause(setbacks + 1, shard.into())).await;
                    }
                    Err(err) => return Err(err.into()),
                }
                setbacks += 1;
                if setbacks >= SETBACKS_ALLOWED {
                    return Err(ServiceError::Contention);
                }
                counter = self.ticket_counter(event, shard).await?;
                if counter.drawn || counter.drawn_through != plan.counter_seen.drawn_through {
                    // Someone else moved the draw on: continue from there.
                    break false;
                }
            };
            if applied && reached_end {
                tracing::info!(event = %event, shard, "line numbered in draw order");
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Numbers every shard's line in draw order that is not yet, once the
    /// draw has settled, a few pages per shard per call (the shards side
    /// by side) so that admissions never wait long for it; once every
    /// shard is drawn this instance never looks again. So positions come
    /// with the opening, whatever join messages are still held.
    async fn ensure_drawn(
        &self,
        event: &EventId,
        counters: &EventCounters,
    ) -> Result<(), ServiceError> {
        if !counters.has_draw() || self.fronts.is_drawn(event) {
            return Ok(());
        }
        let shards: Vec<u16> = (0..self.line_shards.max(1)).collect();
        let undrawn: Vec<u16> = self
            .store
            .ticket_counters(event, &shards)
            .await?
            .into_iter()
            .filter(|c| !c.drawn)
            .map(|c| c.shard)
            .collect();
        let finished = futures::future::try_join_all(
            undrawn
                .iter()
                .map(|&shard| self.draw_shard(event, counters, shard, DRAW_PAGES_PER_CALL)),
        )
        .await?;
        if finished.iter().all(|done| *done) {
            self.fronts.mark_drawn(event);
        }
        Ok(())
    }

    async fn ticket_counter(
        &self,
        event: &EventId,
        shard: u16,
    ) -> Result<TicketCounter, StoreError> {
        Ok(self
            .store
            .ticket_counters(event, &[shard])
            .await?
            .into_iter()
            .next()
            .unwrap_or_else(|| TicketCounter::empty(shard)))
    }

    /// Give `arrivals` (join messages, in queue order per shard) their
    /// tickets. Returns every arrival, with the tickets given now: all may
    /// be waiting still and the line index may not show them yet. (A
    /// redelivered message of a session admitted meanwhile costs one
    /// rejected write later; an arrival numbered before keeps no ticket here,
    /// which only leaves its shard's head where it is.)
    async fn number(
        &self,
        event: &EventId,
        counters: &EventCounters,
        arrivals: Vec<LineEntry>,
    ) -> Result<Vec<LineEntry>, ServiceError> {
        let mut by_shard: BTreeMap<u16, Vec<LineEntry>> = BTreeMap::new();
        let mut seen: BTreeSet<SessionId> = BTreeSet::new();
        for arrival in arrivals {
            if seen.insert(arrival.session_id.clone()) {
                by_shard.entry(arrival.shard).or_default().push(arrival);
            }
        }
        let mut all = Vec::new();
        for (shard, mut pending) in by_shard {
            let mut setbacks = 0;
            while !pending.is_empty() {
                if setbacks >= SETBACKS_ALLOWED {
                    return Err(ServiceError::Contention);
                }
                let mut counter = self.ticket_counter(event, shard).await?;
                if counters.has_draw() && !counter.drawn {
                    // The draw first; if it takes longer than this batch
                    // may, the batch comes back in a second and goes on.
                    if !self
                        .draw_shard(event, counters, shard, DRAW_PAGES_PER_CALL)
                        .await?
                    {
                        let until = self.clock.now().plus(Duration::from_secs(1));
                        return Err(ServiceError::Held { until });
                    }
                    counter = self.ticket_counter(event, shard).await?;
                }
                let ids: Vec<SessionId> = pending.iter().map(|a| a.session_id.clone()).collect();
                let plan = plan_numbering(
                    event,
                    &counter,
                    &ids,
                    counters.head(shard),
                    self.line_shards,
                );
                match self.store.number_sessions(&plan).await {
                    Ok(WriteOutcome::Applied) => {
                        for (mut arrival, ticket) in pending.drain(..).zip(&plan.tickets) {
                            arrival.ticket = Some(ticket.ticket);
                            all.push(arrival);
                        }
                    }
                    Ok(WriteOutcome::Conflict { rejected }) => {
                        // Numbered before (a redelivery) or gone (undone):
                        // nothing to number for those.
                        setbacks += 1;
                        let (skipped, rest): (Vec<LineEntry>, Vec<LineEntry>) = pending
                            .into_iter()
                            .partition(|a| rejected.contains(&a.session_id));
                        all.extend(skipped);
                        pending = rest;
                    }
                    Err(StoreError::Contention(_)) => {
                        setbacks += 1;
                        tokio::time::sleep(contention_pause(setbacks, shard.into())).await;
                    }
                    Err(err) => return Err(err.into()),
                }
            }
        }
        Ok(all)
    }

    /// Admit from the front of the line while slots are free, skipping the
    /// abandoned; behind a full event, make sure the next freed slot wakes a
    /// granter. A wake-up that cannot finish fails, so that whatever
    /// carries it retries it: no freed slot is forgotten. This is the
    /// driver: each `step` reads and writes, and `Patience` (pure) decides
    /// after each setback whether to pause, read the counters again, or
    /// give up.
    #[tracing::instrument(name = "advance", skip_all, fields(event = %event))]
    pub async fn advance(
        &self,
        event: &EventId,
        wake: Wake,
    ) -> Result<AdvanceReport, ServiceError> {
        let mut state = Advance {
            counters: match wake.counters {
                Some(counters) => self.registered(event, counters).await?,
                None => self.counters(event).await?,
            },
            known: wake.known,
            gone: BTreeSet::new(),
            report: AdvanceReport::default(),
        };
        if let Some(until) = state.counters.held_until(self.clock.now()) {
            if state.counters.state.admits() {
                // Opened, its draw settling: whoever carries this wake-up
                // brings it back then (the stream hands it to the join
                // queue, which holds it until `until`).
                return Err(ServiceError::Held { until });
            }
        } else if state.counters.state.admits() {
            self.ensure_drawn(event, &state.counters).await?;
        }
        let mut patience = Patience::new(wake.use_cache);
        loop {
            if patience.exhausted() {
                // Whoever carries the wake-up retries it (and says so).
                tracing::info!(event = %event, setbacks = patience.setbacks(), replans = patience.replans(), "line advance gave up after repeated setbacks");
                return Err(ServiceError::Contention);
            }
            let outcome = match self.step(event, &mut state, &patience).await? {
                Step::Done => return Ok(state.report),
                Step::Again(outcome) => outcome,
            };
            let retry = patience.after(outcome, state.counters.admitted);
            if let Some(pause) = retry.pause {
                tokio::time::sleep(pause).await;
            }
            if retry.read_counters {
                state.counters = self.counters(event).await?;
            }
        }
    }

    /// One step of an advance: arm the hint behind a full (or held) event, or plan
    /// from the fronts, number who needs it, and write the admission.
    async fn step(
        &self,
        event: &EventId,
        state: &mut Advance,
        patience: &Patience,
    ) -> Result<Step, ServiceError> {
        let counters = &state.counters;
        // A paused event, or one before its draw settles, is full for the
        // line: its free slots wait.
        let free = counters.admittable(self.policy.default_capacity, self.clock.now());
        if free == 0 {
            if state.known.is_empty() || counters.backlog.is_firm() {
                return Ok(Step::Done);
            }
            let armed = self
                .store
                .update_backlog(event, BacklogChange::arm(counters))
                .await?;
            state.report.armed |= armed;
            return Ok(if armed {
                Step::Done
            } else {
                Step::Again(Outcome::ArmRaced)
            });
        }
        let mut views = self.views(event, free, patience.use_cache()).await?;
        for view in &mut views {
            view.entries.retain(|e| !state.gone.contains(&e.session_id));
        }
        let now = self.clock.now();
        let plan = plan_admissions(event, counters, &views, &state.known, &self.policy, now);
        if plan.is_empty() {
            return Ok(if plan.unfinished {
                Step::Again(Outcome::NothingPlaced)
            } else {
                Step::Done
            });
        }
        match self
            .number_before_admitting(event, counters, &plan, &mut state.known, &mut state.gone)
            .await?
        {
            Numbering::NotNeeded => {}
            Numbering::Progress => return Ok(Step::Again(Outcome::Numbered { progress: true })),
            Numbering::NoChange => return Ok(Step::Again(Outcome::Numbered { progress: false })),
        }
        let retain_until = now.plus(self.ended_retention);
        match self.store.admit(&plan, retain_until).await {
            Ok(WriteOutcome::Applied) => {
                tracing::info!(
                    event = %event,
                    admitted = plan.admitted_count(),
                    abandoned = plan.abandoned.len(),
                    armed = plan.arm.is_some(),
                    setbacks = patience.setbacks(),
                    "line advanced"
                );
                record(&mut state.report, &plan);
                self.fronts.passed(event, &plan);
                state.known.retain(|k| !passed(&plan, &k.session_id));
                state.counters = plan.counters_after(counters);
                Ok(if plan.unfinished {
                    Step::Again(Outcome::Admitted)
                } else {
                    Step::Done
                })
            }
            Ok(WriteOutcome::Conflict { rejected }) if !rejected.is_empty() => {
                // Admitted by another granter or gone (they leave the line),
                // or polled since (they stay, and must keep their place):
                // read them again to tell which.
                tracing::debug!(event = %event, ?rejected, "front entries not as read");
                let read = self
                    .read_again(event, &rejected, &mut state.known, &mut state.gone)
                    .await?;
                Ok(Step::Again(Outcome::Rejected {
                    found_gone: read.found_gone,
                }))
            }
            Ok(WriteOutcome::Conflict { .. }) | Err(StoreError::Contention(_)) => {
                Ok(Step::Again(Outcome::Contended))
            }
            Err(err) => Err(err.into()),
        }
    }

    /// A session is admitted with a ticket, so that its shard's head moves
    /// past it. Those the plan would admit without one (joins the stream or
    /// the line index showed before their join message was numbered, say
    /// because the granter holding it crashed, or sessions the lagging
    /// index still shows waiting although another granter admitted them)
    /// are numbered first, and those found gone are added to `gone`.
    async fn number_before_admitting(
        &self,
        event: &EventId,
        counters: &EventCounters,
        plan: &AdmissionPlan,
        known: &mut Vec<LineEntry>,
        gone: &mut BTreeSet<SessionId>,
    ) -> Result<Numbering, ServiceError> {
        let unnumbered: Vec<LineEntry> = plan
            .admitted
            .iter()
            .filter(|a| a.ticket.is_none())
            .map(|a| {
                known
                    .iter()
                    .find(|k| k.session_id == a.session_id)
                    .cloned()
                    .or_else(|| self.fronts.entry(event, &a.session_id))
                    .unwrap_or(LineEntry {
                        session_id: a.session_id.clone(),
                        shard: a.shard,
                        joined_at: plan.now,
                        last_seen_at: plan.now,
                        ticket: None,
                    })
            })
            .collect();
        if unnumbered.is_empty() {
            return Ok(Numbering::NotNeeded);
        }
        let ids: Vec<SessionId> = unnumbered.iter().map(|e| e.session_id.clone()).collect();
        self.number(event, counters, unnumbered).await?;
        // Numbered here or, meanwhile, by the join message: read what they
        // got (and whether they still wait).
        let read = self.read_again(event, &ids, known, gone).await?;
        Ok(if read.numbered || read.found_gone {
            Numbering::Progress
        } else {
            Numbering::NoChange
        })
    }

    /// Reads `ids` again, consistently: those still waiting replace what
    /// `known` and the cached fronts held of them, the others join `gone`.
    async fn read_again(
        &self,
        event: &EventId,
        ids: &[SessionId],
        known: &mut Vec<LineEntry>,
        gone: &mut BTreeSet<SessionId>,
    ) -> Result<ReadAgain, ServiceError> {
        let current = self.store.waiting_among(ids).await?;
        self.fronts.refresh(event, ids, &current);
        let before = gone.len();
        gone.extend(no_longer_waiting(ids, &current));
        let numbered = current.iter().any(|c| c.ticket.is_some());
        known.retain(|k| !ids.contains(&k.session_id));
        known.extend(current);
        Ok(ReadAgain {
            found_gone: gone.len() > before,
            numbered,
        })
    }

    /// The front of every shard, enough of it to fill the free slots and
    /// skip the silent; from this instance's cache when allowed and fresh.
    async fn views(
        &self,
        event: &EventId,
        free: u64,
        use_cache: bool,
    ) -> Result<Vec<ShardView>, ServiceError> {
        // One write admits fewer than a transaction's items: reading more of
        // each shard than that only fills the cache, and makes every wake-up
        // of an event with thousands of free slots read thousands per shard.
        let wanted = usize::try_from(free)
            .unwrap_or(usize::MAX)
            .min(TRANSACTION_ITEM_LIMIT)
            .saturating_add(1);
        let limit = wanted.max(FRONT_READ);
        let cached = if use_cache {
            self.fronts.get(event)
        } else {
            None
        };
        let now = self.clock.now();
        // Every shard read at once: a wake-up waits for one query, not one
        // per shard in turn.
        let reads = (0..self.line_shards.max(1)).map(|shard| {
            let usable = cached
                .as_ref()
                .and_then(|c| c.get(usize::from(shard)))
                .filter(|v| now.since(v.read_at) < FRONT_CACHE_AGE && v.entries.len() >= wanted)
                .cloned();
            async move {
                if let Some(view) = usable {
                    // Whoever joined since the read is not in it: a cached
                    // front serves what it shows, never the claim that
                    // nobody is behind.
                    return Ok(ShardView {
                        complete: false,
                        ..view
                    });
                }
                // Stamped before the read: whoever the read misses joined
                // after this, or is behind the index by less than its
                // allowance.
                let read_at = self.clock.now();
                let entries = self.store.line_front(event, shard, limit).await?;
                Ok::<_, StoreError>(ShardView {
                    shard,
                    complete: entries.len() < limit,
                    entries,
                    read_at,
                })
            }
        });
        let views = futures::future::try_join_all(reads).await?;
        self.fronts.put(event, views.clone());
        Ok(views)
    }
}

/// Reads a join queue message: the event, and the joins it announces (its
/// own, or those a wake-up carries on). `None` for anything no part of the
/// system sends.
fn read_message(body: &str) -> Option<(EventId, Vec<LineEntry>)> {
    match serde_json::from_str::<JoinQueueMessage>(body).ok()? {
        JoinQueueMessage::Joined(arrival) => {
            let entry = entry_of(&arrival)?;
            Some((entry.session_id.event_id(), vec![entry]))
        }
        JoinQueueMessage::Wake(wake) => {
            let event = EventId::parse(&wake.wake_event_id).ok()?;
            let entries = wake
                .arrivals
                .iter()
                .map(|arrival| entry_of(arrival).filter(|e| e.session_id.event_id() == event))
                .collect::<Option<Vec<_>>>()?;
            Some((event, entries))
        }
    }
}

/// The line entry an arrival announces, if it is one of its own event.
fn entry_of(arrival: &Arrival) -> Option<LineEntry> {
    let session_id = SessionId::parse(&arrival.session_id).ok()?;
    if session_id.event_id().as_str() != arrival.event_id {
        return None;
    }
    let joined_at = Timestamp::from_millis(arrival.joined_at);
    Some(LineEntry {
        session_id,
        shard: arrival.shard,
        joined_at,
        last_seen_at: joined_at,
        ticket: None,
    })
}

fn arrival_of(event: &EventId, entry: &LineEntry) -> Arrival {
    Arrival {
        session_id: entry.session_id.to_string(),
        event_id: event.to_string(),
        shard: entry.shard,
        joined_at: entry.joined_at.as_millis(),
    }
}

/// What an advance has so far: the counters as last read or written, the
/// sessions heard of directly, those found no longer waiting, and what it
/// did.
struct Advance {
    counters: EventCounters,
    known: Vec<LineEntry>,
    /// Sessions a consistent read found no longer waiting: the line index
    /// may show them for a while yet (it lags the table), and planning them
    /// again and again would spend the wake-up's patience on them.
    gone: BTreeSet<SessionId>,
    report: AdvanceReport,
}

/// Where a step left an advance.
enum Step {
    Done,
    Again(Outcome),
}

/// How one event's share of a batch failed.
enum EventFailure {
    /// Its line is held for the draw until then: its messages come back.
    Held(Timestamp),
    /// Before its joins were all numbered, or the store failed: its
    /// messages are retried.
    Retry(ServiceError),
    /// Its joins were numbered; only the advance after them gave up under
    /// contention.
    Unadvanced,
}

/// What reading sessions again found.
struct ReadAgain {
    /// Some were no longer waiting.
    found_gone: bool,
    /// Some still waiting have a ticket.
    numbered: bool,
}

/// What numbering the plan's unnumbered sessions came to.
enum Numbering {
    /// The plan admits nobody without a ticket.
    NotNeeded,
    /// Some got a ticket or turned out gone: plan again.
    Progress,
    /// Nothing changed (none could be numbered): a setback.
    NoChange,
}

/// Those of `ids` that a consistent read (`current`) no longer shows
/// waiting. A session never waits again once it has stopped.
fn no_longer_waiting<'a>(
    ids: &'a [SessionId],
    current: &'a [LineEntry],
) -> impl Iterator<Item = SessionId> + 'a {
    ids.iter()
        .filter(|id| !current.iter().any(|c| &c.session_id == *id))
        .cloned()
}

fn passed(plan: &AdmissionPlan, id: &SessionId) -> bool {
    plan.admitted.iter().any(|a| &a.session_id == id)
        || plan.abandoned.iter().any(|a| &a.session_id == id)
}

fn record(report: &mut AdvanceReport, plan: &AdmissionPlan) {
    report.admitted += plan.admitted_count();
    report.abandoned += plan.abandoned.len() as u64;
    report.armed |= plan.arm.is_some();
}

/// Per-instance cache of line fronts, by event. Only a hint: every write is
/// conditioned on the sessions it names, a rejection drops them, and nobody
/// who joined after a cached read is admitted on it. It also remembers the
/// events whose draw this instance saw numbered in every shard (that never
/// changes back).
#[derive(Debug, Default)]
pub struct FrontCache {
    fronts: Mutex<HashMap<EventId, Vec<ShardView>>>,
    drawn: Mutex<HashSet<EventId>>,
}

impl FrontCache {
    fn is_drawn(&self, event: &EventId) -> bool {
        self.drawn.lock().is_ok_and(|drawn| drawn.contains(event))
    }

    fn mark_drawn(&self, event: &EventId) {
        if let Ok(mut drawn) = self.drawn.lock() {
            if drawn.len() > 10_000 {
                drawn.clear();
            }
            drawn.insert(event.clone());
        }
    }

    fn get(&self, event: &EventId) -> Option<Vec<ShardView>> {
        self.fronts.lock().ok()?.get(event).cloned()
    }

    fn put(&self, event: &EventId, views: Vec<ShardView>) {
        if let Ok(mut fronts) = self.fronts.lock() {
            if fronts.len() > 10_000 {
                fronts.clear();
            }
            fronts.insert(event.clone(), views);
        }
    }

    fn forget(&self, event: &EventId, ids: &[SessionId]) {
        let gone: BTreeSet<&SessionId> = ids.iter().collect();
        if let Ok(mut fronts) = self.fronts.lock() {
            for view in fronts.get_mut(event).into_iter().flatten() {
                view.entries.retain(|e| !gone.contains(&e.session_id));
            }
        }
    }

    fn entry(&self, event: &EventId, id: &SessionId) -> Option<LineEntry> {
        let fronts = self.fronts.lock().ok()?;
        fronts
            .get(event)?
            .iter()
            .flat_map(|v| v.entries.iter())
            .find(|e| &e.session_id == id)
            .cloned()
    }

    /// Replace the entries of `ids` with `current` (dropping those no longer
    /// waiting).
    fn refresh(&self, event: &EventId, ids: &[SessionId], current: &[LineEntry]) {
        if let Ok(mut fronts) = self.fronts.lock() {
            for view in fronts.get_mut(event).into_iter().flatten() {
                view.entries.retain(|e| {
                    !ids.contains(&e.session_id)
                        || current.iter().any(|c| c.session_id == e.session_id)
                });
                for entry in &mut view.entries {
                    if let Some(now) = current.iter().find(|c| c.session_id == entry.session_id) {
                        *entry = now.clone();
                    }
                }
            }
        }
    }

    fn passed(&self, event: &EventId, plan: &AdmissionPlan) {
        let ids: Vec<SessionId> = plan
            .admitted
            .iter()
            .map(|a| a.session_id.clone())
            .chain(plan.abandoned.iter().map(|a| a.session_id.clone()))
            .collect();
        self.forget(event, &ids);
    }
}
