//! Where queries and explanations run: their own threads, a bound on how many run at once,
//! and a timeout that answers at its value.
//!
//! Query work is CPU-bound and can run for a long time between two awaits, so it never runs
//! on the threads that answer `/healthz` and take ingest: it runs on a runtime of its own
//! (`slo-query` threads), and the handler waits for it with the timeout. When the timeout
//! passes the handler answers 504 at once and aborts the task, which stops at its next
//! await (between two batches).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use slo_store::QueryLimits;
use tokio::sync::Semaphore;

/// Settings of the query runner.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Threads of the query runtime.
    pub threads: usize,
    /// Queries (and explanations) running at once; more are refused with 429.
    pub max_in_flight: usize,
    /// Longest one may run.
    pub timeout: Duration,
    /// What one query may cost.
    pub limits: QueryLimits,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        RunnerConfig {
            threads: (cores / 2).max(1),
            max_in_flight: 4,
            timeout: Duration::from_secs(60),
            limits: QueryLimits::default(),
        }
    }
}

/// Why a job did not give its answer.
#[derive(Debug)]
pub enum Refusal {
    /// `max_in_flight` jobs are running.
    Busy(usize),
    /// It ran past the timeout (and was aborted).
    TimedOut(Duration),
    /// The task panicked or was cancelled (a bug).
    Failed(String),
}

/// Runs jobs on the query runtime.
#[derive(Clone)]
pub struct Runner {
    runtime: Arc<OwnedRuntime>,
    permits: Arc<Semaphore>,
    config: RunnerConfig,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner").field("config", &self.config).finish()
    }
}

/// A runtime dropped without blocking (it may be dropped from async code).
struct OwnedRuntime(Option<tokio::runtime::Runtime>);

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl Runner {
    /// Starts the query threads.
    pub fn new(config: RunnerConfig) -> std::io::Result<Runner> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.threads.max(1))
            .thread_name("slo-query")
            // I/O too: queries over an object store read it through HTTP.
            .enable_all()
            .build()?;
        Ok(Runner {
            runtime: Arc::new(OwnedRuntime(Some(runtime))),
            permits: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
            config,
        })
    }

    /// What one query may cost.
    pub fn limits(&self) -> &QueryLimits {
        &self.config.limits
    }

    /// Runs `job` on the query threads within the bounds.
    pub async fn run<F, T>(&self, job: F) -> Result<T, Refusal>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            return Err(Refusal::Busy(self.config.max_in_flight));
        };
        let Some(rt) = self.runtime.0.as_ref() else { return Err(Refusal::Failed("no query runtime".into())) };
        let task = rt.spawn(async move {
            let out = job.await;
            drop(permit);
            out
        });
        let abort = task.abort_handle();
        match tokio::time::timeout(self.config.timeout, task).await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(e)) => Err(Refusal::Failed(e.to_string())),
            Err(_) => {
                abort.abort();
                Err(Refusal::TimedOut(self.config.timeout))
            }
        }
    }
}
