//! Creates the table and queues the code expects, against any endpoint (AWS,
//! LocalStack, moto). Used by the admin CLI, `make run` and the tests; the
//! SAM template declares the same resources for AWS, and a test checks that
//! the two agree.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
    TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;

use crate::adapters::dynamodb::layout;

/// Names of the resources one deployment uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceNames {
    pub table: String,
    /// Without the `.fifo` suffix, which is added here.
    pub queue_prefix: String,
}

impl ResourceNames {
    pub fn join_queue(&self) -> String {
        format!("{}-join.fifo", self.queue_prefix)
    }

    pub fn join_dead_letter_queue(&self) -> String {
        format!("{}-join-dlq.fifo", self.queue_prefix)
    }

    pub fn checkout_queue(&self) -> String {
        format!("{}-checkout-outcomes", self.queue_prefix)
    }

    pub fn checkout_dead_letter_queue(&self) -> String {
        format!("{}-checkout-outcomes-dlq", self.queue_prefix)
    }

    pub fn events_topic(&self) -> String {
        format!("{}-events.fifo", self.queue_prefix)
    }

    /// `QUEUE_READY` with the admission token, for the checkout alone.
    pub fn admissions_topic(&self) -> String {
        format!("{}-admissions.fifo", self.queue_prefix)
    }

    /// Stream records that can never be processed, and what the stream
    /// mappings give up on.
    pub fn stream_dead_letter_queue(&self) -> String {
        format!("{}-stream-dlq", self.queue_prefix)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provisioned {
    pub table: String,
    pub join_queue_url: String,
    pub join_dead_letter_queue_url: String,
    pub checkout_queue_url: String,
    pub checkout_dead_letter_queue_url: String,
    pub events_topic_arn: String,
    pub admissions_topic_arn: String,
    pub stream_dead_letter_queue_url: String,
}

#[derive(Debug, thiserror::Error)]
#[error("provisioning {resource} failed: {detail}")]
pub struct ProvisionError {
    resource: String,
    detail: String,
}

fn failed(resource: &str, err: impl std::fmt::Display) -> ProvisionError {
    ProvisionError {
        resource: resource.to_owned(),
        detail: err.to_string(),
    }
}

/// Join messages are finished in the batch that receives them, and one that
/// failed comes back within `runtime::MAX_REDELIVERY_PAUSE` (8 s), so a
/// receive count this high (the SQS maximum) means the store was down for
/// over two hours: only then does a message move to the dead-letter queue
/// (and can be redriven). Its user keeps their place in line meanwhile: the
/// message only wakes the granter and numbers them.
pub const JOIN_MAX_RECEIVE_COUNT: u32 = 1000;
/// Longer than a granter batch can take (its Lambda timeout is 10 s).
pub const JOIN_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(60);
/// SQS's maximum: a line may take long, and no one may drop out of it.
pub const RETENTION: Duration = Duration::from_secs(14 * 86_400);

/// A checkout outcome that cannot be applied is retried this often, then
/// kept in the dead-letter queue for a human.
pub const CHECKOUT_MAX_RECEIVE_COUNT: u32 = 5;
pub const CHECKOUT_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(30);

/// The join queue's attributes besides its redrive policy. High-throughput
/// FIFO (deduplication and throughput per message group) is what lets one
/// event's line spread over several message groups.
pub fn join_queue_attributes() -> Vec<(QueueAttributeName, String)> {
    vec![
        (QueueAttributeName::FifoQueue, "true".into()),
        (
            QueueAttributeName::ContentBasedDeduplication,
            "false".into(),
        ),
        (
            QueueAttributeName::DeduplicationScope,
            "messageGroup".into(),
        ),
        (
            QueueAttributeName::FifoThroughputLimit,
            "perMessageGroupId".into(),
        ),
        (
            QueueAttributeName::VisibilityTimeout,
            JOIN_VISIBILITY_TIMEOUT.as_secs().to_string(),
        ),
        (
            QueueAttributeName::MessageRetentionPeriod,
            RETENTION.as_secs().to_string(),
        ),
    ]
}

/// The AWS clients provisioning needs.
pub struct Clients<'a> {
    pub dynamodb: &'a aws_sdk_dynamodb::Client,
    pub sqs: &'a aws_sdk_sqs::Client,
    pub sns: &'a aws_sdk_sns::Client,
}

pub async fn provision(
    clients: &Clients<'_>,
    names: &ResourceNames,
) -> Result<Provisioned, ProvisionError> {
    create_table(clients.dynamodb, &names.table).await?;
    let fifo = vec![(QueueAttributeName::FifoQueue, "true".to_owned())];
    let (join, join_dead_letter) = create_queue_pair(
        clients.sqs,
        (&names.join_queue(), join_queue_attributes()),
        (&names.join_dead_letter_queue(), fifo),
        JOIN_MAX_RECEIVE_COUNT,
    )
    .await?;
    let checkout_attributes = vec![
        (
            QueueAttributeName::VisibilityTimeout,
            CHECKOUT_VISIBILITY_TIMEOUT.as_secs().to_string(),
        ),
        (
            QueueAttributeName::MessageRetentionPeriod,
            RETENTION.as_secs().to_string(),
        ),
    ];
    let (checkout, checkout_dead_letter) = create_queue_pair(
        clients.sqs,
        (&names.checkout_queue(), checkout_attributes),
        (&names.checkout_dead_letter_queue(), vec![]),
        CHECKOUT_MAX_RECEIVE_COUNT,
    )
    .await?;
    let events_topic_arn = create_events_topic(clients.sns, &names.events_topic()).await?;
    let admissions_topic_arn = create_events_topic(clients.sns, &names.admissions_topic()).await?;
    let stream_dead_letter = create_queue(
        clients.sqs,
        &names.stream_dead_letter_queue(),
        vec![(
            QueueAttributeName::MessageRetentionPeriod,
            RETENTION.as_secs().to_string(),
        )],
    )
    .await?;
    Ok(Provisioned {
        table: names.table.clone(),
        join_queue_url: join,
        join_dead_letter_queue_url: join_dead_letter,
        checkout_queue_url: checkout,
        checkout_dead_letter_queue_url: checkout_dead_letter,
        events_topic_arn,
        admissions_topic_arn,
        stream_dead_letter_queue_url: stream_dead_letter,
    })
}

/// A queue and its dead-letter queue, linked by a redrive policy.
async fn create_queue_pair(
    sqs: &aws_sdk_sqs::Client,
    (name, mut attributes): (&str, Vec<(QueueAttributeName, String)>),
    (dead_letter_name, mut dead_letter_attributes): (&str, Vec<(QueueAttributeName, String)>),
    max_receive_count: u32,
) -> Result<(String, String), ProvisionError> {
    dead_letter_attributes.push((
        QueueAttributeName::MessageRetentionPeriod,
        RETENTION.as_secs().to_string(),
    ));
    let dead_letter = create_queue(sqs, dead_letter_name, dead_letter_attributes).await?;
    let redrive = serde_json::json!({
        "deadLetterTargetArn": queue_arn(sqs, &dead_letter).await?,
        "maxReceiveCount": max_receive_count,
    })
    .to_string();
    attributes.push((QueueAttributeName::RedrivePolicy, redrive));
    Ok((create_queue(sqs, name, attributes).await?, dead_letter))
}

/// Days the events topic keeps messages for replays.
pub const EVENTS_ARCHIVE_DAYS: u32 = 7;

/// A domain events topic (the events topic, or the admissions topic): FIFO,
/// deduplicated by event id, throughput per message group, archived for
/// replays. Creating it again returns its ARN.
async fn create_events_topic(
    sns: &aws_sdk_sns::Client,
    name: &str,
) -> Result<String, ProvisionError> {
    let archive =
        serde_json::json!({"MessageRetentionPeriod": EVENTS_ARCHIVE_DAYS.to_string()}).to_string();
    let output = sns
        .create_topic()
        .name(name)
        .attributes("FifoTopic", "true")
        .attributes("ContentBasedDeduplication", "false")
        .attributes("FifoThroughputScope", "MessageGroup")
        .attributes("ArchivePolicy", archive)
        .send()
        .await
        .map_err(|e| failed(name, aws_sdk_sns::error::DisplayErrorContext(e)))?;
    output
        .topic_arn()
        .map(str::to_owned)
        .ok_or_else(|| failed(name, "no topic ARN returned"))
}

fn key(name: &str, key_type: KeyType) -> Result<KeySchemaElement, ProvisionError> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(key_type)
        .build()
        .map_err(|e| failed(name, e))
}

fn attribute(name: &str, kind: ScalarAttributeType) -> Result<AttributeDefinition, ProvisionError> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(kind)
        .build()
        .map_err(|e| failed(name, e))
}

/// The table with its line index, stream (which wakes the granter when a
/// slot frees) and TTL. Creating a table that exists is not an error.
pub async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<(), ProvisionError> {
    let line_index = GlobalSecondaryIndex::builder()
        .index_name(layout::LINE_INDEX)
        .key_schema(key(layout::LINE_INDEX_PARTITION, KeyType::Hash)?)
        .key_schema(key(layout::LINE_INDEX_SORT, KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::Include)
                .set_non_key_attributes(Some(
                    layout::LINE_INDEX_PROJECTION
                        .iter()
                        .map(|s| (*s).to_owned())
                        .collect(),
                ))
                .build(),
        )
        .build()
        .map_err(|e| failed(layout::LINE_INDEX, e))?;
    let event_index = GlobalSecondaryIndex::builder()
        .index_name(layout::EVENT_INDEX)
        .key_schema(key(layout::EVENT_INDEX_PARTITION, KeyType::Hash)?)
        .key_schema(key(layout::EVENT_INDEX_SORT, KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::KeysOnly)
                .build(),
        )
        .build()
        .map_err(|e| failed(layout::EVENT_INDEX, e))?;
    let expiry_index = GlobalSecondaryIndex::builder()
        .index_name(layout::EXPIRY_INDEX)
        .key_schema(key(layout::EXPIRY_INDEX_PARTITION, KeyType::Hash)?)
        .key_schema(key(layout::EXPIRY_INDEX_SORT, KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::Include)
                .set_non_key_attributes(Some(
                    layout::EXPIRY_INDEX_PROJECTION
                        .iter()
                        .map(|s| (*s).to_owned())
                        .collect(),
                ))
                .build(),
        )
        .build()
        .map_err(|e| failed(layout::EXPIRY_INDEX, e))?;
    let result = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key(layout::PARTITION_KEY, KeyType::Hash)?)
        .attribute_definitions(attribute(layout::PARTITION_KEY, ScalarAttributeType::S)?)
        .attribute_definitions(attribute(
            layout::LINE_INDEX_PARTITION,
            ScalarAttributeType::S,
        )?)
        .attribute_definitions(attribute(layout::LINE_INDEX_SORT, ScalarAttributeType::S)?)
        .attribute_definitions(attribute(
            layout::EXPIRY_INDEX_PARTITION,
            ScalarAttributeType::S,
        )?)
        .attribute_definitions(attribute(
            layout::EXPIRY_INDEX_SORT,
            ScalarAttributeType::N,
        )?)
        .attribute_definitions(attribute(
            layout::EVENT_INDEX_PARTITION,
            ScalarAttributeType::S,
        )?)
        .attribute_definitions(attribute(layout::EVENT_INDEX_SORT, ScalarAttributeType::S)?)
        .global_secondary_indexes(line_index)
        .global_secondary_indexes(expiry_index)
        .global_secondary_indexes(event_index)
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()
                .map_err(|e| failed(table, e))?,
        )
        .send()
        .await;
    match result {
        Ok(_) => {}
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) =>
        {
            return Ok(());
        }
        Err(err) => {
            return Err(failed(
                table,
                aws_sdk_dynamodb::error::DisplayErrorContext(err),
            ));
        }
    }
    wait_until_active(client, table).await?;
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name(layout::TTL_ATTRIBUTE)
                .build()
                .map_err(|e| failed(table, e))?,
        )
        .send()
        .await
        .map_err(|e| failed(table, aws_sdk_dynamodb::error::DisplayErrorContext(e)))?;
    Ok(())
}

async fn wait_until_active(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<(), ProvisionError> {
    for _ in 0..120 {
        let described = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| failed(table, aws_sdk_dynamodb::error::DisplayErrorContext(e)))?;
        let status = described.table().and_then(|t| t.table_status());
        if status == Some(&aws_sdk_dynamodb::types::TableStatus::Active) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(failed(table, "did not become ACTIVE within a minute"))
}

async fn create_queue(
    client: &aws_sdk_sqs::Client,
    name: &str,
    attributes: Vec<(QueueAttributeName, String)>,
) -> Result<String, ProvisionError> {
    let attributes: HashMap<QueueAttributeName, String> = attributes.into_iter().collect();
    let output = client
        .create_queue()
        .queue_name(name)
        .set_attributes(Some(attributes))
        .send()
        .await
        .map_err(|e| failed(name, aws_sdk_sqs::error::DisplayErrorContext(e)))?;
    output
        .queue_url()
        .map(str::to_owned)
        .ok_or_else(|| failed(name, "no queue URL returned"))
}

async fn queue_arn(client: &aws_sdk_sqs::Client, url: &str) -> Result<String, ProvisionError> {
    let output = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| failed(url, aws_sdk_sqs::error::DisplayErrorContext(e)))?;
    output
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| failed(url, "no queue ARN returned"))
}

/// Deletes what `provision` created (tests clean up after themselves);
/// best effort, as a resource may be gone already.
pub async fn tear_down(clients: &Clients<'_>, provisioned: &Provisioned) {
    let _ = clients
        .dynamodb
        .delete_table()
        .table_name(&provisioned.table)
        .send()
        .await;
    let queues = [
        &provisioned.join_queue_url,
        &provisioned.join_dead_letter_queue_url,
        &provisioned.checkout_queue_url,
        &provisioned.checkout_dead_letter_queue_url,
        &provisioned.stream_dead_letter_queue_url,
    ];
    for url in queues {
        let _ = clients.sqs.delete_queue().queue_url(url).send().await;
    }
    for topic in [
        &provisioned.events_topic_arn,
        &provisioned.admissions_topic_arn,
    ] {
        let _ = clients.sns.delete_topic().topic_arn(topic).send().await;
    }
}
