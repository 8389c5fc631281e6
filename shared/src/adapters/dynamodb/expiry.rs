//! Stays that ran out: found by the sparse expiry index, ended in one
//! transaction per event with their slots given back.

use super::items::{n, names_in, s};
use super::layout;
use super::request::{TransactResult, classify, codes, rejected_ids};
use super::sessions::{ending_write, release_slots, with_update};
use super::{ACTIVE, DynamoStore};
use crate::domain::{EndReason, Ending, EventId, SessionId, Timestamp};
use crate::ports::{Expiry, ExpiryStore, StoreError};

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
                let raw = super::items::get_str(item, "sessionId")?;
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
