//! `SessionStore` on DynamoDB. Each port operation is one request (a
//! transaction where more than one item must change together), so every
//! invariant is enforced by DynamoDB conditions, never by the caller.

pub mod items;
pub mod layout;

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, ConditionCheck, Delete, KeysAndAttributes, Put,
    ReturnValue, ReturnValuesOnConditionCheckFailure as OnConditionFailure, TransactWriteItem,
    Update,
};

use self::items::{
    Item, decode_counters, decode_line_entry, decode_line_shard, decode_session, n, names_in, s,
    session_item, ttl_value,
};
use self::layout::PARTITION_KEY;
use crate::domain::admission::{
    BacklogHint, LineAdvance, SessionChange, SessionChangeKind, ShardAdvance, ShardSeen,
};
use crate::domain::session::expiry_bucket;
use crate::domain::{
    EndReason, Ending, EventCounters, EventId, LineEntry, LineShard, LineState, Session, SessionId,
    SessionStatus, Timestamp,
};
use crate::ports::{
    AdvanceOutcome, Claim, Discard, EndFrom, EndOutcome, SessionStore, StoreError, Touch,
};

const WAITING: &str = "WAITING";
const ACTIVE: &str = "ACTIVE";

/// Error codes that mean "try again later", not "this request is wrong".
const RETRYABLE_CODES: &[&str] = &[
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionInProgressException",
];

#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

/// One conditional write to one item, described once. Every attribute in
/// the expressions is written `#name`; the name map is derived from them.
struct Write {
    pk: String,
    update: String,
    condition: Option<String>,
    values: Vec<(&'static str, AttributeValue)>,
    /// Ask DynamoDB for the item as it was when the condition failed.
    old_on_failure: bool,
}

impl Write {
    fn new(pk: String, update: impl Into<String>) -> Self {
        Self {
            pk,
            update: update.into(),
            condition: None,
            values: Vec::new(),
            old_on_failure: false,
        }
    }

    fn when(mut self, condition: &str) -> Self {
        self.condition = Some(condition.to_owned());
        self
    }

    fn value(mut self, placeholder: &'static str, value: AttributeValue) -> Self {
        self.values.push((placeholder, value));
        self
    }

    fn old_on_failure(mut self) -> Self {
        self.old_on_failure = true;
        self
    }

    fn names(&self) -> HashMap<String, String> {
        let mut expressions = vec![self.update.as_str()];
        expressions.extend(self.condition.as_deref());
        names_in(&expressions)
    }

    fn values(&self) -> Option<HashMap<String, AttributeValue>> {
        (!self.values.is_empty()).then(|| {
            self.values
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect()
        })
    }
}

enum TransactResult {
    Applied,
    Cancelled(Vec<CancellationReason>),
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn key(&self, pk: String) -> HashMap<String, AttributeValue> {
        HashMap::from([(PARTITION_KEY.to_owned(), s(pk))])
    }

    fn transact_update(&self, write: Write) -> Result<TransactWriteItem, StoreError> {
        let names = write.names();
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(self.key(write.pk.clone())))
            .update_expression(&write.update)
            .set_condition_expression(write.condition.clone())
            .set_expression_attribute_values(write.values());
        if !names.is_empty() {
            update = update.set_expression_attribute_names(Some(names));
        }
        if write.old_on_failure {
            update = update.return_values_on_condition_check_failure(OnConditionFailure::AllOld);
        }
        Ok(TransactWriteItem::builder()
            .update(built(update.build())?)
            .build())
    }

    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<TransactResult, StoreError> {
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(TransactResult::Applied),
            Err(err) => match err.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => {
                    let reasons = cancelled.cancellation_reasons().to_vec();
                    if reasons.iter().any(|r| is_retryable_code(r.code())) {
                        return Err(StoreError::Unavailable(format!(
                            "transaction cancelled: {}",
                            codes(&reasons)
                        )));
                    }
                    Ok(TransactResult::Cancelled(reasons))
                }
                _ => Err(classify(&err)),
            },
        }
    }
}

fn codes(reasons: &[CancellationReason]) -> String {
    reasons
        .iter()
        .map(|r| r.code().unwrap_or("None"))
        .collect::<Vec<_>>()
        .join(",")
}

fn is_retryable_code(code: Option<&str>) -> bool {
    // A conflict with another transaction on the same items is contention,
    // handled by re-planning, not an outage: it is not in RETRYABLE_CODES.
    code.is_some_and(|c| RETRYABLE_CODES.contains(&c))
}

fn failed_condition(reason: Option<&CancellationReason>) -> bool {
    reason.and_then(CancellationReason::code) == Some("ConditionalCheckFailed")
}

/// Sorts SDK failures into "retry later" and "this request is wrong".
fn classify<E, R>(err: &SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let detail = DisplayErrorContext(err).to_string();
    match err {
        SdkError::ServiceError(service) if !is_retryable_code(service.err().code()) => {
            StoreError::Rejected(detail)
        }
        SdkError::ConstructionFailure(_) => StoreError::Rejected(detail),
        _ => StoreError::Unavailable(detail),
    }
}

fn built<T, E: std::fmt::Display>(result: Result<T, E>) -> Result<T, StoreError> {
    result.map_err(|e| StoreError::Rejected(format!("request could not be built: {e}")))
}

fn old_item(reasons: &[CancellationReason], index: usize) -> Option<&Item> {
    reasons.get(index).and_then(CancellationReason::item)
}

impl SessionStore for DynamoStore {
    async fn create_session(
        &self,
        session: &Session,
        replacing: Option<&SessionId>,
        claim_ttl: Timestamp,
    ) -> Result<Claim, StoreError> {
        let writes = vec![
            self.claim_write(session, replacing, claim_ttl)?,
            self.put_new_session(session)?,
        ];
        let reasons = match self.transact(writes).await? {
            TransactResult::Applied => return Ok(Claim::Created),
            TransactResult::Cancelled(reasons) => reasons,
        };
        let holder = old_item(&reasons, 0)
            .and_then(|item| item.get("sessionId"))
            .and_then(|v| v.as_s().ok())
            .and_then(|id| SessionId::parse(id).ok());
        match holder {
            // Our own write, applied once already: its answer was lost and
            // the SDK retried (an emulator without idempotency tokens).
            Some(holder) if holder == session.id => Ok(Claim::Created),
            _ if failed_condition(reasons.get(1)) => Err(StoreError::Rejected(format!(
                "session id {} already exists",
                session.id
            ))),
            _ if !failed_condition(reasons.first()) => Err(StoreError::Unavailable(format!(
                "join cancelled: {}",
                codes(&reasons)
            ))),
            Some(holder) => Ok(Claim::HeldBy(holder)),
            None => Ok(Claim::Vacant),
        }
    }

    async fn get_session(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(self.key(layout::session_key(id))))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify(&e))?;
        output.item().map(decode_session).transpose()
    }

    async fn discard_unfiled(&self, session: &Session) -> Result<Discard, StoreError> {
        let delete_session = built(
            Delete::builder()
                .table_name(&self.table)
                .set_key(Some(self.key(layout::session_key(&session.id))))
                .condition_expression(
                    "attribute_not_exists(#pk) OR (#status = :waiting AND attribute_not_exists(#ticket))",
                )
                .set_expression_attribute_names(Some(names_in(&["#pk #status #ticket"])))
                .expression_attribute_values(":waiting", s(WAITING))
                .build(),
        )?;
        let delete_claim = built(
            Delete::builder()
                .table_name(&self.table)
                .set_key(Some(
                    self.key(layout::claim_key(&session.event_id, &session.user_id)),
                ))
                .condition_expression("attribute_not_exists(#pk) OR #sessionId = :sid")
                .set_expression_attribute_names(Some(names_in(&["#pk #sessionId"])))
                .expression_attribute_values(":sid", s(session.id.as_str()))
                .build(),
        )?;
        let writes = vec![
            TransactWriteItem::builder().delete(delete_session).build(),
            TransactWriteItem::builder().delete(delete_claim).build(),
        ];
        match self.transact(writes).await? {
            TransactResult::Applied => Ok(Discard::Discarded),
            TransactResult::Cancelled(reasons) if failed_condition(reasons.first()) => {
                Ok(Discard::AlreadyFiled)
            }
            TransactResult::Cancelled(reasons) => Err(StoreError::Unavailable(format!(
                "discard cancelled: {}",
                codes(&reasons)
            ))),
        }
    }

    async fn touch(&self, id: &SessionId, now: Timestamp) -> Result<Touch, StoreError> {
        let update = "SET #lastSeenAt = :now";
        let condition = "attribute_exists(#pk) AND #status IN (:waiting, :active)";
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key(layout::session_key(id))))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names_in(&[update, condition])))
            .expression_attribute_values(":now", n(now.as_millis()))
            .expression_attribute_values(":waiting", s(WAITING))
            .expression_attribute_values(":active", s(ACTIVE))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(OnConditionFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(output) => match output.attributes() {
                Some(item) => Ok(Touch::Touched(decode_session(item)?)),
                None => Err(StoreError::Corrupt("touch returned no item".into())),
            },
            Err(err) => match err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                    match failed.item() {
                        Some(item) => Ok(Touch::Ended(decode_session(item)?)),
                        None => Ok(Touch::NotFound),
                    }
                }
                _ => Err(classify(&err)),
            },
        }
    }

    async fn end_session(
        &self,
        id: &SessionId,
        from: EndFrom,
        ending: &Ending,
        retain_until: Timestamp,
    ) -> Result<EndOutcome, StoreError> {
        let event = id.event_id();
        let reason = ending.reason;
        let mut update = String::from(
            "SET #status = :final, #endedAt = :now, #endReason = :reason, #ttl = :ttl",
        );
        let mut end = Write::new(layout::session_key(id), "")
            .value(":final", s(reason.final_status().as_str()))
            .value(":now", n(ending.ended_at.as_millis()))
            .value(":reason", s(reason.as_str()))
            .value(":ttl", ttl_value(retain_until))
            .old_on_failure();
        if let Some(order) = &ending.order_id {
            update.push_str(", #orderId = :order");
            end = end.value(":order", s(order));
        }
        if let Some(detail) = &ending.detail {
            update.push_str(", #endDetail = :detail");
            end = end.value(":detail", s(detail));
        }
        let (end, give_back) = match from {
            EndFrom::Active => {
                update.push_str(" REMOVE #expiryBucket");
                (
                    end.when("#status = :active").value(":active", s(ACTIVE)),
                    Some(self.release_slot(&event, reason)),
                )
            }
            EndFrom::ActiveOverdue { at } => {
                update.push_str(" REMOVE #expiryBucket");
                (
                    end.when("#status = :active AND #expiresAt <= :overdueAt")
                        .value(":active", s(ACTIVE))
                        .value(":overdueAt", n(at.as_millis())),
                    Some(self.release_slot(&event, reason)),
                )
            }
            EndFrom::WaitingFiled { shard, ticket } => (
                end.when("#status = :waiting AND #ticket = :ticket")
                    .value(":waiting", s(WAITING))
                    .value(":ticket", n(ticket)),
                Some(count_ended_in_line(&event, shard, reason)),
            ),
            EndFrom::WaitingUnfiled => (
                end.when("#status = :waiting AND attribute_not_exists(#ticket)")
                    .value(":waiting", s(WAITING)),
                None,
            ),
        };
        let end = Write { update, ..end };
        let mut writes = vec![self.transact_update(end)?];
        if let Some(give_back) = give_back {
            writes.push(self.transact_update(give_back)?);
        }
        match self.transact(writes).await? {
            TransactResult::Applied => Ok(EndOutcome::Ended),
            TransactResult::Cancelled(reasons) if failed_condition(reasons.first()) => {
                Ok(EndOutcome::NotAsExpected(
                    old_item(&reasons, 0)
                        .map(decode_session)
                        .transpose()?
                        .map(Box::new),
                ))
            }
            TransactResult::Cancelled(reasons) => Err(StoreError::Unavailable(format!(
                "end cancelled: {}",
                codes(&reasons)
            ))),
        }
    }

    async fn extend_stay(
        &self,
        id: &SessionId,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<bool, StoreError> {
        let update = "SET #expiresAt = :to";
        let condition = "#status = :active AND #expiresAt = :from";
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key(layout::session_key(id))))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names_in(&[update, condition])))
            .expression_attribute_values(":to", n(to.as_millis()))
            .expression_attribute_values(":from", n(from.as_millis()))
            .expression_attribute_values(":active", s(ACTIVE))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(err) => Err(classify(&err)),
        }
    }

    async fn overdue_sessions(
        &self,
        bucket: u16,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<SessionId>, StoreError> {
        let condition = "#expiryBucket = :bucket AND #expiresAt <= :now";
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(layout::EXPIRY_INDEX)
            .key_condition_expression(condition)
            .set_expression_attribute_names(Some(names_in(&[condition])))
            .expression_attribute_values(":bucket", s(bucket.to_string()))
            .expression_attribute_values(":now", n(now.as_millis()))
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| classify(&e))?;
        output
            .items()
            .iter()
            .map(|item| {
                let raw = items::get_str(item, "sessionId")?;
                SessionId::parse(raw)
                    .map_err(|_| StoreError::Corrupt(format!("bad sessionId {raw}")))
            })
            .collect()
    }

    async fn line_shard(&self, event: &EventId, shard: u16) -> Result<LineShard, StoreError> {
        // Eventually consistent on purpose: status polls read this hot item,
        // and a line position a moment old is fine.
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(self.key(layout::line_key(event, shard))))
            .send()
            .await
            .map_err(|e| classify(&e))?;
        decode_line_shard(shard, output.item())
    }

    async fn line_state(&self, event: &EventId, shard_count: u16) -> Result<LineState, StoreError> {
        let mut wanted: Vec<String> = vec![layout::event_key(event)];
        wanted.extend((0..shard_count).map(|shard| layout::line_key(event, shard)));
        let found = self.batch_get(wanted).await?;
        let counters = decode_counters(found.get(&layout::event_key(event)))?;
        let shards = (0..shard_count)
            .map(|shard| decode_line_shard(shard, found.get(&layout::line_key(event, shard))))
            .collect::<Result<_, _>>()?;
        Ok(LineState {
            event_id: event.clone(),
            counters,
            shards,
        })
    }

    async fn line_entries(
        &self,
        event: &EventId,
        shard: u16,
        from_ticket: u64,
        limit: usize,
    ) -> Result<Vec<LineEntry>, StoreError> {
        let condition = "#lineKey = :line AND #ticket >= :from";
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(layout::LINE_INDEX)
            .key_condition_expression(condition)
            .set_expression_attribute_names(Some(names_in(&[condition])))
            .expression_attribute_values(":line", s(layout::line_index_key(event, shard)))
            .expression_attribute_values(":from", n(from_ticket))
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| classify(&e))?;
        output.items().iter().map(decode_line_entry).collect()
    }

    async fn advance_line(
        &self,
        plan: &LineAdvance,
        retain_until: Timestamp,
    ) -> Result<AdvanceOutcome, StoreError> {
        let mut writes = Vec::new();
        // Sessions first, so a cancellation reason's index is the session's.
        for change in &plan.sessions {
            writes.push(self.transact_update(session_change(plan, change, retain_until))?);
        }
        for advance in &plan.shards {
            writes.push(self.transact_update(shard_advance(&plan.event_id, advance))?);
        }
        if let Some(event) = event_write(plan) {
            writes.push(self.transact_update(event)?);
        }
        for seen in &plan.unchanged_shards {
            writes.push(self.shard_unchanged(&plan.event_id, seen)?);
        }
        if writes.is_empty() {
            return Ok(AdvanceOutcome::Applied);
        }
        match self.transact(writes).await? {
            TransactResult::Applied => Ok(AdvanceOutcome::Applied),
            TransactResult::Cancelled(reasons) => {
                let rejected = plan
                    .sessions
                    .iter()
                    .zip(&reasons)
                    .filter(|(_, reason)| failed_condition(Some(reason)))
                    .map(|(change, _)| change.session_id.clone())
                    .collect();
                Ok(AdvanceOutcome::Conflict { rejected })
            }
        }
    }

    async fn event_counters(&self, event: &EventId) -> Result<EventCounters, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(self.key(layout::event_key(event))))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify(&e))?;
        decode_counters(output.item())
    }

    async fn set_capacity(&self, event: &EventId, capacity: u32) -> Result<(), StoreError> {
        let update = "SET #capacity = :capacity, #eventId = :event";
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key(layout::event_key(event))))
            .update_expression(update)
            .set_expression_attribute_names(Some(names_in(&[update])))
            .expression_attribute_values(":capacity", n(capacity))
            .expression_attribute_values(":event", s(event.as_str()))
            .send()
            .await
            .map_err(|e| classify(&e))?;
        Ok(())
    }
}

impl DynamoStore {
    fn put_new_session(&self, session: &Session) -> Result<TransactWriteItem, StoreError> {
        let put = built(
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(session_item(session)))
                .condition_expression("attribute_not_exists(#pk)")
                .set_expression_attribute_names(Some(names_in(&["#pk"])))
                .build(),
        )?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn claim_write(
        &self,
        session: &Session,
        replacing: Option<&SessionId>,
        claim_ttl: Timestamp,
    ) -> Result<TransactWriteItem, StoreError> {
        let claim = layout::claim_key(&session.event_id, &session.user_id);
        let write = Write::new(
            claim,
            "SET #sessionId = :new, #eventId = :event, #createdAt = :at, #ttl = :ttl",
        )
        .value(":new", s(session.id.as_str()))
        .value(":event", s(session.event_id.as_str()))
        .value(":at", n(session.joined_at.as_millis()))
        .value(":ttl", ttl_value(claim_ttl))
        .old_on_failure();
        let write = match replacing {
            None => write.when("attribute_not_exists(#pk)"),
            Some(old) => write
                .when("#sessionId = :old")
                .value(":old", s(old.as_str())),
        };
        self.transact_update(write)
    }

    async fn batch_get(&self, keys: Vec<String>) -> Result<HashMap<String, Item>, StoreError> {
        let mut found = HashMap::new();
        let mut pending: Vec<HashMap<String, AttributeValue>> =
            keys.into_iter().map(|k| self.key(k)).collect();
        // BatchGetItem may hand back part of the keys unprocessed under load.
        for _ in 0..8 {
            if pending.is_empty() {
                return Ok(found);
            }
            let request = built(
                KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut pending)))
                    .consistent_read(true)
                    .build(),
            )?;
            let output = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(|e| classify(&e))?;
            let items = output.responses().and_then(|r| r.get(&self.table));
            for item in items.into_iter().flatten() {
                if let Some(pk) = item.get(PARTITION_KEY).and_then(|v| v.as_s().ok()) {
                    found.insert(pk.clone(), item.clone());
                }
            }
            pending = output
                .unprocessed_keys()
                .and_then(|u| u.get(&self.table))
                .map(|k| k.keys().to_vec())
                .unwrap_or_default();
        }
        Err(StoreError::Unavailable(
            "batch read left keys unprocessed".into(),
        ))
    }

    /// A condition-only item: the shard is as the snapshot saw it.
    fn shard_unchanged(
        &self,
        event: &EventId,
        seen: &ShardSeen,
    ) -> Result<TransactWriteItem, StoreError> {
        let (condition, values) = if seen.stored {
            (
                "#nextTicket = :nextSeen",
                vec![(":nextSeen", n(seen.next_seen))],
            )
        } else {
            ("attribute_not_exists(#pk)", vec![])
        };
        let mut check = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(self.key(layout::line_key(event, seen.shard))))
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names_in(&[condition])));
        for (placeholder, value) in values {
            check = check.expression_attribute_values(placeholder, value);
        }
        Ok(TransactWriteItem::builder()
            .condition_check(built(check.build())?)
            .build())
    }

    fn release_slot(&self, event: &EventId, reason: EndReason) -> Write {
        Write::new(
            layout::event_key(event),
            format!("ADD #active :minus, #{} :one", ended_counter(reason)),
        )
        .value(":minus", n(-1))
        .value(":one", n(1))
    }
}

/// The event counter an ending from `ACTIVE` adds to.
fn ended_counter(reason: EndReason) -> &'static str {
    match reason.final_status() {
        SessionStatus::Left => "left",
        SessionStatus::Completed => "completed",
        SessionStatus::Failed => "failed",
        _ => "expired",
    }
}

fn count_ended_in_line(event: &EventId, shard: u16, reason: EndReason) -> Write {
    let counter = if reason == EndReason::Timeout {
        "abandoned"
    } else {
        "leftWaiting"
    };
    Write::new(
        layout::line_key(event, shard),
        format!("ADD #endedInLine :one, #{counter} :one"),
    )
    .value(":one", n(1))
}

fn session_change(plan: &LineAdvance, change: &SessionChange, retain_until: Timestamp) -> Write {
    const FILING: &str = "#status = :waiting AND attribute_not_exists(#ticket)";
    const FILED: &str = "#status = :waiting AND #ticket = :ticket";
    let key = layout::session_key(&change.session_id);
    let write = match &change.kind {
        SessionChangeKind::File => Write::new(
            key,
            "SET #ticket = :ticket, #shard = :shard, #lineKey = :line, #aheadAtFiling = :ahead",
        )
        .when(FILING)
        .value(":shard", n(change.shard))
        .value(":line", s(layout::line_index_key(&plan.event_id, change.shard)))
        .value(":ahead", n(change.ahead_at_filing.unwrap_or(0))),
        SessionChangeKind::Admit {
            filed_now,
            admission_no,
            expires_at,
        } => {
            // Active sessions join the expiry index the sweeper reads.
            let admit = "#status = :active, #admittedAt = :now, #admissionNo = :no, #expiresAt = :expires, #expiryBucket = :bucket";
            let write = if *filed_now {
                Write::new(
                    key,
                    format!("SET #ticket = :ticket, #shard = :shard, #aheadAtFiling = :ahead, {admit}"),
                )
                .when(FILING)
                .value(":shard", n(change.shard))
                .value(":ahead", n(change.ahead_at_filing.unwrap_or(0)))
            } else {
                Write::new(key, format!("SET {admit} REMOVE #lineKey")).when(FILED)
            };
            write
                .value(":bucket", s(expiry_bucket(&change.session_id).to_string()))
                .value(":active", s(ACTIVE))
                .value(":now", n(plan.now.as_millis()))
                .value(":no", n(*admission_no))
                .value(":expires", n(expires_at.as_millis()))
        }
        SessionChangeKind::Abandon { silent_since } => Write::new(
            key,
            "SET #status = :expired, #endedAt = :now, #endReason = :timeout, #ttl = :ttl REMOVE #lineKey",
        )
        .when("#status = :waiting AND #ticket = :ticket AND #lastSeenAt <= :silent")
        .value(":expired", s(SessionStatus::Expired.as_str()))
        .value(":now", n(plan.now.as_millis()))
        .value(":timeout", s(EndReason::Timeout.as_str()))
        .value(":ttl", ttl_value(retain_until))
        .value(":silent", n(silent_since.as_millis())),
    };
    write
        .value(":waiting", s(WAITING))
        .value(":ticket", n(change.ticket))
}

fn shard_advance(event: &EventId, advance: &ShardAdvance) -> Write {
    // A write that does not move the head neither sets nor checks it: filing
    // must not collide with other granters admitting from this shard. The
    // write that creates the item sets it all the same.
    let moves_head = advance.head != advance.head_seen;
    let sets_head = moves_head || !advance.stored;
    let mut update = String::from("SET #nextTicket = :next, #eventId = :event, #shard = :shard");
    if sets_head {
        update.push_str(", #headTicket = :head");
    }
    let mut adds = Vec::new();
    if advance.passed_ended > 0 {
        adds.push("#endedInLine :passed");
    }
    if advance.abandoned > 0 {
        adds.push("#abandoned :abandoned");
    }
    if advance.filed_through.is_some() {
        update.push_str(", #filedThrough = :filedThrough");
    }
    if !adds.is_empty() {
        update.push_str(" ADD ");
        update.push_str(&adds.join(", "));
    }
    let mut write = Write::new(layout::line_key(event, advance.shard), update)
        .value(":next", n(advance.next))
        .value(":event", s(event.as_str()))
        .value(":shard", n(advance.shard));
    if let Some(through) = advance.filed_through {
        write = write.value(":filedThrough", n(through.as_millis()));
    }
    if advance.passed_ended > 0 {
        write = write.value(":passed", n(-i128::from(advance.passed_ended)));
    }
    if advance.abandoned > 0 {
        write = write.value(":abandoned", n(advance.abandoned));
    }
    if advance.stored && moves_head {
        write
            .when("#nextTicket = :nextSeen AND #headTicket = :headSeen")
            .value(":nextSeen", n(advance.next_seen))
            .value(":head", n(advance.head))
            .value(":headSeen", n(advance.head_seen))
    } else if advance.stored {
        write
            .when("#nextTicket = :nextSeen")
            .value(":nextSeen", n(advance.next_seen))
    } else {
        write
            .when("attribute_not_exists(#pk)")
            .value(":head", n(advance.head))
    }
}

/// The event item's part of a line advance: slots taken (conditioned on
/// capacity and on no other admission since the snapshot) and/or the
/// backlog hint. `None` when the write leaves the event item alone.
fn event_write(plan: &LineAdvance) -> Option<Write> {
    let hint = match plan.backlog {
        BacklogHint::Unchanged => None,
        BacklogHint::Set { .. } => Some(1),
        BacklogHint::Clear => Some(0),
    };
    let mut update = String::from("SET #eventId = :event");
    let mut write = Write::new(layout::event_key(&plan.event_id), "")
        .value(":event", s(plan.event_id.as_str()));
    if let Some(flag) = hint {
        update.push_str(", #lineBacklog = :backlog");
        write = write.value(":backlog", n(flag));
    }
    // Setting the hint proves no slot was freed unseen (see `BacklogHint`).
    let proof = match plan.backlog {
        BacklogHint::Set {
            active_seen,
            capacity_seen,
        } => {
            write = write.value(":activeSeen", n(active_seen));
            let capacity = match capacity_seen {
                Some(capacity) => {
                    write = write.value(":capacitySeen", n(capacity));
                    "#capacity = :capacitySeen"
                }
                None => "attribute_not_exists(#capacity)",
            };
            Some(format!(
                "(attribute_not_exists(#active) OR #active >= :activeSeen) AND {capacity}"
            ))
        }
        _ => None,
    };
    let Some(expect) = plan.counters.as_ref() else {
        return hint.map(|_| Write {
            update,
            condition: proof,
            ..write
        });
    };
    let condition = match (expect.capacity_seen.is_some(), expect.admitted_seen == 0) {
        (true, true) => {
            "#capacity = :capacity AND (attribute_not_exists(#active) OR #active <= :activeAtMost) AND (attribute_not_exists(#admitted) OR #admitted = :admittedSeen)"
        }
        (true, false) => {
            "#capacity = :capacity AND (attribute_not_exists(#active) OR #active <= :activeAtMost) AND #admitted = :admittedSeen"
        }
        (false, true) => {
            "attribute_not_exists(#capacity) AND (attribute_not_exists(#active) OR #active <= :activeAtMost) AND (attribute_not_exists(#admitted) OR #admitted = :admittedSeen)"
        }
        (false, false) => {
            "attribute_not_exists(#capacity) AND (attribute_not_exists(#active) OR #active <= :activeAtMost) AND #admitted = :admittedSeen"
        }
    };
    update.push_str(", #rateWindowAdmitted = :windowAdmitted");
    let condition = match proof {
        Some(proof) => format!("{condition} AND {proof}"),
        None => condition.to_owned(),
    };
    write = Write {
        condition: Some(condition),
        ..write
    }
    .value(":windowAdmitted", n(plan.rate.window_admitted));
    if let Some(start) = plan.rate.window_start {
        update.push_str(", #rateWindowStart = :windowStart");
        write = write.value(":windowStart", n(start.as_millis()));
    }
    if let Some(per_hour) = plan.rate.per_hour {
        update.push_str(", #admitRatePerHour = :rate");
        write = write.value(":rate", n(per_hour));
    }
    update.push_str(" ADD #active :admitted, #admitted :admitted");
    let mut write = Write { update, ..write }
        .value(":admitted", n(plan.admitted))
        .value(":activeAtMost", n(expect.active_at_most))
        .value(":admittedSeen", n(expect.admitted_seen));
    if let Some(capacity) = expect.capacity_seen {
        write = write.value(":capacity", n(capacity));
    }
    Some(write)
}
