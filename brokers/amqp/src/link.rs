//! The connection: opening it again when it is gone, its channels, declaring a queue's
//! topology once per connection, and the time limit on calls over it.

use std::collections::HashSet;
use std::time::Duration;

use conveyor_core::{FailureKind, Result};
use lapin::options::ConfirmSelectOptions;
use lapin::{Channel, Connection, ConnectionProperties};
use tokio::time::Instant;

use crate::failure::{self, err};
use crate::{topology, AmqpBroker, Link};

/// The longest a call on an open connection may take (see [`AmqpBroker::bounded`]).
pub(crate) const OP_LIMIT: Duration = Duration::from_secs(5);

impl AmqpBroker {
    /// The current publishing channel and generation, reconnecting if the connection is gone.
    /// A publishing channel RabbitMQ closed (it does so on some refusals) is opened again on
    /// the same connection, which keeps its consumers and their tasks in flight.
    pub(crate) async fn link(&self) -> Result<(Channel, u64)> {
        let asked = Instant::now();
        let mut link = self.inner.link.lock().await;
        let stale = self.inner.stale.swap(false, std::sync::atomic::Ordering::SeqCst);
        if let Some(l) = link.as_mut().filter(|l| l.conn.status().connected() && !stale) {
            if !l.publish.status().connected() {
                let opened =
                    self.bounded("a new channel", async { l.conn.create_channel().await.map_err(err) }).await?;
                l.publish = opened;
                let confirms = l.publish.confirm_select(ConfirmSelectOptions::default());
                self.bounded("publisher confirms", async { confirms.await.map_err(err) }).await?;
            }
            return Ok((l.publish.clone(), l.gen));
        }
        // A reconnect failed while this caller waited for the lock: its answer is this one's.
        if let Some((at, kind, why)) = self.inner.failed.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            if *at >= asked {
                return Err(failure::fail(*kind, why.clone()));
            }
        }
        let linked = self.reconnect(&mut link).await;
        if let Err(e) = &linked {
            let kind = e.failure_kind().unwrap_or(FailureKind::Connection);
            *self.inner.failed.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), kind, e.to_string()));
        }
        linked
    }

    /// Opens a new connection and its channels in place of the old one.
    pub(crate) async fn reconnect(&self, link: &mut Option<Link>) -> Result<(Channel, u64)> {
        if let Some(old) = link.take() {
            // Its channels, consumers and unacked deliveries go with it (RabbitMQ requeues them).
            // Closed in the background: a close on a half-dead connection can wait for an
            // answer that never comes, and the reconnect (and every caller behind it) with it.
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), old.conn.close(200, "reconnecting".into())).await;
            });
        }
        let conn = tokio::time::timeout(
            Duration::from_secs(10),
            Connection::connect(&self.inner.cfg.url, ConnectionProperties::default()),
        )
        .await
        .map_err(|_| {
            failure::fail(FailureKind::Timeout, format!("timed out connecting to RabbitMQ at {}", self.target()))
        })?
        .map_err(|e| {
            let kind = failure::kind_of(&e);
            failure::fail(kind, conveyor_core::first_contact_failure("RabbitMQ", &self.target(), &e.to_string()))
        })?;
        let channels = async {
            let publish = conn.create_channel().await?;
            publish.confirm_select(ConfirmSelectOptions::default()).await?;
            Ok::<_, lapin::Error>((publish, conn.create_channel().await?, conn.create_channel().await?))
        };
        let (publish, get, declare) = self.bounded("new channels", async { channels.await.map_err(err) }).await?;
        let gen = self.state().gen + 1;
        {
            // Everything received on the old connection was returned to the queues by RabbitMQ.
            let mut st = self.state();
            st.gen = gen;
            st.buffers.clear();
            st.consumers.clear();
            st.leases.clear();
            st.owed.clear();
        }
        *link = Some(Link { conn, publish: publish.clone(), get, declare, gen, declared: HashSet::new() });
        Ok((publish, gen))
    }

    /// Declares a queue's topology once per connection.
    pub(crate) async fn declare(&self, queue: &str) -> Result<Channel> {
        let (ch, gen) = self.link().await?;
        {
            let link = self.inner.link.lock().await;
            if link.as_ref().is_some_and(|l| l.gen == gen && l.declared.contains(queue)) {
                return Ok(ch);
            }
        }
        let n = self.names(queue);
        let dc = self.declaring_channel().await?;
        let declared = async {
            topology::declare_main(&dc, &n).await?;
            topology::declare_archive(&dc, &n).await?;
            topology::declare_buckets(&dc, &n).await
        };
        self.bounded("a queue declaration", async { declared.await.map_err(|e| topology::declare_err(&n, e)) }).await?;
        if let Some(l) = self.inner.link.lock().await.as_mut().filter(|l| l.gen == gen) {
            l.declared.insert(queue.to_owned());
        }
        self.register(queue).await;
        Ok(ch)
    }

    /// Runs one call on the connection, for at most [`OP_LIMIT`]: a connection that accepted
    /// the call and then went silent (a server restarting, a half-open socket) fails it with a
    /// timeout, and the next call opens a new connection. Without the limit, such a call hung a
    /// worker for 30 s and more after a RabbitMQ restart.
    pub(crate) async fn bounded<T>(&self, what: &str, call: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        self.bounded_until(Instant::now() + OP_LIMIT, what, call).await
    }

    /// [`bounded`](Self::bounded) with a deadline shared by several calls (the confirms of a
    /// batch).
    pub(crate) async fn bounded_until<T>(
        &self,
        deadline: Instant,
        what: &str,
        call: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        match tokio::time::timeout_at(deadline, call).await {
            Ok(r) => r,
            Err(_) => {
                self.inner.stale.store(true, std::sync::atomic::Ordering::SeqCst);
                let why = format!("RabbitMQ at {} did not answer {what} within {OP_LIMIT:?}", self.target());
                Err(failure::fail(FailureKind::Timeout, why))
            }
        }
    }

    /// The channel for declarations, opened again if a failed declaration closed it.
    pub(crate) async fn declaring_channel(&self) -> Result<Channel> {
        let mut link = self.inner.link.lock().await;
        let l = link.as_mut().ok_or_else(|| failure::fail(FailureKind::Connection, "not connected to RabbitMQ"))?;
        if !l.declare.status().connected() {
            l.declare = self.bounded("a new channel", async { l.conn.create_channel().await.map_err(err) }).await?;
        }
        Ok(l.declare.clone())
    }
}
