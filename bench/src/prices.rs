//! AWS list prices used for the cost estimate: us-east-1, on-demand, as
//! published on each service's pricing page, recorded 2026-11-23. They
//! change; the source is next to each, so the estimate can be redone.

/// https://aws.amazon.com/dynamodb/pricing/on-demand/ — per write request unit.
pub const DYNAMODB_PER_WRITE_UNIT: f64 = 0.625 / 1e6;
/// https://aws.amazon.com/dynamodb/pricing/on-demand/ — per read request unit.
pub const DYNAMODB_PER_READ_UNIT: f64 = 0.125 / 1e6;
/// https://aws.amazon.com/sqs/pricing/ — FIFO queues, per request (64 KB).
pub const SQS_FIFO_PER_REQUEST: f64 = 0.50 / 1e6;
/// https://aws.amazon.com/sns/pricing/ — FIFO topics, per publish request
/// (the payload charge, about $0.017/GB, adds well under a cent per million
/// 1 KB events and is left out).
pub const SNS_FIFO_PER_PUBLISH: f64 = 0.30 / 1e6;
/// https://aws.amazon.com/lambda/pricing/ — per request.
pub const LAMBDA_PER_REQUEST: f64 = 0.20 / 1e6;
/// https://aws.amazon.com/lambda/pricing/ — per GB-second, Arm (Graviton).
pub const LAMBDA_ARM_PER_GB_SECOND: f64 = 0.000_013_333_4;
/// https://aws.amazon.com/api-gateway/pricing/ — HTTP APIs, first 300 M.
pub const HTTP_API_PER_REQUEST: f64 = 1.00 / 1e6;
/// The memory every function is deployed with (infra/template.yaml).
pub const LAMBDA_MEMORY_GB: f64 = 128.0 / 1024.0;
