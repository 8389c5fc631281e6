//! Cost per million admitted users at list prices (`prices`), from the calls
//! counted in the end-to-end run, the measured durations, and the polls a
//! user makes while waiting, following the status answer's own cadence.

use std::time::Duration;

use waiting_room::domain::estimate::poll_interval;

use crate::prices::*;

/// Index maintenance per admitted user, which the counted requests do not
/// show: the line-index entry written at the join, rewritten when the
/// granter numbers the session (the ticket is projected) and removed at
/// admission, the expiry-index entry written at admission and removed at
/// the exit (1 WRU each, items under 1 KB). A waiting user's presence
/// refresh rewrites the line-index entry too (counted per poll, not here).
pub const INDEX_WRITE_UNITS_PER_ADMITTED_USER: f64 = 5.0;

/// What one admitted user costs, by service, in dollars.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct UserCost {
    pub dynamodb: f64,
    pub sqs: f64,
    pub sns: f64,
    pub lambda: f64,
    pub api_gateway: f64,
}

impl UserCost {
    pub fn total(&self) -> f64 {
        self.dynamodb + self.sqs + self.sns + self.lambda + self.api_gateway
    }
}

/// Counted per admitted user (outside polling), and per poll.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Usage {
    pub write_units: f64,
    pub read_units: f64,
    pub sqs_requests: f64,
    pub sns_publishes: f64,
    /// Lambda invocations and their billed seconds (at `memory_gb` each).
    pub invocations: f64,
    pub gb_seconds: f64,
    pub http_requests: f64,
}

impl Usage {
    pub fn cost(&self) -> UserCost {
        UserCost {
            dynamodb: self.write_units * DYNAMODB_PER_WRITE_UNIT
                + self.read_units * DYNAMODB_PER_READ_UNIT,
            sqs: self.sqs_requests * SQS_FIFO_PER_REQUEST,
            sns: self.sns_publishes * SNS_FIFO_PER_PUBLISH,
            lambda: self.invocations * LAMBDA_PER_REQUEST
                + self.gb_seconds * LAMBDA_ARM_PER_GB_SECOND,
            api_gateway: self.http_requests * HTTP_API_PER_REQUEST,
        }
    }

    pub fn plus(&self, other: &Usage, times: f64) -> Usage {
        Usage {
            write_units: self.write_units + other.write_units * times,
            read_units: self.read_units + other.read_units * times,
            sqs_requests: self.sqs_requests + other.sqs_requests * times,
            sns_publishes: self.sns_publishes + other.sns_publishes * times,
            invocations: self.invocations + other.invocations * times,
            gb_seconds: self.gb_seconds + other.gb_seconds * times,
            http_requests: self.http_requests + other.http_requests * times,
        }
    }
}

/// Lambda bills whole milliseconds.
pub fn billed_gb_seconds(duration_ms: f64, memory_gb: f64) -> f64 {
    duration_ms.ceil() / 1000.0 * memory_gb
}

/// Status calls of a user who waits `wait` in a line that admits
/// `admits_per_second`, polling when each answer says (the last poll sees
/// `ACTIVE`).
pub fn polls_while_waiting(
    wait: Duration,
    admits_per_second: f64,
    abandon_after: Option<Duration>,
) -> u64 {
    let mut waited = Duration::ZERO;
    let mut polls = 0;
    while waited < wait {
        let remaining = wait - waited;
        let ahead = (remaining.as_secs_f64() * admits_per_second) as u64;
        waited += poll_interval(Some(ahead), Some(remaining), abandon_after);
        polls += 1;
    }
    polls + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_adapt_to_the_place_in_line() {
        let ten_minutes = polls_while_waiting(Duration::from_secs(600), 50.0, None);
        // Minutes apart far back, 2 s apart near the front: about ten, not
        // the 300 of a fixed two-second poll.
        assert!((5..=15).contains(&ten_minutes), "{ten_minutes}");
        let front = polls_while_waiting(Duration::from_secs(4), 50.0, None);
        assert!(front <= 4, "{front}");
    }

    #[test]
    fn cost_adds_up_by_service() {
        let usage = Usage {
            write_units: 1e6,
            read_units: 1e6,
            sqs_requests: 1e6,
            sns_publishes: 1e6,
            invocations: 1e6,
            gb_seconds: 0.0,
            http_requests: 1e6,
        };
        let cost = usage.cost();
        assert!((cost.dynamodb - 0.75).abs() < 1e-9);
        assert!((cost.total() - (0.75 + 0.5 + 0.3 + 0.2 + 1.0)).abs() < 1e-9);
    }
}
