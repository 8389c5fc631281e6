//! The outbox publisher: turns session changes from the table's stream into
//! domain events and publishes them, in stream order.

use crate::adapters::streams::ItemChange;
use crate::events::{DomainEvent, events_for};
use crate::ports::EventSink;
use crate::token::AdmissionSigner;

use super::ServiceError;

pub struct Publisher<K> {
    pub sink: K,
    pub signer: AdmissionSigner,
}

impl<K: EventSink> Publisher<K> {
    /// Publish the events of `changes`; on error nothing may be assumed
    /// published and the caller retries the same changes (ids repeat, so
    /// consumers see each event once).
    pub async fn publish(&self, changes: &[ItemChange]) -> Result<Vec<DomainEvent>, ServiceError> {
        let mut events = Vec::new();
        for change in changes {
            match change.session() {
                None => {}
                Some(Ok(update)) => events.extend(events_for(&update, &self.signer)),
                // Skipping would lose an event; failing keeps the batch for a
                // human to look at while the stream retains it.
                Some(Err(err)) => return Err(err.into()),
            }
        }
        if !events.is_empty() {
            self.sink.publish(&events).await?;
        }
        Ok(events)
    }
}
