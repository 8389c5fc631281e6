//! Cold start and peak memory of every function binary, each run under the
//! Runtime API stub exactly as Lambda runs it (release build, the settings
//! `make bench` provisions), next to the Python + boto3 baseline.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::runtime_api::RuntimeApi;
use crate::stats::median;

/// How a function is started: its binary, or the Python baseline.
#[derive(Debug, Clone)]
pub enum Launch {
    Binary(PathBuf),
    Python {
        interpreter: PathBuf,
        script: PathBuf,
    },
}

impl Launch {
    fn command(&self) -> Command {
        match self {
            Launch::Binary(path) => Command::new(path),
            Launch::Python {
                interpreter,
                script,
            } => {
                let mut command = Command::new(interpreter);
                command.arg(script);
                command
            }
        }
    }
}

fn spawn(launch: &Launch, api: &RuntimeApi, name: &str) -> std::io::Result<Child> {
    launch
        .command()
        .env("AWS_LAMBDA_RUNTIME_API", api.address.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", name)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
}

/// Exec to the first request for an event (the runtime is initialised:
/// settings read, SDK clients built), `runs` times; the median.
pub async fn cold_start(launch: &Launch, name: &str, runs: usize) -> std::io::Result<Duration> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let mut api = RuntimeApi::start(Vec::new()).await?;
        let started = Instant::now();
        let mut child = spawn(launch, &api, name)?;
        let ready = api.first_polled(Duration::from_secs(30)).await;
        let _ = child.kill().await;
        samples.push(ready?.duration_since(started));
    }
    Ok(median(&mut samples))
}

/// Peak resident memory (VmHWM) after answering `events`, in bytes.
pub async fn peak_rss(launch: &Launch, name: &str, events: Vec<Value>) -> std::io::Result<u64> {
    let count = events.len();
    let mut api = RuntimeApi::start(events).await?;
    let mut child = spawn(launch, &api, name)?;
    let answered = api.answered(count, Duration::from_secs(600)).await;
    let peak = child.id().map(vm_hwm).transpose();
    let _ = child.kill().await;
    answered?;
    if !api.errors().is_empty() {
        return Err(std::io::Error::other(format!(
            "{name} failed {} of {count} events, e.g. {:?}",
            api.errors().len(),
            api.errors().first()
        )));
    }
    peak?.ok_or_else(|| std::io::Error::other("the process is gone"))
}

fn vm_hwm(pid: u32) -> std::io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kb| kb * 1024)
        .ok_or_else(|| std::io::Error::other("no VmHWM in /proc status"))
}

/// An API Gateway HTTP API (payload 2.0) request, as Lambda receives it.
pub fn http_event(method: &str, path: &str, body: Option<&Value>) -> Value {
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "host": "bench.local"},
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "bench",
            "domainName": "bench.local",
            "domainPrefix": "bench",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": "bench"},
            "requestId": "bench",
            "routeKey": "$default",
            "stage": "$default",
            "time": "23/Nov/2026:00:00:00 +0000",
            "timeEpoch": 0
        },
        "body": body.map(Value::to_string),
        "isBase64Encoded": false
    })
}

/// An SQS event with one message.
pub fn sqs_event(body: &Value, n: usize, queue_arn: &str, fifo_group: Option<&str>) -> Value {
    let mut attributes = json!({
        "ApproximateReceiveCount": "1",
        "SentTimestamp": "0",
        "SenderId": "bench",
        "ApproximateFirstReceiveTimestamp": "0"
    });
    if let Some(group) = fifo_group {
        attributes["MessageGroupId"] = json!(group);
        attributes["MessageDeduplicationId"] = json!(format!("bench-{n}"));
        attributes["SequenceNumber"] = json!(n.to_string());
    }
    json!({"Records": [{
        "messageId": format!("bench-{n}"),
        "receiptHandle": format!("bench-{n}"),
        "body": body.to_string(),
        "attributes": attributes,
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": "us-east-1"
    }]})
}

pub fn scheduled_event() -> Value {
    json!({
        "version": "0", "id": "bench", "detail-type": "Scheduled Event",
        "source": "aws.events", "account": "000000000000",
        "time": "2026-11-23T00:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:000000000000:rule/sweeper"], "detail": {}
    })
}

pub fn authorizer_event(token: &str) -> Value {
    json!({
        "version": "2.0", "type": "REQUEST",
        "routeArn": "arn:aws:execute-api:us-east-1:000000000000:bench/$default/GET/checkout",
        "identitySource": [format!("Bearer {token}")],
        "routeKey": "GET /checkout", "rawPath": "/checkout", "rawQueryString": "",
        "headers": {"authorization": format!("Bearer {token}")},
        "requestContext": {
            "accountId": "000000000000", "apiId": "bench", "domainName": "bench.local",
            "domainPrefix": "bench",
            "http": {"method": "GET", "path": "/checkout", "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": "bench"},
            "requestId": "bench", "routeKey": "GET /checkout", "stage": "$default",
            "time": "23/Nov/2026:00:00:00 +0000", "timeEpoch": 0
        }
    })
}

/// A DynamoDB stream event with one record: `image` (already in the
/// stream's typed JSON) inserted.
pub fn stream_event(image: &Value, n: usize) -> Value {
    json!({"Records": [{
        "eventID": format!("bench-{n}"),
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "Keys": {"pk": image["pk"].clone()},
            "NewImage": image,
            "SequenceNumber": format!("{n:021}"),
            "SizeBytes": 200,
            "StreamViewType": "NEW_AND_OLD_IMAGES"
        },
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:000000000000:table/bench/stream/2026"
    }]})
}

/// The binaries of every function in `target/release`.
pub fn binaries(release_dir: &Path) -> HashMap<&'static str, PathBuf> {
    waiting_room::setup::wiring::FUNCTIONS
        .iter()
        .map(|name| (*name, release_dir.join(name)))
        .collect()
}
