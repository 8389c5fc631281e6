//! The store ports (`SessionStore`, `EventStore`, `LineStore`, `ExpiryStore`) on DynamoDB. Each port operation is one request (a
//! transaction where more than one item must change together), so every
//! invariant is enforced by DynamoDB conditions, never by the caller.
//!
//! This file holds the request plumbing and the session operations; the
//! line's (counters, numbering, admission, the hint) are in `line.rs`.

pub mod items;
pub mod layout;
mod line;

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, Delete, KeysAndAttributes, Put, ReturnValue,
    ReturnValuesOnConditionCheckFailure as OnConditionFailure, TransactWriteItem, Update,
};

use self::items::{
    Item, decode_session, entry_of_session, n, names_in, s, session_item, ttl_value,
};
use self::layout::PARTITION_KEY;
use crate::domain::admission::{AdmissionPlan, BacklogChange, NumberingPlan};
use crate::domain::{
    EndReason, Ending, EventCounters, EventId, LineEntry, Session, SessionId, SessionStatus,
    TicketCounter, Timestamp,
};
use crate::ports::{
    Claim, Discard, EndFrom, EndOutcome, EventStore, Expiry, ExpiryStore, LineStore, SessionStore,
    StoreError, Touch, WriteOutcome,
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

    fn when(mut self, condition: impl Into<String>) -> Self {
        self.condition = Some(condition.into());
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
    /// Some condition failed; one reason per item, in request order.
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

    /// A single-item conditional update outside a transaction; false when
    /// its condition failed.
    async fn update(&self, write: Write) -> Result<bool, StoreError> {
        let names = write.names();
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key(write.pk.clone())))
            .update_expression(&write.update)
            .set_condition_expression(write.condition.clone())
            .set_expression_attribute_values(write.values());
        if !names.is_empty() {
            request = request.set_expression_attribute_names(Some(names));
        }
        match request.send().await {
            Ok(_) => Ok(true),
            Err(err) => match err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(_)) => Ok(false),
                Some(UpdateItemError::TransactionConflictException(_)) => Err(
                    StoreError::Contention(DisplayErrorContext(&err).to_string()),
                ),
                _ => Err(classify(&err)),
            },
        }
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
                    if reasons
                        .iter()
                        .any(|r| r.code() == Some("TransactionConflict"))
                    {
                        // Another transaction held one of the items: nothing
                        // was wrong with ours, it is worth trying again.
                        return Err(StoreError::Contention(codes(&reasons)));
                    }
                    Ok(TransactResult::Cancelled(reasons))
                }
                Some(TransactWriteItemsError::TransactionInProgressException(_)) => {
                    Err(StoreError::Contention("transaction in progress".into()))
                }
                _ => Err(classify(&err)),
            },
        }
    }

    /// Items by key, read consistently, however DynamoDB pages them.
    async fn batch_get(&self, keys: Vec<String>) -> Result<HashMap<String, Item>, StoreError> {
        let mut found = HashMap::new();
        for chunk in keys.chunks(100) {
            let mut pending: Vec<HashMap<String, AttributeValue>> =
                chunk.iter().map(|k| self.key(k.clone())).collect();
            // BatchGetItem may hand back part of the keys unprocessed under load.
            for attempt in 0.. {
                if pending.is_empty() {
                    break;
                }
                if attempt == 8 {
                    return Err(StoreError::Unavailable(
                        "batch read left keys unprocessed".into(),
                    ));
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
        }
        Ok(found)
    }

    async fn get(&self, pk: String) -> Result<Option<Item>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(self.key(pk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify(&e))?;
        Ok(output.item().cloned())
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
        SdkError::ServiceError(service)
            if service.err().code() == Some("TransactionConflictException") =>
        {
            StoreError::Contention(detail)
        }
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

/// The ids of `ids` whose item's condition failed, given that the request
/// listed their items first, in that order.
fn rejected_ids(ids: &[&SessionId], reasons: &[CancellationReason]) -> Vec<SessionId> {
    ids.iter()
        .zip(reasons)
        .filter(|(_, reason)| failed_condition(Some(reason)))
        .map(|(id, _)| (*id).clone())
        .collect()
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
        self.get(layout::session_key(id))
            .await?
            .as_ref()
            .map(decode_session)
            .transpose()
    }

    async fn discard(&self, session: &Session) -> Result<Discard, StoreError> {
        let delete_session = built(
            Delete::builder()
                .table_name(&self.table)
                .set_key(Some(self.key(layout::session_key(&session.id))))
                .condition_expression("attribute_not_exists(#pk) OR #status = :waiting")
                .set_expression_attribute_names(Some(names_in(&["#pk #status"])))
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
                Ok(Discard::NoLongerWaiting)
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
        let end = ending_write(id, ending, retain_until).old_on_failure();
        let (end, give_back) = match from {
            EndFrom::Active => (
                with_update(end, " REMOVE #expiryBucket")
                    .when("#status = :active")
                    .value(":active", s(ACTIVE)),
                release_slots(&event, ending.reason, 1),
            ),
            EndFrom::ActiveOverdue { at } => (
                with_update(end, " REMOVE #expiryBucket")
                    .when("#status = :active AND #expiresAt <= :overdueAt")
                    .value(":active", s(ACTIVE))
                    .value(":overdueAt", n(at.as_millis())),
                release_slots(&event, ending.reason, 1),
            ),
            EndFrom::Waiting { shard } => (
                with_update(end, " REMOVE #lineKey, #place")
                    .when("#status = :waiting AND #shard = :shard")
                    .value(":waiting", s(WAITING))
                    .value(":shard", n(shard)),
                Write::new(layout::line_key(&event, shard), "ADD #leftWaiting :one")
                    .value(":one", n(1)),
            ),
        };
        let writes = vec![self.transact_update(end)?, self.transact_update(give_back)?];
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

    async fn record_late_completion(
        &self,
        id: &SessionId,
        was: EndReason,
        ending: &Ending,
    ) -> Result<bool, StoreError> {
        let event = id.event_id();
        let mut update =
            String::from("SET #status = :final, #endedAt = :now, #endReason = :reason");
        let mut record = Write::new(layout::session_key(id), "")
            .value(":final", s(ending.reason.final_status().as_str()))
            .value(":now", n(ending.ended_at.as_millis()))
            .value(":reason", s(ending.reason.as_str()))
            .value(":was", s(was.as_str()))
            .value(":wasStatus", s(was.final_status().as_str()));
        if let Some(order) = &ending.order_id {
            update.push_str(", #orderId = :order");
            record = record.value(":order", s(order));
        }
        let record = Write { update, ..record }
            .when("#status = :wasStatus AND #endReason = :was AND attribute_exists(#admittedAt)");
        let counters = Write::new(
            layout::event_key(&event),
            format!(
                "ADD #{} :minus, #{} :one",
                ended_counter(was),
                ended_counter(ending.reason)
            ),
        )
        .value(":minus", n(-1))
        .value(":one", n(1));
        let writes = vec![
            self.transact_update(record)?,
            self.transact_update(counters)?,
        ];
        match self.transact(writes).await? {
            TransactResult::Applied => Ok(true),
            TransactResult::Cancelled(reasons) if failed_condition(reasons.first()) => Ok(false),
            TransactResult::Cancelled(reasons) => Err(StoreError::Unavailable(format!(
                "late completion cancelled: {}",
                codes(&reasons)
            ))),
        }
    }

    async fn extend_stay(
        &self,
        id: &SessionId,
        from: Timestamp,
        to: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        // `expiresAt > now`: a stay that is over is not revived, even before
        // the sweeper gets to it.
        self.update(
            Write::new(layout::session_key(id), "SET #expiresAt = :to")
                .when("#status = :active AND #expiresAt = :from AND #expiresAt > :now")
                .value(":to", n(to.as_millis()))
                .value(":from", n(from.as_millis()))
                .value(":now", n(now.as_millis()))
                .value(":active", s(ACTIVE)),
        )
        .await
    }
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
                "SET #eventId = :event, #listing = :listing",
            )
            .value(":event", s(event.as_str()))
            .value(":listing", s(layout::EVENT_LISTING)),
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
        self.front(event, shard, limit).await
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

impl ExpiryStore for DynamoStore {
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

    async fn expire_overdue(
        &self,
        event: &EventId,
        ids: &[SessionId],
        now: Timestamp,
        retain_until: Timestamp,
    ) -> Result<Expiry, StoreError> {
        if ids.is_empty() {
            return Ok(Expiry::default());
        }
        let ending = Ending::new(EndReason::Expired, now);
        let mut writes = Vec::with_capacity(ids.len() + 1);
        for id in ids {
            let write = with_update(
                ending_write(id, &ending, retain_until),
                " REMOVE #expiryBucket",
            )
            .when("#status = :active AND #expiresAt <= :overdueAt AND #eventId = :event")
            .value(":active", s(ACTIVE))
            .value(":overdueAt", n(now.as_millis()))
            .value(":event", s(event.as_str()));
            writes.push(self.transact_update(write)?);
        }
        let count = u64::try_from(ids.len()).unwrap_or(u64::MAX);
        writes.push(self.transact_update(release_slots(event, EndReason::Expired, count))?);
        match self.transact(writes).await? {
            TransactResult::Applied => Ok(Expiry {
                expired: ids.to_vec(),
                skipped: Vec::new(),
            }),
            TransactResult::Cancelled(reasons) => {
                let listed: Vec<&SessionId> = ids.iter().collect();
                let skipped = rejected_ids(&listed, &reasons);
                if skipped.is_empty() {
                    return Err(StoreError::Unavailable(format!(
                        "expiry cancelled: {}",
                        codes(&reasons)
                    )));
                }
                Ok(Expiry {
                    expired: Vec::new(),
                    skipped,
                })
            }
        }
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
}

/// The session's side of an ending: final status, time, reason, TTL.
fn ending_write(id: &SessionId, ending: &Ending, retain_until: Timestamp) -> Write {
    let reason = ending.reason;
    let mut update =
        String::from("SET #status = :final, #endedAt = :now, #endReason = :reason, #ttl = :ttl");
    let mut write = Write::new(layout::session_key(id), "")
        .value(":final", s(reason.final_status().as_str()))
        .value(":now", n(ending.ended_at.as_millis()))
        .value(":reason", s(reason.as_str()))
        .value(":ttl", ttl_value(retain_until));
    if let Some(order) = &ending.order_id {
        update.push_str(", #orderId = :order");
        write = write.value(":order", s(order));
    }
    if let Some(detail) = &ending.detail {
        update.push_str(", #endDetail = :detail");
        write = write.value(":detail", s(detail));
    }
    Write { update, ..write }
}

fn with_update(write: Write, more: &str) -> Write {
    let update = format!("{}{more}", write.update);
    Write { update, ..write }
}

fn release_slots(event: &EventId, reason: EndReason, count: u64) -> Write {
    Write::new(
        layout::event_key(event),
        format!("ADD #active :minus, #{} :count", ended_counter(reason)),
    )
    .value(":minus", n(-i128::from(count)))
    .value(":count", n(count))
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
