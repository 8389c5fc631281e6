//! The request plumbing every store operation shares: one conditional
//! write described once (`Write`), transactions and their cancellation
//! reasons, batched reads, and the sorting of SDK errors into retry-later
//! and this-request-is-wrong.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, KeysAndAttributes,
    ReturnValuesOnConditionCheckFailure as OnConditionFailure, TransactWriteItem, Update,
};

use super::DynamoStore;
use super::items::{Item, names_in, s};
use super::layout::PARTITION_KEY;
use crate::domain::SessionId;
use crate::ports::StoreError;

/// Error codes that mean "try again later", not "this request is wrong".
const RETRYABLE_CODES: &[&str] = &[
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionInProgressException",
];

/// One conditional write to one item, described once. Every attribute in
/// the expressions is written `#name`; the name map is derived from them.
pub(super) struct Write {
    pub(super) pk: String,
    pub(super) update: String,
    pub(super) condition: Option<String>,
    pub(super) values: Vec<(&'static str, AttributeValue)>,
    /// Ask DynamoDB for the item as it was when the condition failed.
    pub(super) old_on_failure: bool,
}

impl Write {
    pub(super) fn new(pk: String, update: impl Into<String>) -> Self {
        Self {
            pk,
            update: update.into(),
            condition: None,
            values: Vec::new(),
            old_on_failure: false,
        }
    }

    pub(super) fn when(mut self, condition: impl Into<String>) -> Self {
        self.condition = Some(condition.into());
        self
    }

    pub(super) fn value(mut self, placeholder: &'static str, value: AttributeValue) -> Self {
        self.values.push((placeholder, value));
        self
    }

    pub(super) fn old_on_failure(mut self) -> Self {
        self.old_on_failure = true;
        self
    }

    pub(super) fn names(&self) -> HashMap<String, String> {
        let mut expressions = vec![self.update.as_str()];
        expressions.extend(self.condition.as_deref());
        names_in(&expressions)
    }

    pub(super) fn values(&self) -> Option<HashMap<String, AttributeValue>> {
        (!self.values.is_empty()).then(|| {
            self.values
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect()
        })
    }
}

pub(super) enum TransactResult {
    Applied,
    /// Some condition failed; one reason per item, in request order.
    Cancelled(Vec<CancellationReason>),
}

impl DynamoStore {
    pub(super) fn key(&self, pk: String) -> HashMap<String, AttributeValue> {
        HashMap::from([(PARTITION_KEY.to_owned(), s(pk))])
    }

    pub(super) fn transact_update(&self, write: Write) -> Result<TransactWriteItem, StoreError> {
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
    pub(super) async fn update(&self, write: Write) -> Result<bool, StoreError> {
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

    pub(super) async fn transact(
        &self,
        items: Vec<TransactWriteItem>,
    ) -> Result<TransactResult, StoreError> {
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
    pub(super) async fn batch_get(
        &self,
        keys: Vec<String>,
    ) -> Result<HashMap<String, Item>, StoreError> {
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

    pub(super) async fn get(&self, pk: String) -> Result<Option<Item>, StoreError> {
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

pub(super) fn codes(reasons: &[CancellationReason]) -> String {
    reasons
        .iter()
        .map(|r| r.code().unwrap_or("None"))
        .collect::<Vec<_>>()
        .join(",")
}

fn is_retryable_code(code: Option<&str>) -> bool {
    code.is_some_and(|c| RETRYABLE_CODES.contains(&c))
}

pub(super) fn failed_condition(reason: Option<&CancellationReason>) -> bool {
    reason.and_then(CancellationReason::code) == Some("ConditionalCheckFailed")
}

/// Sorts SDK failures into "retry later" and "this request is wrong".
pub(super) fn classify<E, R>(err: &SdkError<E, R>) -> StoreError
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

pub(super) fn built<T, E: std::fmt::Display>(result: Result<T, E>) -> Result<T, StoreError> {
    result.map_err(|e| StoreError::Rejected(format!("request could not be built: {e}")))
}

pub(super) fn old_item(reasons: &[CancellationReason], index: usize) -> Option<&Item> {
    reasons.get(index).and_then(CancellationReason::item)
}

/// The ids of `ids` whose item's condition failed, given that the request
/// listed their items first, in that order.
pub(super) fn rejected_ids(ids: &[&SessionId], reasons: &[CancellationReason]) -> Vec<SessionId> {
    ids.iter()
        .zip(reasons)
        .filter(|(_, reason)| failed_condition(Some(reason)))
        .map(|(id, _)| (*id).clone())
        .collect()
}
