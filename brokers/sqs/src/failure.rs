//! What kind of failure an SQS error is ([`FailureKind`]), the SDK's error kept as the source:
//! only a failed connection, a timeout, throttling or a server error is worth trying again.

use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use conveyor_core::{Error, FailureKind};

/// Error codes SQS answers when it cannot serve for now.
const UNAVAILABLE: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "RequestThrottled",
    "ServiceUnavailable",
    "InternalError",
    "InternalFailure",
    "KmsThrottled",
    "KMSThrottling",
];

/// An SDK error, shown with its whole chain of causes (the SDK's own `Display` says only
/// "service error"), and kept as the source.
#[derive(Debug)]
struct SqsError {
    text: String,
    inner: Box<dyn std::error::Error + Send + Sync>,
}

impl std::fmt::Display for SqsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for SqsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.inner)
    }
}

/// The kind of an SDK call's error.
pub(crate) fn kind_of<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> FailureKind {
    match e {
        SdkError::TimeoutError(_) => FailureKind::Timeout,
        SdkError::DispatchFailure(d) if d.is_timeout() => FailureKind::Timeout,
        SdkError::DispatchFailure(d) if d.is_user() => FailureKind::Rejected,
        SdkError::DispatchFailure(_) => FailureKind::Connection,
        SdkError::ResponseError(_) => FailureKind::Protocol,
        SdkError::ConstructionFailure(_) => FailureKind::Rejected,
        SdkError::ServiceError(s) => service_kind(s.err().code(), s.raw().status().as_u16()),
        _ => FailureKind::Unavailable,
    }
}

/// The kind of an error SQS answered: by its code, else by its HTTP status.
pub(crate) fn service_kind(code: Option<&str>, status: u16) -> FailureKind {
    match code {
        Some(c) if UNAVAILABLE.contains(&c) => FailureKind::Unavailable,
        _ if status >= 500 || status == 429 => FailureKind::Unavailable,
        _ => FailureKind::Rejected,
    }
}

/// An SDK call's error as a broker error of its kind.
pub(crate) fn err<E>(e: SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let kind = kind_of(&e);
    let text = DisplayErrorContext(&e).to_string();
    Error::broker_failure(kind, SqsError { text, inner: Box::new(e) })
}

/// A request the SDK refused to build (a missing field): a bug, not worth trying again.
pub(crate) fn build_err(e: aws_sdk_sqs::error::BuildError) -> Error {
    let text = DisplayErrorContext(&e).to_string();
    Error::broker_failure(FailureKind::Rejected, SqsError { text, inner: Box::new(e) })
}

/// One entry of a batch call that failed: SQS says whether the sender was at fault.
pub(crate) fn entry_err(sender_fault: bool, code: &str, message: Option<&str>) -> Error {
    let kind = if sender_fault { FailureKind::Rejected } else { service_kind(Some(code), 500) };
    Error::broker_failure(kind, format!("{code}: {}", message.unwrap_or("failed")))
}

/// A failure of the broker's own, of a known kind.
pub(crate) fn fail(kind: FailureKind, msg: impl Into<String>) -> Error {
    Error::broker_failure(kind, msg.into())
}
