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
use std::pin::Pin;
use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde::Serialize;
use serde::de::DeserializeOwned;

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
    /// `poll [ARGS…]`: a local worker; the arguments after `poll`.
    Poll(Vec<String>),
}

impl Mode {
    /// From the process arguments (without the program name).
    pub fn from_args(mut args: impl Iterator<Item = String>) -> Result<Self, String> {
        match args.next().as_deref() {
            None => Ok(Mode::Lambda),
            Some("poll") => Ok(Mode::Poll(args.collect())),
            Some(other) => Err(format!(
                "unknown mode {other:?}: run without arguments in Lambda, or `poll` locally"
            )),
        }
    }

    /// This process's mode.
    pub fn of_process() -> Result<Self, String> {
        Self::from_args(std::env::args().skip(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(args: &[&str]) -> Result<Mode, String> {
        Mode::from_args(args.iter().map(|a| (*a).to_owned()))
    }

    #[test]
    fn no_arguments_is_lambda_and_poll_keeps_what_follows() {
        assert_eq!(mode(&[]), Ok(Mode::Lambda));
        assert_eq!(mode(&["poll"]), Ok(Mode::Poll(vec![])));
        assert_eq!(
            mode(&["poll", "--checkpoint", "f"]),
            Ok(Mode::Poll(vec!["--checkpoint".into(), "f".into()]))
        );
    }

    #[test]
    fn any_other_mode_is_refused_with_the_usage() {
        let refused = mode(&["serve"]).unwrap_err();
        assert!(
            refused.contains("\"serve\"") && refused.contains("`poll`"),
            "{refused}"
        );
    }
}
