//! A user's session on DynamoDB: created with its claim, touched, ended
//! with its slot or place given back in the same write.

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    Delete, Put, ReturnValue, ReturnValuesOnConditionCheckFailure as OnConditionFailure,
    TransactWriteItem,
};

use super::items::{decode_session, n, names_in, s, session_item, ttl_value};
use super::layout;
use super::request::{TransactResult, Write, built, classify, codes, failed_condition, old_item};
use super::{ACTIVE, DynamoStore, WAITING};
use crate::domain::{
    EndReason, Ending, EventId, KeyDigest, Session, SessionId, SessionStatus, Timestamp, UserId,
};
use crate::ports::{
    Claim, Discard, EndFrom, EndOutcome, PuzzleLedger, SessionStore, StoreError, Touch,
};

/// One small item per spent solution, naming the join that spent it,
/// written only if absent or by that same join; TTL removes it once the
/// solution is stale.
impl PuzzleLedger for DynamoStore {
    async fn spend(
        &self,
        digest: &[u8; 32],
        key: &KeyDigest,
        until: Timestamp,
    ) -> Result<bool, StoreError> {
        self.update(
            Write::new(
                layout::puzzle_key(digest),
                "SET #ttl = :ttl, #idempotencyKey = :key",
            )
            .when("attribute_not_exists(#pk) OR #idempotencyKey = :key")
            .value(":ttl", ttl_value(until))
            .value(":key", s(key.as_str())),
        )
        .await
    }
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
        let claim = old_item(&reasons, 0);
        let blocked = claim.is_some_and(|item| item.contains_key("blocked"));
        let holder = claim
            .and_then(|item| item.get("sessionId"))
            .and_then(|v| v.as_s().ok())
            .and_then(|id| SessionId::parse(id).ok());
        match holder {
            // Our own write, applied once already: its answer was lost and
            // the SDK retried (an emulator without idempotency tokens).
            Some(holder) if holder == session.id => Ok(Claim::Created),
            _ if blocked => Ok(Claim::Blocked),
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

    async fn block(&self, event: &EventId, user: &UserId) -> Result<(), StoreError> {
        self.block_claim(event, user).await
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
                .when("#sessionId = :old AND attribute_not_exists(#blocked)")
                .value(":old", s(old.as_str())),
        };
        self.transact_update(write)
    }

    /// Marks the user's claim blocked and keeps it (no TTL); creates it if
    /// it expired. Every later claim write of theirs fails on it.
    async fn block_claim(&self, event: &EventId, user: &UserId) -> Result<(), StoreError> {
        self.update(
            Write::new(
                layout::claim_key(event, user),
                "SET #blocked = :yes, #eventId = :event REMOVE #ttl",
            )
            .value(":yes", s("true"))
            .value(":event", s(event.as_str())),
        )
        .await
        .map(drop)
    }
}

/// The session's side of an ending: final status, time, reason, TTL.
pub(super) fn ending_write(id: &SessionId, ending: &Ending, retain_until: Timestamp) -> Write {
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

pub(super) fn with_update(write: Write, more: &str) -> Write {
    let update = format!("{}{more}", write.update);
    Write { update, ..write }
}

pub(super) fn release_slots(event: &EventId, reason: EndReason, count: u64) -> Write {
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
