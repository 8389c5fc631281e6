//! SQS FIFO as the simulator sees it: per-group order, a group blocked while
//! any of its messages is in flight, redelivery after the visibility timeout
//! (in order, at the front of the group), receive counts and the dead-letter
//! queue, deduplication per message group within five minutes, and 300
//! unbatched sends per second per message group, with the SDK's retries on
//! throttling. Join messages go to `<event>#<shard>`, the granter's wake-ups
//! to `<event>#wake`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;
use waiting_room::domain::EventId;
use waiting_room::domain::line::wake_group_id;
use waiting_room::ports::{
    Arrival, Delivery, JoinQueue, JoinQueueMessage, QueueConsumer, QueueError, Redelivery,
    WakeQueue, WakeUp,
};

use super::quota::GROUP_SENDS_PER_SECOND;
use super::world::{Call, SDK_ATTEMPTS, World};

/// The join queue's settings (infra/template.yaml).
pub const VISIBILITY: Duration = Duration::from_secs(60);
const DEDUPLICATION: Duration = Duration::from_secs(300);
const MAX_RECEIVE_COUNT: u32 = 100;

#[derive(Debug, Clone)]
struct Message {
    id: u64,
    group: String,
    body: String,
    receives: u32,
}

#[derive(Default)]
struct QueueState {
    next_id: u64,
    next_receipt: u64,
    /// Visible messages per group, in send order.
    groups: BTreeMap<String, VecDeque<Message>>,
    /// Receipt → (message, when it becomes visible again).
    in_flight: BTreeMap<String, (Message, Instant)>,
    /// Messages in flight per group (a group with any is blocked).
    busy: BTreeMap<String, usize>,
    /// Deduplication ids per group, when sent, and the same in send order
    /// to forget them after the window.
    sent: BTreeMap<(String, String), Instant>,
    sent_order: VecDeque<(Instant, (String, String))>,
    dead_letters: u64,
}

impl QueueState {
    fn return_expired(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .in_flight
            .iter()
            .filter(|(_, (_, visible_at))| *visible_at <= now)
            .map(|(receipt, _)| receipt.clone())
            .collect();
        let mut back: Vec<Message> = expired
            .iter()
            .filter_map(|receipt| self.in_flight.remove(receipt))
            .map(|(message, _)| message)
            .collect();
        // Back at the front of their groups, in their original order.
        back.sort_by_key(|m| std::cmp::Reverse(m.id));
        for message in back {
            if let Some(busy) = self.busy.get_mut(&message.group) {
                *busy = busy.saturating_sub(1);
            }
            self.groups
                .entry(message.group.clone())
                .or_default()
                .push_front(message);
        }
    }

    fn forget_old_sends(&mut self, now: Instant) {
        while let Some((at, _)) = self.sent_order.front() {
            if now.duration_since(*at) <= DEDUPLICATION {
                break;
            }
            if let Some((at, key)) = self.sent_order.pop_front() {
                if self.sent.get(&key) == Some(&at) {
                    self.sent.remove(&key);
                }
            }
        }
    }
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

    pub fn dead_letters(&self) -> u64 {
        self.state().dead_letters
    }

    async fn send_message(
        &self,
        group: String,
        deduplication_id: String,
        body: &JoinQueueMessage,
    ) -> Result<(), QueueError> {
        let body = serde_json::to_string(body).map_err(|e| QueueError::Rejected(e.to_string()))?;
        let charge = vec![(format!("sqs#{group}"), 1.0, GROUP_SENDS_PER_SECOND)];
        for attempt in 0..SDK_ATTEMPTS {
            self.world.state().counters.sqs_calls += 1;
            if self.world.call(Call::SqsSend, &charge).await {
                let now = Instant::now();
                let mut state = self.state();
                state.forget_old_sends(now);
                let key = (group.clone(), deduplication_id);
                let fresh = state
                    .sent
                    .get(&key)
                    .is_none_or(|at| now.duration_since(*at) > DEDUPLICATION);
                if fresh {
                    state.sent.insert(key.clone(), now);
                    state.sent_order.push_back((now, key));
                    state.next_id += 1;
                    let message = Message {
                        id: state.next_id,
                        group: group.clone(),
                        body,
                        receives: 0,
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

impl JoinQueue for SimQueue {
    async fn send(&self, arrival: &Arrival) -> Result<(), QueueError> {
        let event =
            EventId::parse(&arrival.event_id).map_err(|e| QueueError::Rejected(e.to_string()))?;
        self.send_message(
            arrival.message_group(&event),
            arrival.session_id.clone(),
            &JoinQueueMessage::Joined(arrival.clone()),
        )
        .await
    }
}

impl WakeQueue for SimQueue {
    async fn wake(
        &self,
        event: &EventId,
        arrivals: &[Arrival],
        deduplication_id: &str,
    ) -> Result<(), QueueError> {
        self.send_message(
            wake_group_id(event),
            deduplication_id.chars().take(128).collect(),
            &JoinQueueMessage::Wake(WakeUp {
                wake_event_id: event.to_string(),
                arrivals: arrivals.to_vec(),
            }),
        )
        .await
    }
}

impl Redelivery for SimQueue {
    async fn redeliver_after(
        &self,
        deliveries: &[Delivery],
        pause: Duration,
    ) -> Result<(), QueueError> {
        self.world.state().counters.sqs_calls += 1;
        tokio::time::sleep(self.world.latency(Call::SqsDelete)).await;
        let back_at = Instant::now() + pause;
        let mut state = self.state();
        for delivery in deliveries {
            if let Some((_, visible_at)) = state.in_flight.get_mut(&delivery.receipt_handle) {
                *visible_at = back_at;
            }
        }
        Ok(())
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
        let (taken, dead) = {
            let mut state = self.state();
            state.return_expired(now);
            let eligible: Vec<String> = state
                .groups
                .iter()
                .filter(|(group, messages)| {
                    !messages.is_empty() && state.busy.get(*group).copied().unwrap_or(0) == 0
                })
                .map(|(group, _)| group.clone())
                .collect();
            let mut taken = Vec::new();
            let mut dead = 0;
            let max = usize::try_from(max_messages).unwrap_or(10).clamp(1, 10);
            // As SQS does: as many as possible from one group, starting at
            // a group of its choosing.
            for offset in 0..eligible.len() {
                if taken.len() >= max {
                    break;
                }
                let group = &eligible[(start as usize).wrapping_add(offset) % eligible.len()];
                while taken.len() < max {
                    let Some(mut message) =
                        state.groups.get_mut(group).and_then(VecDeque::pop_front)
                    else {
                        break;
                    };
                    if message.receives >= MAX_RECEIVE_COUNT {
                        // The redrive policy moves it to the dead-letter queue.
                        state.dead_letters += 1;
                        dead += 1;
                        continue;
                    }
                    message.receives += 1;
                    state.next_receipt += 1;
                    let receipt = format!("{}-{}", message.id, state.next_receipt);
                    *state.busy.entry(group.clone()).or_default() += 1;
                    taken.push(Delivery {
                        message_id: message.id.to_string(),
                        receipt_handle: receipt.clone(),
                        body: message.body.clone(),
                        receive_count: message.receives,
                    });
                    state.in_flight.insert(receipt, (message, now + VISIBILITY));
                }
            }
            (taken, dead)
        };
        if dead > 0 {
            self.world.state().counters.dead_letters += dead;
        }
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
            if let Some((message, _)) = state.in_flight.remove(&delivery.receipt_handle) {
                if let Some(busy) = state.busy.get_mut(&message.group) {
                    *busy = busy.saturating_sub(1);
                }
            }
        }
        Ok(())
    }
}
