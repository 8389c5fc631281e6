//! The line's items: event counters (and the backlog hint and heads on
//! them), ticket counters, shard heads, the line index and the event index.

use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValue, TransactWriteItem};

use super::items::{
    decode_counters, decode_line_entry, decode_session, decode_ticket_counter, entry_of_session, n,
    names_in, number_list, s, state_change_item, ttl_value,
};
use super::request::{
    TransactResult, Write, built, classify, codes, failed_condition, rejected_ids,
};
use super::{DynamoStore, layout};
use crate::domain::admission::{AdmissionPlan, Arm, BacklogChange, NumberingPlan};
use crate::domain::session::expiry_bucket;
use crate::domain::{
    EndReason, EventCounters, EventId, EventState, LineEntry, Place, SessionId, SessionStatus,
    StateChange, TicketCounter, Timestamp,
};
use crate::ports::{EventSettings, EventStore, LineStore, StoreError, WriteOutcome};

const WAITING: &str = "WAITING";
const ACTIVE: &str = "ACTIVE";

impl DynamoStore {
    pub(super) async fn read_counters(
        &self,
        event: &EventId,
        shard_count: u16,
    ) -> Result<EventCounters, StoreError> {
        decode_counters(
            self.get(layout::event_key(event)).await?.as_ref(),
            shard_count,
        )
    }

    pub(super) async fn register(
        &self,
        event: &EventId,
        default_capacity: u32,
        shard_count: u16,
    ) -> Result<EventCounters, StoreError> {
        let update = "SET #capacity = if_not_exists(#capacity, :capacity), #eventId = :event, #listing = :listing";
        let output = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key(layout::event_key(event))))
            .update_expression(update)
            .set_expression_attribute_names(Some(names_in(&[update])))
            .expression_attribute_values(":capacity", n(default_capacity))
            .expression_attribute_values(":event", s(event.as_str()))
            .expression_attribute_values(":listing", s(layout::EVENT_LISTING))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| classify(&e))?;
        decode_counters(output.attributes(), shard_count)
    }

    pub(super) async fn store_capacity(
        &self,
        event: &EventId,
        capacity: u32,
    ) -> Result<(), StoreError> {
        self.update(
            Write::new(
                layout::event_key(event),
                "SET #capacity = :capacity, #eventId = :event, #listing = :listing",
            )
            .value(":capacity", n(capacity))
            .value(":event", s(event.as_str()))
            .value(":listing", s(layout::EVENT_LISTING)),
        )
        .await
        .map(drop)
    }

    pub(super) async fn change_state(&self, change: &StateChange) -> Result<bool, StoreError> {
        let StateChange {
            event_id: event,
            from,
            to,
            at,
            ..
        } = change;
        let mut sets = vec![
            "#eventState = :to",
            "#stateChangedAt = :at",
            "#eventId = :event",
            "#listing = :listing",
        ];
        let mut write = Write::new(layout::event_key(event), "")
            .value(":to", s(to.as_str()))
            .value(":at", n(at.as_millis()))
            .value(":event", s(event.as_str()))
            .value(":listing", s(layout::EVENT_LISTING))
            .value(":from", s(from.as_str()));
        if let Some(opens_at) = change.opens_at {
            sets.push("#opensAt = :opensAt");
            write = write.value(":opensAt", n(opens_at.as_millis()));
        }
        if let (EventState::Scheduled, Some(seed)) = (to, change.seed) {
            // A new opening time keeps the seed drawn first.
            sets.push("#drawSeed = if_not_exists(#drawSeed, :seed)");
            write = write.value(":seed", n(seed));
        }
        if let Some(admits_from) = change.admits_from {
            sets.push("#admitsFrom = :admitsFrom");
            write = write.value(":admitsFrom", n(admits_from.as_millis()));
        }
        let mut update = format!("SET {}", sets.join(", "));
        if change.arms() {
            update.push_str(", #lineBacklog = :armed REMOVE #backlogEmptySince");
            write = write.value(":armed", n(1));
        }
        let write = Write { update, ..write };
        // Open is also an event nobody controlled (no state stored). Only
        // an event that never took a join can be scheduled: a pre-queue
        // would go ahead of the people already in its line.
        let state = match (from, to) {
            // Never opened (no seed) and never joined.
            (EventState::Open, EventState::Scheduled) => {
                "attribute_not_exists(#tookJoins) AND attribute_not_exists(#drawSeed) AND (attribute_not_exists(#eventState) OR #eventState = :from)"
            }
            (EventState::Open, _) => "(attribute_not_exists(#eventState) OR #eventState = :from)",
            _ => "#eventState = :from",
        };
        let write = match (change.on_time, to) {
            (true, EventState::Open) => write.when(format!("{state} AND #opensAt = :at")),
            (true, EventState::Closed) => write.when(format!("{state} AND #closesAt = :at")),
            _ => write.when(state),
        };
        // The change and its record are one write: the stream carries the
        // record to the publisher, whatever crashes after.
        let record = built(
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(state_change_item(change)))
                // Never overwrite a record: its stream record would be a
                // MODIFY, which the publisher does not hear.
                .condition_expression("attribute_not_exists(#pk)")
                .set_expression_attribute_names(Some(names_in(&["#pk"])))
                .build(),
        )?;
        let writes = vec![
            self.transact_update(write)?,
            TransactWriteItem::builder().put(record).build(),
        ];
        match self.transact(writes).await? {
            TransactResult::Applied => Ok(true),
            TransactResult::Cancelled(reasons) if failed_condition(reasons.first()) => Ok(false),
            TransactResult::Cancelled(reasons) => Err(StoreError::Unavailable(format!(
                "state change cancelled: {}",
                codes(&reasons)
            ))),
        }
    }

    pub(super) async fn listed_events(&self) -> Result<Vec<EventId>, StoreError> {
        let condition = "#listing = :listing";
        let mut events = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(layout::EVENT_INDEX)
                .key_condition_expression(condition)
                .set_expression_attribute_names(Some(names_in(&[condition])))
                .expression_attribute_values(":listing", s(layout::EVENT_LISTING))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| classify(&e))?;
            for item in page.items() {
                let raw = super::items::get_str(item, layout::EVENT_INDEX_SORT)?;
                events.push(
                    EventId::parse(raw)
                        .map_err(|_| StoreError::Corrupt(format!("bad eventId {raw}")))?,
                );
            }
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(events);
            }
        }
    }

    pub(super) async fn front(
        &self,
        event: &EventId,
        shard: u16,
        after: Option<&Place>,
        limit: usize,
    ) -> Result<Vec<LineEntry>, StoreError> {
        let condition = if after.is_some() {
            "#lineKey = :line AND #place > :after"
        } else {
            "#lineKey = :line"
        };
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(layout::LINE_INDEX)
            .key_condition_expression(condition)
            .set_expression_attribute_names(Some(names_in(&[condition])))
            .expression_attribute_values(":line", s(layout::line_index_key(event, shard)));
        if let Some(after) = after {
            query = query.expression_attribute_values(":after", s(layout::place_value(after)));
        }
        let output = query
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| classify(&e))?;
        output.items().iter().map(decode_line_entry).collect()
    }

    pub(super) async fn head(&self, event: &EventId, shard: u16) -> Result<u64, StoreError> {
        let item = self.get(layout::head_key(event, shard)).await?;
        Ok(item
            .as_ref()
            .map(|item| super::items::opt_num::<u64>(item, "head"))
            .transpose()?
            .flatten()
            .unwrap_or(0))
    }

    pub(super) async fn read_ticket_counters(
        &self,
        event: &EventId,
        shards: &[u16],
    ) -> Result<Vec<TicketCounter>, StoreError> {
        let keys = shards
            .iter()
            .map(|&shard| layout::line_key(event, shard))
            .collect();
        let found = self.batch_get(keys).await?;
        shards
            .iter()
            .map(|&shard| decode_ticket_counter(shard, found.get(&layout::line_key(event, shard))))
            .collect()
    }

    pub(super) async fn number(&self, plan: &NumberingPlan) -> Result<WriteOutcome, StoreError> {
        let mut writes = Vec::with_capacity(plan.tickets.len() + 1);
        // Sessions first, so a cancellation reason's index is the session's.
        for numbered in &plan.tickets {
            writes.push(
                self.transact_update(
                    Write::new(
                        layout::session_key(&numbered.session_id),
                        "SET #ticket = :ticket, #aheadAtFiling = :ahead",
                    )
                    .when("attribute_exists(#pk) AND attribute_not_exists(#ticket)")
                    .value(":ticket", n(numbered.ticket))
                    .value(":ahead", n(numbered.ahead)),
                )?,
            );
        }
        let mut update = "SET #nextTicket = :next, #eventId = :event, #shard = :shard".to_owned();
        if plan.completes_draw {
            update.push_str(", #drawn = :drawn");
        }
        if plan.draw_cursor.is_some() {
            update.push_str(", #drawnThrough = :drawnThrough");
        }
        let mut counter = Write::new(layout::line_key(&plan.event_id, plan.shard), update)
            .value(":next", n(plan.next_ticket()))
            .value(":event", s(plan.event_id.as_str()))
            .value(":shard", n(plan.shard));
        if plan.completes_draw {
            counter = counter.value(":drawn", n(1));
        }
        if let Some(cursor) = &plan.draw_cursor {
            counter = counter.value(":drawnThrough", s(layout::place_value(cursor)));
        }
        // The item may exist without a ticket handed out yet (a leave counted
        // there first): "none yet" is zero either way.
        let counter = if plan.counter_seen.next_ticket == 0 {
            counter.when("attribute_not_exists(#nextTicket) OR #nextTicket = :nextSeen")
        } else {
            counter.when("#nextTicket = :nextSeen")
        }
        .value(":nextSeen", n(plan.counter_seen.next_ticket));
        writes.push(self.transact_update(counter)?);
        match self.transact(writes).await? {
            TransactResult::Applied => Ok(WriteOutcome::Applied),
            TransactResult::Cancelled(reasons) => {
                let ids: Vec<&SessionId> = plan.tickets.iter().map(|t| &t.session_id).collect();
                Ok(WriteOutcome::Conflict {
                    rejected: rejected_ids(&ids, &reasons),
                })
            }
        }
    }

    pub(super) async fn admit_plan(
        &self,
        plan: &AdmissionPlan,
        retain_until: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        let mut writes = Vec::new();
        let mut ids: Vec<&SessionId> = Vec::new();
        // Sessions first, so a cancellation reason's index is the session's.
        for admit in &plan.admitted {
            ids.push(&admit.session_id);
            writes.push(self.transact_update(
                Write::new(
                    layout::session_key(&admit.session_id),
                    "SET #status = :active, #admittedAt = :now, #admissionNo = :no, #expiresAt = :expires, #expiryBucket = :bucket REMOVE #lineKey, #place",
                )
                .when("#status = :waiting")
                .value(":waiting", s(WAITING))
                .value(":active", s(ACTIVE))
                .value(":now", n(plan.now.as_millis()))
                .value(":no", n(admit.admission_no))
                .value(":expires", n(admit.expires_at.as_millis()))
                // Active sessions join the expiry index the sweeper reads.
                .value(":bucket", s(expiry_bucket(&admit.session_id).to_string())),
            )?);
        }
        for abandon in &plan.abandoned {
            ids.push(&abandon.session_id);
            writes.push(self.transact_update(
                Write::new(
                    layout::session_key(&abandon.session_id),
                    "SET #status = :expired, #endedAt = :now, #endReason = :abandoned, #ttl = :ttl REMOVE #lineKey, #place",
                )
                .when("#status = :waiting AND #lastSeenAt <= :silent")
                .value(":waiting", s(WAITING))
                .value(":expired", s(SessionStatus::Expired.as_str()))
                .value(":now", n(plan.now.as_millis()))
                .value(":abandoned", s(EndReason::Abandoned.as_str()))
                .value(":ttl", ttl_value(retain_until))
                .value(":silent", n(abandon.silent_since.as_millis())),
            )?);
        }
        for moved in &plan.heads {
            // Only admitting writes move heads, and those are serialised by
            // the event item's condition: no condition needed here.
            writes.push(
                self.transact_update(
                    Write::new(
                        layout::head_key(&plan.event_id, moved.shard),
                        "SET #head = :head, #eventId = :event, #shard = :shard",
                    )
                    .value(":head", n(moved.head))
                    .value(":event", s(plan.event_id.as_str()))
                    .value(":shard", n(moved.shard)),
                )?,
            );
        }
        if let Some(event) = event_write(plan) {
            writes.push(self.transact_update(event)?);
        }
        if writes.is_empty() {
            return Ok(WriteOutcome::Applied);
        }
        match self.transact(writes).await? {
            TransactResult::Applied => Ok(WriteOutcome::Applied),
            TransactResult::Cancelled(reasons) => Ok(WriteOutcome::Conflict {
                rejected: rejected_ids(&ids, &reasons),
            }),
        }
    }

    pub(super) async fn change_backlog(
        &self,
        event: &EventId,
        change: BacklogChange,
    ) -> Result<bool, StoreError> {
        let key = layout::event_key(event);
        let write = match change {
            BacklogChange::Arm(arm) => with_arm_proof(
                Write::new(key, "SET #lineBacklog = :armed REMOVE #backlogEmptySince")
                    .value(":armed", n(1)),
                arm,
                None,
            ),
            BacklogChange::MarkEmpty { at } => Write::new(key, "SET #backlogEmptySince = :at")
                .when("#lineBacklog = :armed AND attribute_not_exists(#backlogEmptySince)")
                .value(":armed", n(1))
                .value(":at", n(at.as_millis())),
            BacklogChange::Clear { marked_at } => {
                Write::new(key, "SET #lineBacklog = :clear REMOVE #backlogEmptySince")
                    .when("#backlogEmptySince = :marked")
                    .value(":clear", n(0))
                    .value(":marked", n(marked_at.as_millis()))
            }
        };
        self.update(write).await
    }
}

/// An event that admits: open (never controlled, or resumed) or closed.
const ADMITS: &str =
    "(attribute_not_exists(#eventState) OR #eventState = :open OR #eventState = :closed)";

/// Arming the hint proves no slot was freed unseen since the snapshot (see
/// `BacklogChange::Arm`): `active` did not drop, capacity did not change,
/// and the event was neither paused, resumed nor opened.
fn with_arm_proof(write: Write, arm: Arm, also: Option<String>) -> Write {
    let capacity = match arm.capacity_seen {
        Some(_) => "#capacity = :capacitySeen",
        None => "attribute_not_exists(#capacity)",
    };
    let state = if arm.held_seen.is_some() {
        "#eventState = :heldSeen"
    } else {
        ADMITS
    };
    let proof = format!(
        "(attribute_not_exists(#active) OR #active >= :activeSeen) AND {capacity} AND {state}"
    );
    let condition = match also {
        Some(also) => format!("{also} AND {proof}"),
        None => proof,
    };
    let write = write
        .when(condition)
        .value(":activeSeen", n(arm.active_seen));
    let write = match arm.held_seen {
        Some(state) => write.value(":heldSeen", s(state.as_str())),
        None => with_admitting_states(write),
    };
    match arm.capacity_seen {
        Some(capacity) => write.value(":capacitySeen", n(capacity)),
        None => write,
    }
}

/// The values `ADMITS` names.
fn with_admitting_states(write: Write) -> Write {
    write
        .value(":open", s(EventState::Open.as_str()))
        .value(":closed", s(EventState::Closed.as_str()))
}

/// The event item's part of an admission: slots taken (conditioned on
/// capacity and on nothing else admitted or abandoned since the snapshot),
/// abandonments counted, heads, the rate, and the hint. `None` when the write
/// leaves the event item alone.
fn event_write(plan: &AdmissionPlan) -> Option<Write> {
    let key = layout::event_key(&plan.event_id);
    let Some(expect) = plan.counters.as_ref() else {
        // Nobody admitted or abandoned: at most the hint.
        return plan.arm.map(|arm| {
            with_arm_proof(
                Write::new(key, "SET #lineBacklog = :armed REMOVE #backlogEmptySince")
                    .value(":armed", n(1)),
                arm,
                None,
            )
        });
    };
    let mut sets = vec!["#eventId = :event".to_owned(), "#heads = :heads".to_owned()];
    let mut adds = Vec::new();
    let mut conditions = vec![
        "(attribute_not_exists(#admitted) OR #admitted = :admittedSeen)".to_owned(),
        "(attribute_not_exists(#abandoned) OR #abandoned = :abandonedSeen)".to_owned(),
    ];
    let mut write = Write::new(key, "")
        .value(":event", s(plan.event_id.as_str()))
        .value(":heads", number_list(&plan.heads_after))
        .value(":admittedSeen", n(expect.admitted_seen))
        .value(":abandonedSeen", n(expect.abandoned_seen));
    if let Some(slots) = expect.slots {
        conditions.push("#capacity = :capacity".to_owned());
        conditions.push(ADMITS.to_owned());
        conditions.push("(attribute_not_exists(#active) OR #active <= :activeAtMost)".to_owned());
        adds.push("#active :admitted");
        adds.push("#admitted :admitted");
        write = with_admitting_states(write)
            .value(":capacity", n(slots.capacity))
            .value(":activeAtMost", n(slots.active_at_most))
            .value(":admitted", n(plan.admitted_count()));
        sets.push("#rateWindowAdmitted = :windowAdmitted".to_owned());
        write = write.value(":windowAdmitted", n(plan.rate.window_admitted));
        if let Some(start) = plan.rate.window_start {
            sets.push("#rateWindowStart = :windowStart".to_owned());
            write = write.value(":windowStart", n(start.as_millis()));
        }
        if let Some(per_hour) = plan.rate.per_hour {
            sets.push("#admitRatePerHour = :rate".to_owned());
            write = write.value(":rate", n(per_hour));
        }
    }
    if !plan.abandoned.is_empty() {
        adds.push("#abandoned :abandoned_now");
        write = write.value(":abandoned_now", n(plan.abandoned.len()));
    }
    let mut removes = Vec::new();
    if plan.arm.is_some() {
        sets.push("#lineBacklog = :armed".to_owned());
        removes.push("#backlogEmptySince");
        write = write.value(":armed", n(1));
    }
    let mut update = format!("SET {}", sets.join(", "));
    if !adds.is_empty() {
        update.push_str(&format!(" ADD {}", adds.join(", ")));
    }
    if !removes.is_empty() {
        update.push_str(&format!(" REMOVE {}", removes.join(", ")));
    }
    let write = Write { update, ..write };
    let condition = conditions.join(" AND ");
    Some(match plan.arm {
        Some(arm) => with_arm_proof(write, arm, Some(condition)),
        None => write.when(condition),
    })
}

impl EventStore for DynamoStore {
    async fn event_counters(
        &self,
        event: &EventId,
        shard_count: u16,
    ) -> Result<EventCounters, StoreError> {
        self.read_counters(event, shard_count).await
    }

    async fn register_event(
        &self,
        event: &EventId,
        default_capacity: u32,
        shard_count: u16,
    ) -> Result<EventCounters, StoreError> {
        self.register(event, default_capacity, shard_count).await
    }

    async fn list_event(&self, event: &EventId) -> Result<(), StoreError> {
        self.update(
            Write::new(
                layout::event_key(event),
                "SET #eventId = :event, #listing = :listing, #tookJoins = :yes",
            )
            .value(":event", s(event.as_str()))
            .value(":listing", s(layout::EVENT_LISTING))
            .value(":yes", n(1)),
        )
        .await
        .map(drop)
    }

    async fn events(&self) -> Result<Vec<EventId>, StoreError> {
        self.listed_events().await
    }

    async fn set_capacity(&self, event: &EventId, capacity: u32) -> Result<(), StoreError> {
        self.store_capacity(event, capacity).await
    }

    async fn set_event_state(&self, change: &StateChange) -> Result<bool, StoreError> {
        self.change_state(change).await
    }

    async fn configure_event(
        &self,
        event: &EventId,
        settings: &EventSettings,
    ) -> Result<(), StoreError> {
        let seconds = |value: Option<Option<Duration>>| value.map(|d| d.map(|d| n(d.as_secs())));
        // Each setting given is set (`Some(Some)`) or removed (`Some(None)`).
        // Off is stored as no attribute.
        let switch = |on: Option<bool>| on.map(|on| on.then(|| n(1)));
        let bits = |bits: Option<u8>| bits.map(|b| (b > 0).then(|| n(b)));
        let given: [(&str, &'static str, Option<Option<AttributeValue>>); 7] = [
            (
                "#closesAt",
                ":closesAt",
                settings.closes_at.map(|at| at.map(|at| n(at.as_millis()))),
            ),
            (
                "#originUrl",
                ":originUrl",
                settings
                    .origin_url
                    .as_ref()
                    .map(|url| url.as_deref().map(s)),
            ),
            ("#staySeconds", ":staySeconds", seconds(settings.stay)),
            (
                "#maxStaySeconds",
                ":maxStaySeconds",
                seconds(settings.max_stay),
            ),
            (
                "#abandonSeconds",
                ":abandonSeconds",
                seconds(settings.abandon_after),
            ),
            (
                "#signedJoins",
                ":signedJoins",
                switch(settings.signed_joins),
            ),
            (
                "#puzzleDifficulty",
                ":puzzleDifficulty",
                bits(settings.puzzle_difficulty),
            ),
        ];
        let mut sets = vec![
            "#eventId = :event".to_owned(),
            "#listing = :listing".to_owned(),
        ];
        let mut removes = Vec::new();
        let mut write = Write::new(layout::event_key(event), "")
            .value(":event", s(event.as_str()))
            .value(":listing", s(layout::EVENT_LISTING));
        for (name, placeholder, value) in given {
            match value {
                Some(Some(value)) => {
                    sets.push(format!("{name} = {placeholder}"));
                    write = write.value(placeholder, value);
                }
                Some(None) => removes.push(name),
                None => {}
            }
        }
        let mut update = format!("SET {}", sets.join(", "));
        if !removes.is_empty() {
            update.push_str(&format!(" REMOVE {}", removes.join(", ")));
        }
        self.update(Write { update, ..write }).await.map(drop)
    }
}

impl LineStore for DynamoStore {
    async fn waiting_among(&self, ids: &[SessionId]) -> Result<Vec<LineEntry>, StoreError> {
        let keys = ids.iter().map(layout::session_key).collect();
        let found = self.batch_get(keys).await?;
        let mut waiting = Vec::new();
        for id in ids {
            if let Some(item) = found.get(&layout::session_key(id)) {
                waiting.extend(entry_of_session(&decode_session(item)?));
            }
        }
        Ok(waiting)
    }

    async fn line_front(
        &self,
        event: &EventId,
        shard: u16,
        limit: usize,
    ) -> Result<Vec<LineEntry>, StoreError> {
        self.front(event, shard, None, limit).await
    }

    async fn line_after(
        &self,
        event: &EventId,
        shard: u16,
        after: &Place,
        limit: usize,
    ) -> Result<Vec<LineEntry>, StoreError> {
        self.front(event, shard, Some(after), limit).await
    }

    async fn shard_head(&self, event: &EventId, shard: u16) -> Result<u64, StoreError> {
        self.head(event, shard).await
    }

    async fn ticket_counters(
        &self,
        event: &EventId,
        shards: &[u16],
    ) -> Result<Vec<TicketCounter>, StoreError> {
        self.read_ticket_counters(event, shards).await
    }

    async fn number_sessions(&self, plan: &NumberingPlan) -> Result<WriteOutcome, StoreError> {
        self.number(plan).await
    }

    async fn admit(
        &self,
        plan: &AdmissionPlan,
        retain_until: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        self.admit_plan(plan, retain_until).await
    }

    async fn update_backlog(
        &self,
        event: &EventId,
        change: BacklogChange,
    ) -> Result<bool, StoreError> {
        self.change_backlog(event, change).await
    }
}
