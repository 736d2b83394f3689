//! The handle of an enqueued workflow.

use std::time::Duration;

use serde::de::DeserializeOwned;

use super::plan::{collect, ResultRef};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::task::TaskId;

/// A handle on an enqueued workflow: waits for its final result (the last step of a chain,
/// the body of a chord, or the array of a group's results).
pub struct WorkflowHandle {
    result: ResultRef,
    client: Client,
}

impl WorkflowHandle {
    pub(crate) fn new(result: ResultRef, client: Client) -> Self {
        WorkflowHandle { result, client }
    }

    /// The id of the task whose result is the workflow's (none for a plain group).
    pub fn task_id(&self) -> Option<&TaskId> {
        match &self.result {
            ResultRef::Task(id) => Some(id),
            ResultRef::Group { .. } => None,
        }
    }

    /// Waits up to `timeout` for the final result. A failed task gives [`Error::TaskFailed`].
    pub async fn get<R: DeserializeOwned>(&self, timeout: Duration) -> Result<R> {
        match &self.result {
            ResultRef::Task(id) => {
                let deadline = tokio::time::Instant::now() + timeout;
                // The final task may not be enqueued yet (earlier steps still running).
                loop {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    match self.client.wait(id, left).await {
                        Ok(rec) => {
                            return rec.result_as::<R>()?.ok_or_else(|| Error::TaskFailed {
                                id: id.to_string(),
                                error: "completed without a result".into(),
                            })
                        }
                        Err(Error::NotFound { .. }) if !left.is_zero() => {
                            tokio::time::sleep(Duration::from_millis(10).min(left)).await;
                        }
                        Err(Error::NotFound { .. }) => return Err(Error::Timeout(timeout)),
                        Err(e) => return Err(e),
                    }
                }
            }
            ResultRef::Group { id, size } => {
                let deadline = tokio::time::Instant::now() + timeout;
                let mut pause = Duration::from_millis(5);
                loop {
                    let members = self.client.backend().group_members(id).await?;
                    match collect(&members, *size) {
                        Err(error) => return Err(Error::TaskFailed { id: id.clone(), error }),
                        Ok(Some(array)) => {
                            return serde_json::from_str(array.get())
                                .map_err(|source| Error::Decode { what: "group results", source });
                        }
                        Ok(None) => {}
                    }
                    let now = tokio::time::Instant::now();
                    if now >= deadline {
                        return Err(Error::Timeout(timeout));
                    }
                    tokio::time::sleep(pause.min(deadline - now)).await;
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
            }
        }
    }
}

impl Client {
    /// Enqueues a workflow (see [`crate::workflow`]): checks it, then enqueues its first tasks.
    /// An invalid workflow is an [`Error::InvalidWorkflow`] and nothing is published.
    pub async fn enqueue_workflow(&self, canvas: impl Into<super::Canvas>) -> Result<WorkflowHandle> {
        let canvas = canvas.into();
        canvas.validate()?;
        let result = super::plan::result_ref(&canvas);
        let result_id = match &result {
            super::plan::ResultRef::Task(id) => Some(id.clone()),
            super::plan::ResultRef::Group { .. } => None,
        };
        let scope = super::plan::Scope { result_id, ..Default::default() };
        super::advance::launch(self, &canvas, scope, None).await?;
        Ok(WorkflowHandle::new(result, self.clone()))
    }
}
