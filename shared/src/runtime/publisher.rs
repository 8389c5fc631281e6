//! The events publisher reads the table's stream: through a Lambda event
//! source mapping in AWS, through `TableStreamReader` locally.

use std::future::Future;

use aws_lambda_events::dynamodb::Event as StreamEvent;
use aws_lambda_events::streams::DynamoDbEventResponse;

use crate::adapters::streams::{TableStreamReader, records_in_lambda_event};
use crate::domain::StreamRecord;
use crate::ports::{EventSink, Quarantine};
use crate::service::ServiceError;
use crate::service::publisher::Publisher;

use super::{Backoff, STREAM_POLL, stream_response};

/// Records that could not be published are reported, so Lambda retries
/// from the first of them (events keep their ids); the rest are done.
pub async fn handle_lambda_event<K: EventSink, Q: Quarantine>(
    publisher: &Publisher<K, Q>,
    event: StreamEvent,
) -> Result<DynamoDbEventResponse, ServiceError> {
    let report = publisher.publish(&records_in_lambda_event(&event)).await;
    Ok(stream_response(report.failed))
}

/// The local loop. Records stay pending until published, so an outage
/// delays events but loses none.
pub async fn poll_table_stream<K: EventSink, Q: Quarantine>(
    publisher: &Publisher<K, Q>,
    stream: &mut TableStreamReader,
    shutdown: impl Future<Output = ()>,
) {
    let work = async {
        let mut backoff = Backoff::default();
        let mut pending: Vec<StreamRecord> = Vec::new();
        loop {
            let pause = match stream.next_records().await {
                Err(err) => {
                    tracing::warn!(error = %err, "reading the table stream failed");
                    backoff.failed()
                }
                Ok(records) => {
                    pending.extend(records);
                    let report = publisher.publish(&pending).await;
                    pending.retain(|r| report.failed.contains(&r.id));
                    if pending.is_empty() {
                        stream.save_checkpoint();
                        backoff.succeeded();
                        STREAM_POLL
                    } else {
                        backoff.failed()
                    }
                }
            };
            tokio::time::sleep(pause).await;
        }
    };
    tokio::select! {
        () = work => {}
        () = shutdown => {}
    }
}
