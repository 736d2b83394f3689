//! What kind of failure a RabbitMQ error is ([`FailureKind`]): only a lost connection, a
//! timeout or a server that cannot serve for now is worth trying again.

use conveyor_core::{Error, FailureKind};
use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
use lapin::ErrorKind;

/// The kind of a lapin error.
pub(crate) fn kind_of(e: &lapin::Error) -> FailureKind {
    match e.kind() {
        ErrorKind::IOError(_)
        | ErrorKind::RuntimeShutdownError(_)
        | ErrorKind::InvalidChannelState(..)
        | ErrorKind::InvalidConnectionState(_)
        | ErrorKind::InvalidChannel(_) => FailureKind::Connection,
        ErrorKind::MissingHeartbeatError => FailureKind::Timeout,
        ErrorKind::ChannelsLimitReached => FailureKind::Unavailable,
        ErrorKind::ProtocolError(amqp) => match amqp.kind() {
            AMQPErrorKind::Hard(AMQPHardError::CONNECTIONFORCED) => FailureKind::Connection,
            // An exclusive queue held by another connection; the server short of a resource.
            AMQPErrorKind::Soft(AMQPSoftError::RESOURCELOCKED)
            | AMQPErrorKind::Hard(AMQPHardError::RESOURCEERROR | AMQPHardError::INTERNALERROR) => {
                FailureKind::Unavailable
            }
            AMQPErrorKind::Hard(
                AMQPHardError::FRAMEERROR | AMQPHardError::CHANNELERROR | AMQPHardError::UNEXPECTEDFRAME,
            ) => FailureKind::Protocol,
            // No route, no queue, access refused, a declaration that conflicts, not allowed...
            _ => FailureKind::Rejected,
        },
        ErrorKind::ParsingError(_) | ErrorKind::SerialisationError(_) | ErrorKind::FutureCompleted => {
            FailureKind::Protocol
        }
        ErrorKind::InvalidProtocolVersion(_) | ErrorKind::AuthProviderError(_) | ErrorKind::NoDefaultRuntime => {
            FailureKind::Rejected
        }
        #[allow(unreachable_patterns)]
        _ => FailureKind::Unavailable,
    }
}

/// A lapin error as a broker error of its kind, the lapin error kept as its source.
pub(crate) fn err(e: lapin::Error) -> Error {
    Error::broker_failure(kind_of(&e), e)
}

/// A failure RabbitMQ answered in a publisher confirm, or one of the broker's own.
pub(crate) fn fail(kind: FailureKind, msg: impl Into<String>) -> Error {
    Error::broker_failure(kind, msg.into())
}

/// A publish RabbitMQ could not route: the queue is gone (deleted by hand, say).
pub(crate) fn unroutable(routing: &str) -> Error {
    fail(FailureKind::Rejected, format!("RabbitMQ could not route the message to `{routing}`"))
}

/// A publish RabbitMQ refused: a quorum queue without a leader or over its length limit, which
/// can pass.
pub(crate) fn nacked() -> Error {
    fail(FailureKind::Unavailable, "RabbitMQ refused the message (publisher nack)")
}
