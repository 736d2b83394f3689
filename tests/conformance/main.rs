//! The conformance suite: one set of behaviours every broker and result backend must pass.
//!
//! The behaviours live in the `conveyor-conformance` crate (`conformance/`), written once
//! against `Arc<dyn Broker>` and `Arc<dyn ResultBackend>` and exported for other brokers'
//! authors; `conformance_suite!` instantiates all of them as `#[tokio::test]`s for one factory.
//! Each broker adds a module here that calls the macro (the memory broker runs under plain
//! `cargo test`); the other files are tests of one broker's faults and edges.

#[macro_use]
extern crate conveyor_conformance;
use conveyor_conformance as suite;
#[cfg(feature = "amqp")]
mod amqp;
#[cfg(feature = "amqp")]
mod amqp_faults;
#[cfg(any(feature = "redis", feature = "amqp"))]
mod auth;
mod client;
mod connect;
#[cfg(any(feature = "redis", feature = "amqp", feature = "sqs"))]
mod faults;
mod file_broker;
mod handlers;
mod memory;
#[cfg(all(feature = "redis", feature = "amqp", feature = "sqs"))]
mod pairings;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
mod redis_faults;
#[cfg(feature = "redis")]
mod redis_records;
#[cfg(feature = "redis")]
mod redis_streams;
#[cfg(feature = "redis-tls")]
mod redis_tls;
mod secrets;
mod signal;
#[cfg(feature = "sqs")]
mod sqs;
#[cfg(feature = "sqs")]
mod sqs_faults;
#[cfg(feature = "sqs")]
mod sqs_fifo;
