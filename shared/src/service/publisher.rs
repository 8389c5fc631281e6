//! The outbox publisher: turns session changes (and changes of an event's
//! state) from the table's stream into domain events and publishes them, in stream order.
//!
//! Records are independent: one that cannot be read is set aside (it can
//! never become readable) and the rest go on; when publishing fails, the
//! records from the first unpublished one on are reported, so the stream
//! retries exactly those and order per session holds.

use crate::domain::events::{DomainEvent, events_for, events_for_state};
use crate::domain::token::AdmissionSigner;
use crate::domain::{Change, StreamRecord};
use crate::ports::{EventSink, Quarantine};

pub struct Publisher<K, Q> {
    pub sink: K,
    /// Where unreadable records go (a dead-letter queue).
    pub quarantine: Q,
    pub signer: AdmissionSigner,
}

/// What one batch of stream records came to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PublishReport {
    pub published: Vec<DomainEvent>,
    /// Records set aside as unreadable.
    pub quarantined: Vec<String>,
    /// Records to be delivered again (from the first failure on).
    pub failed: Vec<String>,
}

impl<K: EventSink, Q: Quarantine> Publisher<K, Q> {
    /// Publish the events of `records`. Events keep their ids when a record
    /// is delivered again, so consumers see each event once.
    #[tracing::instrument(name = "publish", skip_all, fields(records = records.len()))]
    pub async fn publish(&self, records: &[StreamRecord]) -> PublishReport {
        let mut report = PublishReport::default();
        // Events of consecutive records, sent together; `first` is the
        // record the batch starts with.
        let mut batch: Vec<DomainEvent> = Vec::new();
        let mut first = 0;
        for (index, record) in records.iter().enumerate() {
            let events = match &record.change {
                Ok(Change::Session { old, new }) => {
                    events_for(old.as_deref(), new.as_deref(), &self.signer)
                }
                Ok(Change::StateChanged(change)) => events_for_state(change).into_iter().collect(),
                Ok(Change::Counters { .. } | Change::Other) => Vec::new(),
                Err(unreadable) => {
                    tracing::error!(record = %record.id, problem = %unreadable.reason, "unreadable stream record; setting it aside");
                    if let Err(err) = self
                        .quarantine
                        .quarantine(&record.id, &unreadable.raw, &unreadable.reason)
                        .await
                    {
                        tracing::warn!(record = %record.id, error = %err, "could not set the record aside");
                        if !self.flush_now(&mut batch, &mut report).await {
                            report.failed = ids_from(records, first);
                            return report;
                        }
                        report.failed = ids_from(records, index);
                        return report;
                    }
                    report.quarantined.push(record.id.clone());
                    continue;
                }
            };
            if events.is_empty() {
                continue;
            }
            if batch.len() + events.len() > EVENTS_PER_PUBLISH
                && !batch.is_empty()
                && !self.flush_now(&mut batch, &mut report).await
            {
                report.failed = ids_from(records, first);
                return report;
            }
            if batch.is_empty() {
                first = index;
            }
            batch.extend(events);
        }
        if !self.flush_now(&mut batch, &mut report).await {
            report.failed = ids_from(records, first);
        }
        report
    }

    /// Publishes what is gathered; false if it failed (nothing of it may be
    /// assumed published).
    async fn flush_now(&self, batch: &mut Vec<DomainEvent>, report: &mut PublishReport) -> bool {
        if batch.is_empty() {
            return true;
        }
        match self.sink.publish(batch).await {
            Ok(()) => {
                report.published.append(batch);
                true
            }
            Err(err) => {
                tracing::warn!(events = batch.len(), error = %err, "publishing events failed; the stream delivers them again");
                false
            }
        }
    }
}

/// Events per publish call (SNS takes ten per batch).
const EVENTS_PER_PUBLISH: usize = 10;

fn ids_from(records: &[StreamRecord], index: usize) -> Vec<String> {
    records[index..].iter().map(|r| r.id.clone()).collect()
}
