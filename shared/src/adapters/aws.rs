//! AWS SDK set-up shared by every binary.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;

/// Short timeouts: a DynamoDB or SQS call answers in milliseconds, and a
/// handler that hangs on a dead endpoint holds a user longer than an error
/// that lets them retry. `AWS_ENDPOINT_URL` (the emulator) and credentials
/// come from the environment as usual.
pub async fn sdk_config() -> aws_config::SdkConfig {
    sdk_config_for(None).await
}

/// As `sdk_config`, pointed at `endpoint` when given (the admin CLI's
/// `--endpoint-url`); otherwise `AWS_ENDPOINT_URL` or AWS itself.
pub async fn sdk_config_for(endpoint: Option<&str>) -> aws_config::SdkConfig {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(Duration::from_secs(3))
        .operation_timeout(Duration::from_secs(8))
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(timeouts);
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    loader.load().await
}

pub fn dynamodb_client(config: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(config)
}

pub fn sqs_client(config: &aws_config::SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(config)
}

/// Timeouts for a long-polling receive, which legitimately waits up to `wait`.
pub fn long_poll_timeouts(wait: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(wait + Duration::from_secs(5))
        .operation_timeout(wait + Duration::from_secs(10))
        .build()
}

pub fn sns_client(config: &aws_config::SdkConfig) -> aws_sdk_sns::Client {
    aws_sdk_sns::Client::new(config)
}
