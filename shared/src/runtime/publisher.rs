//! The events publisher reads the table's stream: through a Lambda event
//! source mapping in AWS, through `TableStreamReader` locally.

use std::future::Future;

use aws_lambda_events::dynamodb::Event as StreamEvent;
use aws_lambda_events::streams::DynamoDbEventResponse;

use crate::adapters::streams::{TableStreamReader, records_in_lambda_event};
use crate::domain::{Clock, StreamRecord, SystemClock};
use crate::ports::{EventSink, Quarantine};
use crate::service::ServiceError;
use crate::service::publisher::Publisher;
use crate::setup::metrics;

use super::poll::{self, StreamHandler};
use super::stream_response;

/// Records that could not be published are reported, so Lambda retries
/// from the first of them (events keep their ids); the rest are done.
pub async fn handle_lambda_event<K: EventSink, Q: Quarantine>(
    publisher: &Publisher<K, Q>,
    event: StreamEvent,
) -> Result<DynamoDbEventResponse, ServiceError> {
    let report = publisher.publish(&records_in_lambda_event(&event)).await;
    metrics::emit(&metrics::of_published(&report.published, SystemClock.now()));
    Ok(stream_response(report.failed))
}

/// The local loop. Records stay pending until published, so an outage
/// delays events but loses none.
pub async fn poll_table_stream<K: EventSink, Q: Quarantine>(
    publisher: &Publisher<K, Q>,
    stream: &mut TableStreamReader,
    shutdown: impl Future<Output = ()>,
) {
    poll::stream(stream, publisher, shutdown).await;
}

impl<K: EventSink, Q: Quarantine> StreamHandler for Publisher<K, Q> {
    async fn handle(&self, records: &[StreamRecord]) -> Vec<String> {
        let report = self.publish(records).await;
        metrics::emit(&metrics::of_published(&report.published, SystemClock.now()));
        report.failed
    }
}
