//! The sweeper: ends active sessions whose stay is over and gives their slots
//! back, exactly once even with several sweepers and concurrent leaves. It
//! reads the sparse expiry index (active sessions only, by end time), never
//! the table. Waiting users who stopped polling are expired by the granter
//! when they reach the front of the line (docs/decisions/0009-expiry.md).

use crate::domain::session::EXPIRY_BUCKETS;
use crate::ports::SessionStore;

use super::ServiceError;
use super::session_command::SessionCommands;

/// Pages per bucket per run, so a run always ends; the next run continues.
const MAX_PAGES: usize = 50;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    pub expired: u64,
    /// Overdue sessions another party ended or extended first.
    pub skipped: u64,
    pub failed: u64,
}

pub struct Sweeper<S> {
    pub commands: SessionCommands<S>,
    pub page: usize,
}

impl<S: SessionStore> Sweeper<S> {
    pub async fn sweep(&self) -> Result<SweepReport, ServiceError> {
        let mut report = SweepReport::default();
        for bucket in 0..EXPIRY_BUCKETS {
            for _ in 0..MAX_PAGES {
                let now = self.commands.clock.now();
                let overdue = self
                    .commands
                    .store
                    .overdue_sessions(bucket, now, self.page)
                    .await?;
                let mut progressed = false;
                for id in &overdue {
                    match self.commands.expire(id).await {
                        Ok(true) => {
                            report.expired += 1;
                            progressed = true;
                        }
                        Ok(false) => report.skipped += 1,
                        Err(err) => {
                            tracing::warn!(session = %id, error = %err, "could not expire; the next sweep retries");
                            report.failed += 1;
                        }
                    }
                }
                if overdue.len() < self.page || !progressed {
                    break;
                }
            }
        }
        Ok(report)
    }
}
