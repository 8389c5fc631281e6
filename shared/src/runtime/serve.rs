//! How every function binary starts, written once: the Lambda runtime
//! around one handler, and for the workers the choice between Lambda and a
//! local loop. Each `main.rs` only wires its service and names its handler.
//!
//! The runtime is started with `run_concurrent`: in ordinary Lambda (and
//! under `cargo lambda watch`) it answers one invocation at a time, as
//! `run` does; where Lambda asks for concurrency
//! (`AWS_LAMBDA_MAX_CONCURRENCY`, Lambda Managed Instances) it answers that
//! many at once instead of warning and running one by one. The services
//! hold nothing per request, so sharing them between invocations is safe.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::adapters::streams::StartAt;
use crate::service::ServiceError;

/// A handler's future, boxed: its type (the SDK's futures nested many
/// levels deep) then stays out of the runtime's, which rustc could not lay
/// out within its default recursion limit otherwise.
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Answers every HTTP request (API Gateway payload 2.0) with `answer`, which
/// gets the shared `service`. An answer is always a response: errors are
/// already mapped to their HTTP status by the handler.
pub async fn http<T, F, Fut>(service: T, answer: F) -> Result<(), Error>
where
    T: Send + Sync + 'static,
    F: Fn(Arc<T>, lambda_http::Request) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = lambda_http::Response<lambda_http::Body>> + Send + 'static,
{
    let service = Arc::new(service);
    lambda_http::run_concurrent(lambda_http::service_fn(move |request| {
        let (service, answer) = (Arc::clone(&service), answer.clone());
        let answered = Box::pin(answer(service, request))
            as BoxFuture<lambda_http::Response<lambda_http::Body>>;
        async move { Ok::<_, Error>(answered.await) }
    }))
    .await
}

/// Answers every Lambda event, typed `E`, with `answer`. A payload that is
/// not an `E` is refused by the runtime before `answer` runs, as an error
/// Lambda reports and retries by its rules.
pub async fn events<T, E, R, F, Fut>(service: T, answer: F) -> Result<(), Error>
where
    T: Send + Sync + 'static,
    E: DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
    F: Fn(Arc<T>, E) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<R, ServiceError>> + Send + 'static,
{
    let service = Arc::new(service);
    lambda_runtime::run_concurrent(service_fn(move |event: LambdaEvent<E>| {
        let (service, answer) = (Arc::clone(&service), answer.clone());
        let answered =
            Box::pin(answer(service, event.payload)) as BoxFuture<Result<R, ServiceError>>;
        async move { answered.await.map_err(Error::from) }
    }))
    .await
}

/// How a worker binary was asked to run.
#[derive(Debug, PartialEq, Eq)]
pub enum Mode {
    /// No arguments: a Lambda function.
    Lambda,
    /// `poll [OPTIONS]`: a local worker.
    Poll(PollOptions),
}

/// An option a local worker may take after `poll`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollFlag {
    /// `--checkpoint FILE`: a stream reader continues from the position
    /// saved in FILE (`make run` gives each stream worker one).
    Checkpoint,
    /// `--every SECONDS`: how often a scheduled job runs.
    Every,
}

impl PollFlag {
    fn name(self) -> &'static str {
        match self {
            PollFlag::Checkpoint => "--checkpoint",
            PollFlag::Every => "--every",
        }
    }

    fn usage(self) -> &'static str {
        match self {
            PollFlag::Checkpoint => "[--checkpoint FILE]",
            PollFlag::Every => "[--every SECONDS]",
        }
    }
}

/// What a local worker was given after `poll`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PollOptions {
    pub checkpoint: Option<PathBuf>,
    pub every: Option<Duration>,
}

impl PollOptions {
    /// Where a stream reader starts: after its checkpoint, or (without one)
    /// at the newest record.
    pub fn stream_start(&self) -> StartAt {
        self.checkpoint
            .clone()
            .map_or(StartAt::Newest, StartAt::Checkpoint)
    }
}

impl Mode {
    /// From the process arguments (without the program name), for a worker
    /// that takes `accepts` after `poll`. Every worker parses here, so
    /// every one answers a wrong argument the same way.
    pub fn from_args(
        mut args: impl Iterator<Item = String>,
        accepts: &[PollFlag],
    ) -> Result<Self, String> {
        let usage = || {
            let command = accepts.iter().fold("poll".to_owned(), |command, flag| {
                command + " " + flag.usage()
            });
            format!("usage: run without arguments in Lambda, or `{command}` locally")
        };
        match args.next().as_deref() {
            None => return Ok(Mode::Lambda),
            Some("poll") => {}
            Some(other) => return Err(format!("unknown mode {other:?}; {}", usage())),
        }
        let mut options = PollOptions::default();
        while let Some(arg) = args.next() {
            let flag = accepts
                .iter()
                .find(|f| f.name() == arg)
                .ok_or_else(|| format!("unknown option {arg:?}; {}", usage()))?;
            let value = args
                .next()
                .ok_or_else(|| format!("{arg} needs a value; {}", usage()))?;
            match flag {
                PollFlag::Checkpoint if options.checkpoint.is_none() => {
                    options.checkpoint = Some(value.into());
                }
                PollFlag::Every if options.every.is_none() => {
                    let seconds =
                        value
                            .parse::<u64>()
                            .ok()
                            .filter(|s| *s > 0)
                            .ok_or_else(|| {
                                format!(
                                    "--every takes a whole number of seconds above 0, not {value:?}"
                                )
                            })?;
                    options.every = Some(Duration::from_secs(seconds));
                }
                _ => return Err(format!("{arg} given twice; {}", usage())),
            }
        }
        Ok(Mode::Poll(options))
    }

    /// This process's mode.
    pub fn of_process(accepts: &[PollFlag]) -> Result<Self, String> {
        Self::from_args(std::env::args().skip(1), accepts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(args: &[&str], accepts: &[PollFlag]) -> Result<Mode, String> {
        Mode::from_args(args.iter().map(|a| (*a).to_owned()), accepts)
    }

    #[test]
    fn no_arguments_is_lambda_and_poll_takes_its_options() {
        let both = [PollFlag::Checkpoint, PollFlag::Every];
        assert_eq!(mode(&[], &[]), Ok(Mode::Lambda));
        assert_eq!(mode(&["poll"], &[]), Ok(Mode::Poll(PollOptions::default())));
        assert_eq!(
            mode(&["poll", "--every", "5", "--checkpoint", "f"], &both),
            Ok(Mode::Poll(PollOptions {
                checkpoint: Some("f".into()),
                every: Some(Duration::from_secs(5)),
            }))
        );
    }

    #[test]
    fn a_poller_starts_at_its_checkpoint_or_at_the_newest_record() {
        let start = |args: &[&str]| match mode(args, &[PollFlag::Checkpoint]) {
            Ok(Mode::Poll(options)) => options.stream_start(),
            other => panic!("{other:?}"),
        };
        assert_eq!(start(&["poll"]), StartAt::Newest);
        assert_eq!(
            start(&["poll", "--checkpoint", ".local/granter.stream"]),
            StartAt::Checkpoint(".local/granter.stream".into())
        );
    }

    #[test]
    fn each_wrong_argument_is_named_in_its_error() {
        let checkpoint = [PollFlag::Checkpoint];
        let cases: [(&[&str], &[PollFlag], &str); 7] = [
            (&["serve"], &checkpoint, "unknown mode \"serve\""),
            (
                &["poll", "--from", "x"],
                &checkpoint,
                "unknown option \"--from\"",
            ),
            (
                &["poll", "--every", "5"],
                &checkpoint,
                "unknown option \"--every\"",
            ),
            (
                &["poll", "--checkpoint"],
                &checkpoint,
                "--checkpoint needs a value",
            ),
            (
                &["poll", "--checkpoint", "a", "--checkpoint", "b"],
                &checkpoint,
                "--checkpoint given twice",
            ),
            (
                &["poll", "--every", "0"],
                &[PollFlag::Every],
                "above 0, not \"0\"",
            ),
            (
                &["poll", "--every", "soon"],
                &[PollFlag::Every],
                "not \"soon\"",
            ),
        ];
        for (args, accepts, expected) in cases {
            let err = mode(args, accepts).unwrap_err();
            assert!(err.contains(expected), "{args:?}: {err}");
        }
        assert_eq!(
            mode(&["poll", "-x"], &checkpoint).unwrap_err(),
            "unknown option \"-x\"; usage: run without arguments in Lambda, or `poll [--checkpoint FILE]` locally"
        );
    }
}
