//! The sweeper runs on an EventBridge schedule in AWS and on an interval
//! locally; both call the same `run_once`: expiry, then reconciliation.

use std::future::Future;
use std::time::Duration;

use serde_json::Value;

use crate::domain::{Clock, SystemClock};
use crate::ports::{EventStore, ExpiryStore, LineStore};
use crate::service::ServiceError;
use crate::service::sweeper::{ReconcileReport, Reconciler, SweepReport, Sweeper};
use crate::setup::metrics;

/// One scheduled run: expire overdue stays, then reconcile every event.
pub async fn run_once<S: ExpiryStore + EventStore + LineStore>(
    sweeper: &Sweeper<S>,
    reconciler: &Reconciler<S>,
) -> Result<(SweepReport, ReconcileReport), ServiceError> {
    let swept = sweeper.sweep().await;
    let reconciled = reconciler.reconcile().await?;
    metrics::emit(&metrics::of_reconciliation(&reconciled, SystemClock.now()));
    // A healthy system repairs nothing: a non-zero `repaired` means some
    // wake-up went missing; `stranded` (a metric, with its alarm) counts
    // the events found so, repaired or not.
    tracing::info!(
        expired = swept.expired,
        skipped = swept.skipped,
        failed = swept.failed,
        reconciled = reconciled.events,
        repaired = reconciled.repaired,
        stranded = reconciled.stranded,
        armed = reconciled.armed,
        cleared = reconciled.cleared,
        reconcile_failed = reconciled.failed,
        "swept"
    );
    Ok((swept, reconciled))
}

/// The Lambda entry point (the scheduled event's content does not matter).
/// A run with failures reports an error so it shows in the function's alarms.
pub async fn handle_lambda_event<S: ExpiryStore + EventStore + LineStore>(
    sweeper: &Sweeper<S>,
    reconciler: &Reconciler<S>,
) -> Result<Value, ServiceError> {
    let (swept, reconciled) = run_once(sweeper, reconciler).await?;
    if swept.failed + reconciled.failed > 0 {
        return Err(ServiceError::Unavailable(format!(
            "{} sessions and {} events could not be handled; the next run retries",
            swept.failed, reconciled.failed
        )));
    }
    Ok(serde_json::json!({
        "expired": swept.expired,
        "skipped": swept.skipped,
        "reconciled": reconciled.events,
        "repaired": reconciled.repaired,
    }))
}

/// The local loop: a run every `interval` until `shutdown`.
pub async fn run_every<S: ExpiryStore + EventStore + LineStore>(
    sweeper: &Sweeper<S>,
    reconciler: &Reconciler<S>,
    interval: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let work = async {
        loop {
            if let Err(err) = run_once(sweeper, reconciler).await {
                tracing::warn!(error = %err, "sweep failed; the next one retries");
            }
            tokio::time::sleep(interval).await;
        }
    };
    tokio::select! {
        () = work => {}
        () = shutdown => {}
    }
}
