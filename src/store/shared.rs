//! One store connection shared by async tasks, used off the runtime: every call runs on
//! tokio's blocking pool (`spawn_blocking`), so SQLite never blocks an async worker. The
//! outbox, the newsletter sender, the scheduler and the web pages all go through here.

use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context;

use super::Db;

/// A connection shared by tasks; cheap to clone.
#[derive(Clone)]
pub struct Shared {
    db: Arc<Mutex<Db>>,
}

impl Shared {
    pub fn new(db: Db) -> Self {
        Self { db: Arc::new(Mutex::new(db)) }
    }

    /// Runs `f` with the connection on the blocking pool. A panic in an earlier call
    /// does not poison the connection for later ones: SQLite rolled back whatever that
    /// call left open when its transaction was dropped.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Db) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let db = self.db.clone();
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let mut guard = db.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut guard)
        })
        .await
        .context("a store task panicked")?
    }
}
