//! The events publisher reads the table's stream: through a Lambda event
//! source mapping in AWS, through `TableStreamReader` locally.

use std::future::Future;

use serde_json::Value;

use crate::adapters::streams::{ItemChange, TableStreamReader, changes_in_lambda_event};
use crate::ports::EventSink;
use crate::service::ServiceError;
use crate::service::publisher::Publisher;

use super::{Backoff, STREAM_POLL};

/// A failed batch is an error, so Lambda retries it (events keep their ids).
pub async fn handle_lambda_event<K: EventSink>(
    publisher: &Publisher<K>,
    event: &Value,
) -> Result<Value, ServiceError> {
    let events = publisher.publish(&changes_in_lambda_event(event)).await?;
    Ok(serde_json::json!({"published": events.len()}))
}

/// The local loop. Changes stay pending until published, so an outage
/// delays events but loses none.
pub async fn poll_table_stream<K: EventSink>(
    publisher: &Publisher<K>,
    stream: &mut TableStreamReader,
    shutdown: impl Future<Output = ()>,
) {
    let work = async {
        let mut backoff = Backoff::default();
        let mut pending: Vec<ItemChange> = Vec::new();
        loop {
            let pause = match stream.next_changes().await {
                Err(err) => {
                    tracing::warn!(error = %err, "reading the table stream failed");
                    backoff.failed()
                }
                Ok(changes) => {
                    pending.extend(changes);
                    match publisher.publish(&pending).await {
                        Ok(_) => {
                            pending.clear();
                            backoff.succeeded();
                            STREAM_POLL
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, "publishing events failed; retrying");
                            backoff.failed()
                        }
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
