//! Logging: JSON lines in AWS (CloudWatch parses them), readable text locally.

use tracing_subscriber::EnvFilter;

/// Whether this process runs as a Lambda function (read once): logs are
/// JSON lines there, and metrics are written for CloudWatch.
pub fn in_lambda() -> bool {
    static IN_LAMBDA: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *IN_LAMBDA.get_or_init(|| std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some())
}

/// Set up `tracing` once at start-up. `RUST_LOG` picks the level (default
/// `info`); logs go to stderr so stdout stays free for CLI output.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let in_lambda = in_lambda();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    // `try_init` fails only if a subscriber is already set, which is fine.
    let _ = if in_lambda {
        // Every line carries its spans: the runtime's (request id) and ours
        // (event, session, batch), so a line is found by any of them.
        builder
            .json()
            .with_current_span(false)
            .with_span_list(true)
            .without_time()
            .try_init()
    } else {
        builder.compact().try_init()
    };
}
