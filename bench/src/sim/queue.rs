//! SQS FIFO as the simulator sees it: per-group order, a group blocked while
//! any of its messages is in flight, redelivery after the visibility timeout,
//! deduplication within five minutes, and 300 unbatched sends per second per
//! message group, with the SDK's retries on throttling.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;
use waiting_room::domain::EventId;
use waiting_room::domain::line::message_group_id;
use waiting_room::ports::{Delivery, JoinQueue, JoinTicket, QueueConsumer, QueueError};

use super::quota::GROUP_SENDS_PER_SECOND;
use super::world::{Call, SDK_ATTEMPTS, World};

const VISIBILITY: Duration = Duration::from_secs(60);
const DEDUPLICATION: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
struct Message {
    id: u64,
    body: String,
}

#[derive(Default)]
struct QueueState {
    next_id: u64,
    /// Visible messages per group, in send order.
    groups: BTreeMap<String, VecDeque<Message>>,
    /// Receipt → (group, message, when it becomes visible again).
    in_flight: HashMap<String, (String, Message, Instant)>,
    busy: HashMap<String, usize>,
    sent: HashMap<String, Instant>,
}

pub struct SimQueue {
    state: Mutex<QueueState>,
    world: Arc<World>,
}

impl SimQueue {
    pub fn new(world: Arc<World>) -> Self {
        Self {
            state: Mutex::new(QueueState::default()),
            world,
        }
    }

    fn state(&self) -> MutexGuard<'_, QueueState> {
        match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Messages not yet deleted, visible or in flight.
    pub fn depth(&self) -> usize {
        let state = self.state();
        state.groups.values().map(VecDeque::len).sum::<usize>() + state.in_flight.len()
    }

    fn return_expired(state: &mut QueueState, now: Instant) {
        let expired: Vec<String> = state
            .in_flight
            .iter()
            .filter(|(_, (_, _, visible_at))| *visible_at <= now)
            .map(|(receipt, _)| receipt.clone())
            .collect();
        for receipt in expired {
            if let Some((group, message, _)) = state.in_flight.remove(&receipt) {
                state
                    .groups
                    .entry(group.clone())
                    .or_default()
                    .push_front(message);
                if let Some(busy) = state.busy.get_mut(&group) {
                    *busy = busy.saturating_sub(1);
                }
            }
        }
    }
}

impl JoinQueue for SimQueue {
    async fn send(&self, ticket: &JoinTicket) -> Result<(), QueueError> {
        let event =
            EventId::parse(&ticket.event_id).map_err(|e| QueueError::Rejected(e.to_string()))?;
        let group = message_group_id(&event, ticket.shard);
        let charge = vec![(format!("sqs#{group}"), 1.0, GROUP_SENDS_PER_SECOND)];
        for attempt in 0..SDK_ATTEMPTS {
            self.world.state().counters.sqs_calls += 1;
            if self.world.call(Call::SqsSend, &charge).await {
                let now = Instant::now();
                let mut state = self.state();
                let fresh = state
                    .sent
                    .get(&ticket.session_id)
                    .is_none_or(|at| now.duration_since(*at) > DEDUPLICATION);
                if fresh {
                    state.sent.insert(ticket.session_id.clone(), now);
                    state.next_id += 1;
                    let message = Message {
                        id: state.next_id,
                        body: serde_json::to_string(ticket)
                            .map_err(|e| QueueError::Rejected(e.to_string()))?,
                    };
                    state.groups.entry(group).or_default().push_back(message);
                }
                return Ok(());
            }
            self.world.state().counters.sqs_throttles += 1;
            tokio::time::sleep(self.world.throttle_backoff(attempt)).await;
        }
        Err(QueueError::Unavailable("throttled".into()))
    }
}

impl QueueConsumer for SimQueue {
    async fn receive(
        &self,
        max_messages: i32,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        self.world.state().counters.sqs_calls += 1;
        tokio::time::sleep(self.world.latency(Call::SqsReceive)).await;
        let now = Instant::now();
        let start = self.world.state().rng.next_u64();
        let taken = {
            let mut state = self.state();
            Self::return_expired(&mut state, now);
            let eligible: Vec<String> = state
                .groups
                .iter()
                .filter(|(group, messages)| {
                    !messages.is_empty() && state.busy.get(*group).copied().unwrap_or(0) == 0
                })
                .map(|(group, _)| group.clone())
                .collect();
            let mut taken = Vec::new();
            let max = usize::try_from(max_messages).unwrap_or(10);
            // As SQS does: as many as possible from one group, starting at
            // a group of its choosing.
            for offset in 0..eligible.len() {
                if taken.len() >= max {
                    break;
                }
                let group = &eligible[(start as usize + offset) % eligible.len()];
                while taken.len() < max {
                    let Some(message) = state.groups.get_mut(group).and_then(VecDeque::pop_front)
                    else {
                        break;
                    };
                    let receipt = format!("{}-{}", message.id, now.elapsed().as_nanos());
                    *state.busy.entry(group.clone()).or_default() += 1;
                    state.in_flight.insert(
                        receipt.clone(),
                        (group.clone(), message.clone(), now + VISIBILITY),
                    );
                    taken.push(Delivery {
                        message_id: message.id.to_string(),
                        receipt_handle: receipt,
                        body: message.body,
                    });
                }
            }
            taken
        };
        if taken.is_empty() {
            tokio::time::sleep(wait.min(Duration::from_millis(20))).await;
        }
        Ok(taken)
    }

    async fn delete(&self, deliveries: &[Delivery]) -> Result<(), QueueError> {
        if deliveries.is_empty() {
            return Ok(());
        }
        self.world.state().counters.sqs_calls += 1;
        tokio::time::sleep(self.world.latency(Call::SqsDelete)).await;
        let mut state = self.state();
        for delivery in deliveries {
            if let Some((group, _, _)) = state.in_flight.remove(&delivery.receipt_handle) {
                if let Some(busy) = state.busy.get_mut(&group) {
                    *busy = busy.saturating_sub(1);
                }
            }
        }
        Ok(())
    }
}
