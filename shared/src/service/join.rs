//! Join: take a place in line (store a `WAITING` session, stamped with its
//! join time) and send its join message.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::domain::draw::draw;
use crate::domain::line::{JOIN_WRITE_WINDOW, shard_for};
use crate::domain::puzzle::{self, PuzzleError, Solution};
use crate::domain::signed_join::{JoinKeys, JoinSignature, SignatureError};
use crate::domain::{
    Clock, EventCounters, EventId, IdempotencyKey, Session, SessionId, SessionStatus, Timestamp,
    UserId,
};
use crate::ports::{
    Arrival, Claim, Discard, EventStore, IdSource, JoinQueue, PuzzleLedger, SessionStore,
};

use super::cache::TtlCache;
use super::{JoinRefusal, MAX_ATTEMPTS, ServiceError};

/// A claim outlives any session it can point to; when it expires DynamoDB
/// deletes it and the next join starts afresh.
const CLAIM_LIFETIME: Duration = Duration::from_secs(7 * 86_400);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinOutcome {
    Created(Session),
    /// The same join again (same idempotency key), its first answer lost:
    /// same session, same place.
    Existing(Session),
}

impl JoinOutcome {
    pub fn session(&self) -> &Session {
        match self {
            Self::Created(s) | Self::Existing(s) => s,
        }
    }
}

pub struct JoinService<S, Q> {
    pub store: S,
    pub queue: Q,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn IdSource>,
    pub line_shards: u16,
    /// Events this instance has listed for the reconciliation already.
    pub listed: ListedEvents,
    /// Events' states as this instance last read them.
    pub states: KnownStates,
    /// The deployment's keys for signed joins (none: a signed event's
    /// joins fail as the operator's error, `Internal`, and alarm).
    pub join_keys: JoinKeys,
}

/// What a join may carry besides the user: the ticketing site's signature
/// and a solved puzzle, for events that ask for them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JoinProof {
    pub signature: Option<JoinSignature>,
    pub puzzle: Option<Solution>,
}

/// How stale an instance's copy of an event's state may be: a close
/// reaches every join within this, without a read of the event's (hot)
/// item per join.
pub const STATE_READ_EVERY: Duration = Duration::from_secs(1);

/// Each event's counters (its state, opening and closing times, draw seed)
/// as this instance last read them, for `STATE_READ_EVERY`.
#[derive(Debug)]
pub struct KnownStates(TtlCache<EventId, EventCounters>);

impl Default for KnownStates {
    fn default() -> Self {
        Self(TtlCache::new(STATE_READ_EVERY))
    }
}

/// Events an instance has listed (put in the event index the
/// reconciliation walks), so each instance writes that once per event, not
/// once per join.
#[derive(Debug, Default)]
pub struct ListedEvents(Mutex<HashSet<EventId>>);

impl ListedEvents {
    fn contains(&self, event: &EventId) -> bool {
        self.0.lock().is_ok_and(|listed| listed.contains(event))
    }

    fn insert(&self, event: EventId) {
        if let Ok(mut listed) = self.0.lock() {
            if listed.len() > 10_000 {
                listed.clear();
            }
            listed.insert(event);
        }
    }
}

impl<S: SessionStore + EventStore + PuzzleLedger, Q: JoinQueue> JoinService<S, Q> {
    /// A join with nothing but the user (events that ask for a signature
    /// or a puzzle refuse it).
    pub async fn join(
        &self,
        event: EventId,
        user: UserId,
        key: Option<IdempotencyKey>,
    ) -> Result<JoinOutcome, ServiceError> {
        self.join_with(event, user, key, &JoinProof::default())
            .await
    }

    /// Take a place in line for `user`, or, for a retry of the join that
    /// took it (the same `key`), answer with that place again. A user with a
    /// live place and any other key (or none) is refused and learns nothing
    /// about it: knowing a user id must not open someone's session. A join
    /// the ticketing site signed proves who the user is, so it gets the
    /// user's own live place back whatever its key (a fan who cleared
    /// their browser keeps their place).
    pub async fn join_with(
        &self,
        event: EventId,
        user: UserId,
        key: Option<IdempotencyKey>,
        proof: &JoinProof,
    ) -> Result<JoinOutcome, ServiceError> {
        let doors = self.doors_of(&event).await?;
        let stamped = self.clock.now();
        if !doors.state.takes_joins() || doors.closes_at.is_some_and(|at| at <= stamped) {
            return Err(ServiceError::EventClosed);
        }
        let signed = self.check_signature(&event, &user, &doors, proof)?;
        let random = self
            .ids
            .random_id()
            .ok_or_else(|| ServiceError::Unavailable("no randomness for a session id".into()))?;
        // A client that sent no key still gets one to come back with, should
        // this answer be unable to say whether the place was taken.
        let key = key.unwrap_or_else(|| IdempotencyKey::generated(random));
        self.spend_puzzle(&event, &user, &doors, proof, &key)
            .await?;
        let id = SessionId::new(&event, random);
        let shard = shard_for(&id, self.line_shards);
        let now = self.clock.now();
        let mut session = Session::new_waiting(id, user, shard, now);
        session.idempotency_key = Some(key.digest());
        if doors.pre_queue_at(now) {
            session.draw = doors.draw_seed.map(|seed| draw(seed, &session.id));
        }
        let claim_ttl = now.plus(CLAIM_LIFETIME);
        // The place is the join time: written later than the window, it
        // would be older than anything a granter could have seen.
        let deadline = now.plus(JOIN_WRITE_WINDOW);
        let unconfirmed = |detail: String| ServiceError::JoinUnconfirmed {
            key: key.clone(),
            detail,
        };

        let mut replacing: Option<SessionId> = None;
        for _ in 0..MAX_ATTEMPTS {
            let left = deadline.since(self.clock.now());
            if left.is_zero() {
                break;
            }
            let write = self
                .store
                .create_session(&session, replacing.as_ref(), claim_ttl);
            // From here on a failure cannot tell whether the write landed.
            let claim = match tokio::time::timeout(left, write).await {
                Ok(Ok(claim)) => claim,
                Ok(Err(err)) => return Err(unconfirmed(err.to_string())),
                Err(_) => return Err(unconfirmed("the join write timed out".into())),
            };
            match claim {
                Claim::Created => {
                    self.list_event(&session.event_id).await;
                    return self.send_new(session, &key).await;
                }
                Claim::Vacant => replacing = None,
                Claim::Blocked => return Err(ServiceError::Blocked),
                Claim::HeldBy(holder) => {
                    let existing = self
                        .store
                        .get_session(&holder)
                        .await
                        .map_err(|err| unconfirmed(err.to_string()))?;
                    match existing {
                        Some(existing) if existing.is_live() => {
                            if existing.idempotency_key != session.idempotency_key && !signed {
                                return Err(ServiceError::AlreadyJoined);
                            }
                            self.resend_if_unnumbered(&existing)
                                .await
                                .map_err(|err| unconfirmed(err.to_string()))?;
                            return Ok(JoinOutcome::Existing(existing));
                        }
                        // Ended (or already deleted): the claim is free to take.
                        _ => replacing = Some(holder),
                    }
                }
            }
        }
        // Every write was refused (the claim kept changing hands) or time
        // ran out between them: nothing of this join is stored.
        Err(ServiceError::Contention)
    }

    /// Whether the join carries a valid signature of the ticketing site.
    /// An event that asks for one refuses a join without it; a signature
    /// that is there must be valid wherever it is sent.
    fn check_signature(
        &self,
        event: &EventId,
        user: &UserId,
        doors: &EventCounters,
        proof: &JoinProof,
    ) -> Result<bool, ServiceError> {
        if !doors.signed_joins && proof.signature.is_none() {
            return Ok(false);
        }
        match self
            .join_keys
            .verify(event, user, proof.signature.as_ref(), self.clock.now())
        {
            Ok(()) => Ok(true),
            // The operator turned signed joins on where no key is set: no
            // fan can fix that, so it is an error that alarms, not a 403.
            Err(SignatureError::NoKey) if doors.signed_joins => Err(ServiceError::Internal(
                format!("event {event} takes signed joins only, but JOIN_SIGNING_KEYS is empty"),
            )),
            Err(refusal) => Err(ServiceError::JoinRefused(refusal.into())),
        }
    }

    /// An event under a puzzle takes a join only with a fresh solution for
    /// this user that no other join used; it is spent before the place is
    /// taken, in the name of this join's key, so a retry of the same join
    /// (same key, same solution) goes on to find or take its place.
    async fn spend_puzzle(
        &self,
        event: &EventId,
        user: &UserId,
        doors: &EventCounters,
        proof: &JoinProof,
        key: &IdempotencyKey,
    ) -> Result<(), ServiceError> {
        if doors.puzzle_difficulty == 0 {
            return Ok(());
        }
        let refused = |why: PuzzleError| ServiceError::JoinRefused(JoinRefusal::Puzzle(why));
        let digest = puzzle::check(
            event,
            user,
            proof.puzzle,
            doors.puzzle_difficulty,
            self.clock.now(),
        )
        .map_err(refused)?;
        let until = proof.puzzle.map_or(self.clock.now(), puzzle::spent_until);
        if self.store.spend(&digest, &key.digest(), until).await? {
            Ok(())
        } else {
            Err(refused(PuzzleError::Reused))
        }
    }

    /// The event as this instance last read it (at most `STATE_READ_EVERY`
    /// old), for the waiting page's form.
    pub async fn event(&self, event: &EventId) -> Result<EventCounters, ServiceError> {
        self.doors_of(event).await
    }

    /// For a session just placed in a pre-queue: when its event opens (from
    /// this instance's copy of the event, which the join has just read).
    pub fn opens_at_for(&self, session: &Session) -> Option<Timestamp> {
        if session.draw.is_none() || session.status() != SessionStatus::Waiting {
            return None;
        }
        self.states
            .0
            .get(&session.event_id, self.clock.now())?
            .scheduled_opening()
    }

    /// The event's counters, at most `STATE_READ_EVERY` old (counted from
    /// before the read). If they cannot be read the join is refused as
    /// unavailable, nothing stored: taking it anyway would let a closed
    /// event take places (the explorer's seed 196 did).
    async fn doors_of(&self, event: &EventId) -> Result<EventCounters, ServiceError> {
        let now = self.clock.now();
        if let Some(counters) = self.states.0.get(event, now) {
            return Ok(counters);
        }
        let counters = self.store.event_counters(event, self.line_shards).await?;
        self.states.0.put(event.clone(), counters.clone(), now);
        Ok(counters)
    }

    /// The first join of an event (per instance) lists it, so that the
    /// reconciliation finds its line even if every wake-up of it were lost.
    /// Best effort: the granter lists it too.
    async fn list_event(&self, event: &EventId) {
        if self.listed.contains(event) {
            return;
        }
        match self.store.list_event(event).await {
            Ok(_) => self.listed.insert(event.clone()),
            Err(err) => {
                tracing::warn!(event = %event, error = %err, "could not list the event; the granter will")
            }
        }
    }

    /// Send the join message; if that fails, take the session back so the
    /// user is not left holding a place they were told they do not have.
    async fn send_new(
        &self,
        session: Session,
        key: &IdempotencyKey,
    ) -> Result<JoinOutcome, ServiceError> {
        let Err(send_error) = self.queue.send(&Arrival::for_session(&session)).await else {
            return Ok(JoinOutcome::Created(session));
        };
        tracing::warn!(session = %session.id, error = %send_error, "join message not sent; undoing the join");
        match self.store.discard(&session).await {
            Ok(Discard::Discarded) => Err(send_error.into()),
            // The table stream woke a granter that admitted it meanwhile.
            Ok(Discard::NoLongerWaiting) => Ok(JoinOutcome::Created(session)),
            Err(discard_error) => {
                // The session stays in line: the stream and the
                // reconciliation still admit it, and the user's retry finds
                // it (same place) and sends the message again.
                tracing::error!(session = %session.id, error = %discard_error, "could not undo the join");
                Err(ServiceError::JoinUnconfirmed {
                    key: key.clone(),
                    detail: send_error.to_string(),
                })
            }
        }
    }

    /// A retried join of a session whose message may never have reached the
    /// queue sends it now. SQS drops the duplicate when the first did arrive.
    async fn resend_if_unnumbered(&self, session: &Session) -> Result<(), ServiceError> {
        if session.status() == SessionStatus::Waiting && session.ticket.is_none() {
            self.queue.send(&Arrival::for_session(session)).await?;
        }
        Ok(())
    }
}
