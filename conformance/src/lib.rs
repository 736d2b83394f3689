//! The conformance suite of [Conveyor](https://crates.io/crates/conveyor): the behaviours every
//! broker and result backend must show, written once against `Arc<dyn Broker>` and
//! `Arc<dyn ResultBackend>`, and run by Conveyor on its in-memory, Redis, RabbitMQ and SQS
//! brokers. The author of a new broker or backend runs the same behaviours on theirs:
//!
//! ```ignore
//! // tests/conformance.rs of your broker's crate (dev-dependencies: conveyor-conformance, tokio)
//! use std::sync::Arc;
//! use conveyor_conformance::{conformance_suite, Env};
//!
//! async fn env() -> Env {
//!     let broker = Arc::new(MyBroker::connect("my://localhost").await.unwrap());
//!     Env::new(broker, Arc::new(conveyor::memory::MemoryBackend::new()))
//! }
//!
//! conformance_suite!(env);
//! ```
//!
//! `conformance_suite!` expands to one `#[tokio::test]` per behaviour; each calls the factory
//! for a fresh [`Env`] and names its queues after a namespace of its own, so the tests can
//! share one server. The modules hold the behaviours by area; [`faulty`] has the wrappers that
//! inject publish failures and partitions. docs/writing-a-broker.md walks through it.

// The behaviours are test functions named for what they check; their docs say why.
#![allow(missing_docs)]

pub mod basic;
pub mod failures;
pub mod faulty;
pub mod inspect;
pub mod launch;
pub mod outages;
pub mod periodic;
pub mod scheduling;
pub mod stale;
pub mod tasks;
pub mod unique;
pub mod wf_tasks;
pub mod worker;
pub mod workflows;

use std::sync::Arc;
use std::time::Duration;

use conveyor::{Broker, CancellationToken, Client, ResultBackend, WorkerBuilder};

/// What a test gets: a broker, a backend, and a namespace for its queue names so that tests
/// can share a server without touching each other's queues.
pub struct Env {
    pub broker: Arc<dyn Broker>,
    pub backend: Arc<dyn ResultBackend>,
    pub ns: String,
}

impl Env {
    pub fn new(broker: Arc<dyn Broker>, backend: Arc<dyn ResultBackend>) -> Self {
        Env { broker, backend, ns: format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]) }
    }

    /// A queue name unique to this test.
    pub fn q(&self, name: &str) -> String {
        format!("{}-{name}", self.ns)
    }

    pub fn client(&self) -> Client {
        Client::new(self.broker.clone(), self.backend.clone())
    }

    /// A worker builder with the suite's tasks registered and test-friendly timings.
    pub fn worker(&self) -> WorkerBuilder {
        self.worker_on(self.backend.clone())
    }

    /// The same, recording in `backend`.
    pub fn worker_on(&self, backend: Arc<dyn ResultBackend>) -> WorkerBuilder {
        self.builder(self.broker.clone(), backend)
    }

    /// The same, reaching the broker through `broker` (a wrapper that injects faults).
    pub fn worker_via(&self, broker: Arc<dyn Broker>) -> WorkerBuilder {
        self.builder(broker, self.backend.clone())
    }

    /// A worker builder on `broker` and `backend` (wrappers that inject faults).
    pub fn builder(&self, broker: Arc<dyn Broker>, backend: Arc<dyn ResultBackend>) -> WorkerBuilder {
        conveyor::Worker::builder(broker, backend)
            .register(tasks::probe)
            .register(wf_tasks::add)
            .register(wf_tasks::double)
            .register(wf_tasks::sum)
            .register(wf_tasks::fail)
            .register(wf_tasks::record)
            .register(stale::stale)
            .lease(Duration::from_secs(5))
            .shutdown_timeout(Duration::from_secs(5))
            .retry_policy(|_: u32, _: &conveyor::TaskError, _: &conveyor::TaskMessage| Duration::from_millis(100))
    }
}

/// A worker running in the background.
pub struct Running {
    stop: CancellationToken,
    handle: tokio::task::JoinHandle<conveyor::Result<()>>,
}

impl Running {
    pub fn start(builder: WorkerBuilder) -> Self {
        let worker = builder.build().expect("worker config");
        let stop = CancellationToken::new();
        let handle = tokio::spawn(worker.run_until(stop.clone()));
        Running { stop, handle }
    }

    /// Shuts down gracefully and waits for it.
    pub async fn stop(self) {
        self.stop.cancel();
        self.handle.await.expect("worker task").expect("worker result");
    }
}

/// Waits until `f` returns true, polling, or panics after `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out after {timeout:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Instantiates the inspector's behaviours on queues and archives (see [`inspect`]) as
/// `#[tokio::test]`s: what every broker that offers
/// [`Broker::inspect`](conveyor::Broker::inspect) does, RabbitMQ and SQS included.
#[macro_export]
macro_rules! inspector_archive_suite {
    ($env:path) => {
        $crate::conformance_suite!(@each $env;
            inspect::queues_are_found,
            inspect::archived_task_runs_again_and_completes,
            inspect::two_operators_running_one_archived_task_run_it_once,
            inspect::archived_tasks_are_deleted_one_or_all,
            inspect::running_task_is_cancelled,
            inspect::history_counts_processed_and_failed,
            inspect::completed_tasks_are_listed_and_counted,
            periodic::entries_are_listed_for_operators,
        );
    };
}

/// Instantiates every behaviour of the inspector (see [`inspect`]) as `#[tokio::test]`s, for a
/// broker that lists and acts on waiting tasks too (memory, Redis).
#[macro_export]
macro_rules! inspector_suite {
    ($env:path) => {
        $crate::inspector_archive_suite!($env);
        $crate::conformance_suite!(@each $env;
            inspect::queues_are_found_with_their_counts,
            inspect::tasks_are_listed_by_state_and_paged,
            inspect::operator_archives_runs_and_deletes,
            inspect::actions_that_do_not_apply_are_refused,
            inspect::bulk_actions_move_every_task_of_a_state,
            inspect::retrying_tasks_are_told_apart_and_run_now,
            inspect::counts_stay_exact_after_operator_actions,
        );
    };
}

/// Instantiates every behaviour of the suite as a `#[tokio::test]`, for the factory `$env`
/// (an `async fn() -> Env`).
#[macro_export]
macro_rules! conformance_suite {
    ($env:path) => {
        $crate::conformance_suite!(@tests $env;
            basic::publish_receive_ack,
            basic::results_and_states,
            basic::duplicate_task_id_is_a_conflict,
            basic::payload_over_limit_is_refused,
            basic::bulk_enqueue,
            scheduling::delay_is_never_early,
            scheduling::retry_uses_backoff_then_succeeds,
            scheduling::retry_after_from_handler,
            failures::archive_after_retries_with_reason,
            failures::skip_retry_archives_at_once,
            failures::timeout_fails_the_attempt,
            failures::deadline_passed_archives_without_running,
            failures::unknown_task_is_archived,
            failures::unknown_task_can_be_requeued,
            failures::undecodable_payload_is_archived,
            failures::oversized_delivery_is_archived_unparsed,
            failures::bad_args_are_archived_not_retried,
            failures::panic_is_a_failure_and_worker_goes_on,
            failures::archived_id_can_be_enqueued_again,
            worker::concurrency_is_bounded,
            worker::strict_priority_drains_higher_first,
            worker::weighted_priority_follows_weights,
            worker::pause_holds_tasks_until_resume,
            worker::running_task_is_recorded_active,
            worker::shutdown_hands_unfinished_tasks_back,
            worker::shutdown_waits_for_running_tasks,
            worker::prefetched_task_is_handed_back_not_started,
            worker::abandoned_lease_is_redelivered,
            worker::completed_task_delivered_again_is_not_rerun,
            worker::middleware_wraps_every_attempt,
            worker::interrupted_handler_hands_task_back,
            worker::lost_lease_counts_as_an_attempt,
            worker::lease_lost_before_the_handler_started_costs_no_attempt,
            worker::handed_back_after_a_lost_lease_runs_to_completion,
            worker::panicking_middleware_is_contained,
            stale::lost_lease_stops_the_stale_run,
            stale::stale_run_cannot_overwrite_the_live_outcome,
            stale::stale_chord_member_failure_does_not_fail_the_chord,
            stale::record_writes_are_fenced_by_attempt,
            launch::enqueue_retried_after_a_failed_publish_and_cleanup,
            launch::enqueue_whose_answer_was_lost_runs,
            launch::chain_step_launched_after_a_failed_publish,
            launch::chord_body_launched_after_a_failed_publish,
            outages::result_recorded_after_a_backend_outage,
            workflows::chain_passes_results,
            workflows::chain_immutable_and_previous_result,
            workflows::chain_failure_stops_and_fires_on_error,
            workflows::group_results_in_order,
            workflows::chord_body_gets_all_results,
            workflows::chord_fires_exactly_once_under_concurrency,
            workflows::redelivered_member_does_not_fire_twice,
            workflows::chord_member_failure_fires_error_once,
            workflows::composition,
            workflows::unknown_step_is_archived_and_fires_on_error,
            workflows::invalid_workflows_publish_nothing,
            workflows::error_scopes,
            workflows::nested_groups_and_no_retention,
            unique::duplicate_names_the_holder,
            unique::release_policies,
            unique::retention_of_results,
            unique::lock_edges,
            periodic::once_per_tick_with_three_schedulers,
            periodic::dead_claimer_tick_is_taken_over,
            periodic::dynamic_entries_take_effect_without_restart,
            periodic::missed_ticks_policy,
            periodic::tick_enqueued_after_a_failed_publish,
        );
    };
    (@tests $env:path; $($module:ident :: $test:ident),* $(,)?) => {
        $crate::conformance_suite!(@each $env; $($module::$test),*);
    };
    (@each $env:path; $($module:ident :: $test:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                $crate::$module::$test($env().await).await;
            }
        )*
    };
}
