//! The sweeper runs on an EventBridge schedule in AWS and on an interval
//! locally; both call the same `Sweeper::sweep`.

use std::future::Future;
use std::time::Duration;

use serde_json::Value;

use crate::ports::SessionStore;
use crate::service::ServiceError;
use crate::service::sweeper::Sweeper;

/// The Lambda entry point (the scheduled event's content does not matter).
/// A run with failures reports an error so it shows in the function's alarms.
pub async fn handle_lambda_event<S: SessionStore>(
    sweeper: &Sweeper<S>,
) -> Result<Value, ServiceError> {
    let report = sweeper.sweep().await?;
    tracing::info!(
        expired = report.expired,
        skipped = report.skipped,
        failed = report.failed,
        "swept"
    );
    if report.failed > 0 {
        return Err(ServiceError::Unavailable(format!(
            "{} sessions could not be expired",
            report.failed
        )));
    }
    Ok(serde_json::json!({"expired": report.expired, "skipped": report.skipped}))
}

/// The local loop: a sweep every `interval` until `shutdown`.
pub async fn run_every<S: SessionStore>(
    sweeper: &Sweeper<S>,
    interval: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let work = async {
        loop {
            match sweeper.sweep().await {
                Ok(report) if report.expired > 0 => {
                    tracing::info!(expired = report.expired, "swept")
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "sweep failed; the next one retries"),
            }
            tokio::time::sleep(interval).await;
        }
    };
    tokio::select! {
        () = work => {}
        () = shutdown => {}
    }
}
