//! CloudWatch metrics in the embedded metric format (EMF): each measurement
//! is one JSON line in the function's log, which CloudWatch turns into
//! metrics of the namespace `WaitingRoom` without a single API call.
//!
//! Three edges emit them, each from what it already knows:
//! - the publisher, from the domain events it published: `Joins`,
//!   `Admissions` and `Exits` (by `Reason`), per event;
//! - the granter, when a freed slot's stream record leads to admissions:
//!   `AdmissionLatency` per event, from the record's creation (the slot
//!   freed) to the admitting write;
//! - the sweeper's reconciliation, once a minute: `Active`, `FreeSlots`,
//!   `Waiting` and `QueueAge` (how long the longest-waiting fan at a
//!   shard's front has been admissible) per event, and `StrandedEvents`,
//!   the events where someone waited
//!   longer than a wake-up takes beside a slot that could admit them (what
//!   the stall alarm watches: "looks healthy while doing nothing");
//! - the HTTP handlers: `Errors` by `Kind` (the error code), for the
//!   failures a fan cannot cause.
//!
//! The names here are the ones the template's dashboard and alarms use
//! (`tests/tests/infra_consistency.rs` holds them equal).

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::domain::Timestamp;
use crate::domain::events::{DomainEvent, EventKind};
use crate::service::sweeper::ReconcileReport;

pub const NAMESPACE: &str = "WaitingRoom";

/// Every metric the code emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    Joins,
    Admissions,
    Exits,
    Active,
    FreeSlots,
    Waiting,
    QueueAge,
    AdmissionLatency,
    StrandedEvents,
    Errors,
}

impl Metric {
    pub const ALL: [Metric; 10] = [
        Self::Joins,
        Self::Admissions,
        Self::Exits,
        Self::Active,
        Self::FreeSlots,
        Self::Waiting,
        Self::QueueAge,
        Self::AdmissionLatency,
        Self::StrandedEvents,
        Self::Errors,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Joins => "Joins",
            Self::Admissions => "Admissions",
            Self::Exits => "Exits",
            Self::Active => "Active",
            Self::FreeSlots => "FreeSlots",
            Self::Waiting => "Waiting",
            Self::QueueAge => "QueueAge",
            Self::AdmissionLatency => "AdmissionLatency",
            Self::StrandedEvents => "StrandedEvents",
            Self::Errors => "Errors",
        }
    }

    /// Its CloudWatch unit.
    pub fn unit(self) -> &'static str {
        match self {
            Self::QueueAge => "Seconds",
            Self::AdmissionLatency => "Milliseconds",
            _ => "Count",
        }
    }

    /// The dimensions it is emitted with (one set).
    pub fn dimensions(self) -> &'static [&'static str] {
        match self {
            Self::Joins
            | Self::Admissions
            | Self::Active
            | Self::FreeSlots
            | Self::Waiting
            | Self::QueueAge
            | Self::AdmissionLatency => &["EventId"],
            Self::Exits => &["EventId", "Reason"],
            Self::StrandedEvents => &[],
            Self::Errors => &["Kind"],
        }
    }
}

/// One EMF line: `metrics` (all with the same dimensions) at `at`.
pub fn line(at: Timestamp, dimensions: &[(&str, &str)], metrics: &[(Metric, u64)]) -> String {
    let mut root = Map::new();
    let names: Vec<&str> = dimensions.iter().map(|(name, _)| *name).collect();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": at.as_millis(),
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [names],
                "Metrics": metrics
                    .iter()
                    .map(|(metric, _)| json!({"Name": metric.name(), "Unit": metric.unit()}))
                    .collect::<Vec<_>>(),
            }],
        }),
    );
    for (name, value) in dimensions {
        root.insert((*name).into(), Value::String((*value).to_owned()));
    }
    for (metric, value) in metrics {
        root.insert(metric.name().into(), json!(value));
    }
    Value::Object(root).to_string()
}

/// The lines for the events one publisher batch published.
pub fn of_published(events: &[DomainEvent], at: Timestamp) -> Vec<String> {
    let mut counts: BTreeMap<(&str, Metric, Option<&str>), u64> = BTreeMap::new();
    for event in events {
        let (metric, reason) = match &event.kind {
            EventKind::QueueJoined { .. } => (Metric::Joins, None),
            EventKind::QueueReady { .. } => (Metric::Admissions, None),
            EventKind::QueueLeft { reason } => (Metric::Exits, Some(reason.as_str())),
            EventKind::CheckoutCompleted(_) => (Metric::Exits, Some("checkout_completed")),
            EventKind::CheckoutFailed(_) => (Metric::Exits, Some("checkout_failed")),
            EventKind::CheckoutExpired(_) => (Metric::Exits, Some("checkout_expired")),
            EventKind::EventScheduled { .. }
            | EventKind::EventOpened { .. }
            | EventKind::EventPaused
            | EventKind::EventResumed
            | EventKind::EventClosed => continue,
        };
        *counts
            .entry((event.event_id.as_str(), metric, reason))
            .or_default() += 1;
    }
    counts
        .into_iter()
        .map(|((event, metric, reason), count)| {
            let mut dimensions = vec![("EventId", event)];
            dimensions.extend(reason.map(|r| ("Reason", r)));
            line(at, &dimensions, &[(metric, count)])
        })
        .collect()
}

/// The lines for one reconciliation: each event's gauges, and how many
/// events were stranded.
pub fn of_reconciliation(report: &ReconcileReport, at: Timestamp) -> Vec<String> {
    let mut lines: Vec<String> = report
        .gauges
        .iter()
        .map(|gauge| {
            let mut metrics = vec![
                (Metric::Active, gauge.active),
                (Metric::FreeSlots, gauge.free),
                (Metric::Waiting, gauge.waiting),
            ];
            metrics.extend(gauge.queue_age.map(|age| (Metric::QueueAge, age.as_secs())));
            line(at, &[("EventId", gauge.event_id.as_str())], &metrics)
        })
        .collect();
    lines.push(line(at, &[], &[(Metric::StrandedEvents, report.stranded)]));
    lines
}

/// The line for the admissions a freed slot led to: how long from the
/// slot's freeing to the admitting write.
pub fn of_admission_latency(event: &str, latency: Duration, at: Timestamp) -> String {
    let millis = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
    line(
        at,
        &[("EventId", event)],
        &[(Metric::AdmissionLatency, millis)],
    )
}

/// The line for one failed request (`kind`: its error code).
pub fn of_error(kind: &str, at: Timestamp) -> String {
    line(at, &[("Kind", kind)], &[(Metric::Errors, 1)])
}

/// Writes `lines` to stdout in AWS Lambda, where CloudWatch reads them;
/// elsewhere (tests, benchmarks) nothing is written.
pub fn emit(lines: &[String]) {
    if !super::telemetry::in_lambda() || lines.is_empty() {
        return;
    }
    let mut out = std::io::stdout().lock();
    for line in lines {
        // A metric that cannot be written is not worth failing a request.
        let _ = writeln!(out, "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::EventId;
    use crate::domain::events::CheckoutDetail;
    use crate::service::sweeper::EventGauge;

    fn event(event_id: &str, kind: EventKind) -> DomainEvent {
        DomainEvent {
            id: "x".into(),
            event_id: event_id.into(),
            partition: "p".into(),
            session_id: Some("s".into()),
            user_id: Some("u".into()),
            occurred_at: String::new(),
            kind,
        }
    }

    /// What CloudWatch requires of an EMF line, checked on `line`: every
    /// declared metric and dimension is a member of the root, and values
    /// are numbers.
    fn parsed(line: &str) -> Value {
        let value: Value = serde_json::from_str(line).unwrap();
        let directive = &value["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], NAMESPACE);
        assert!(value["_aws"]["Timestamp"].is_u64());
        for dimension in directive["Dimensions"][0].as_array().unwrap() {
            assert!(value[dimension.as_str().unwrap()].is_string(), "{line}");
        }
        for metric in directive["Metrics"].as_array().unwrap() {
            let name = metric["Name"].as_str().unwrap();
            assert!(value[name].is_u64(), "{line}");
            let known = Metric::ALL.iter().find(|m| m.name() == name).unwrap();
            let declared: Vec<&str> = directive["Dimensions"][0]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_str().unwrap())
                .collect();
            assert_eq!(declared, known.dimensions(), "{line}");
        }
        value
    }

    #[test]
    fn published_events_are_counted_per_event_and_exit_reason() {
        let at = Timestamp::from_millis(1_000);
        let events = [
            event("E1", EventKind::QueueJoined { position: Some(1) }),
            event("E1", EventKind::QueueJoined { position: Some(2) }),
            event("E2", EventKind::QueueJoined { position: None }),
            event(
                "E1",
                EventKind::QueueReady {
                    admission_token: None,
                    expires_at: String::new(),
                },
            ),
            event(
                "E1",
                EventKind::QueueLeft {
                    reason: "abandoned".into(),
                },
            ),
            event(
                "E1",
                EventKind::CheckoutCompleted(CheckoutDetail::default()),
            ),
            event("E1", EventKind::EventPaused),
        ];
        let lines: Vec<Value> = of_published(&events, at)
            .iter()
            .map(|l| parsed(l))
            .collect();
        let summary: Vec<String> = lines
            .iter()
            .map(|l| {
                let metric = l["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"]
                    .as_str()
                    .unwrap();
                let reason = l["Reason"]
                    .as_str()
                    .map(|r| format!("/{r}"))
                    .unwrap_or_default();
                format!(
                    "{} {metric}{reason}={}",
                    l["EventId"].as_str().unwrap(),
                    l[metric]
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                "E1 Joins=2",
                "E1 Admissions=1",
                "E1 Exits/abandoned=1",
                "E1 Exits/checkout_completed=1",
                "E2 Joins=1",
            ]
        );
    }

    #[test]
    fn a_reconciliation_reports_each_events_gauges_and_the_stranded_count() {
        let report = ReconcileReport {
            events: 1,
            stranded: 1,
            gauges: vec![EventGauge {
                event_id: EventId::parse("E1").unwrap(),
                active: 3,
                free: 2,
                waiting: 40,
                queue_age: Some(Duration::from_millis(12_500)),
                stranded: true,
            }],
            ..ReconcileReport::default()
        };
        let lines: Vec<Value> = of_reconciliation(&report, Timestamp::from_millis(5))
            .iter()
            .map(|l| parsed(l))
            .collect();
        assert_eq!(
            (
                &lines[0]["EventId"],
                &lines[0]["Active"],
                &lines[0]["FreeSlots"],
                &lines[0]["Waiting"],
                &lines[0]["QueueAge"]
            ),
            (&json!("E1"), &json!(3), &json!(2), &json!(40), &json!(12))
        );
        let units: Vec<&str> = lines[0]["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Unit"].as_str().unwrap())
            .collect();
        assert_eq!(units, vec!["Count", "Count", "Count", "Seconds"]);
        assert_eq!(lines[1]["StrandedEvents"], 1);
        assert!(
            lines[1].get("EventId").is_none(),
            "one figure for the deployment"
        );
        assert_eq!(
            parsed(&of_error("unavailable", Timestamp::from_millis(5)))["Kind"],
            "unavailable"
        );
        let latency = parsed(&of_admission_latency(
            "E1",
            Duration::from_millis(840),
            Timestamp::from_millis(5),
        ));
        assert_eq!(
            (&latency["AdmissionLatency"], &latency["EventId"]),
            (&json!(840), &json!("E1"))
        );
    }
}
