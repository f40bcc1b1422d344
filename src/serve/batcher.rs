//! Dynamic batching: requests queue their pairs; one compute thread gathers them into batches
//! (up to a token budget, waiting at most `max_wait` for company) and answers each request
//! with its own results. The async runtime never waits on the model.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::backend::Backend;
use super::error::ApiError;
use super::metrics::Metrics;
use crate::evaluate::{EvaluateOptions, Evaluation};
use crate::explain::PairPlan;
use crate::{ExplainOptions, Explanation};

/// What a job asks of its pairs.
#[derive(Debug, Clone, PartialEq)]
pub enum Task {
    Explain,
    Evaluate(EvaluateOptions),
}

/// A pair's result.
#[derive(Debug, Clone)]
pub enum Done {
    Explained(Box<Explanation>),
    Evaluated(Box<Evaluation>),
}

/// Per pair of a job: its result, or why it has none.
pub type Outcome = Result<Done, ApiError>;

/// One request's valid pairs, planned (tokenised) when it arrived, run together under one set
/// of options.
pub struct Job {
    pub task: Task,
    pub options: ExplainOptions,
    pub plans: Vec<PairPlan>,
    /// Tokens of all its pairs times the method's passes: its share of a batch.
    pub work: usize,
    pub enqueued: Instant,
    pub reply: oneshot::Sender<Vec<Outcome>>,
}

pub struct Batcher {
    sender: Mutex<Option<mpsc::Sender<Job>>>,
    /// Pairs sent and not yet taken into a batch.
    queued: Arc<AtomicUsize>,
    load: Arc<Load>,
    max_queue: usize,
    max_wait: Duration,
    metrics: Arc<Metrics>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// The work ahead of a new job, and how fast the device gets through it: what admission
/// needs to tell whether a job can finish within its deadline.
#[derive(Default)]
struct Load {
    /// Work sent and not yet taken into a batch.
    queued: AtomicUsize,
    /// Work of the batch computing now.
    running: AtomicUsize,
    /// Nanoseconds per unit of work, smoothed over the batches (0: none measured yet).
    nanos_per_work: AtomicU64,
}

impl Load {
    /// How long the work ahead of a job of `work`, and the job, take (`None` before the
    /// first batch has been timed).
    fn expected(&self, work: usize) -> Option<Duration> {
        let per = self.nanos_per_work.load(Ordering::SeqCst);
        let ahead = self.queued.load(Ordering::SeqCst) + self.running.load(Ordering::SeqCst);
        (per > 0).then(|| Duration::from_nanos(per.saturating_mul((ahead + work) as u64)))
    }

    fn timed(&self, work: usize, took: Duration) {
        if work == 0 {
            return;
        }
        let now = (took.as_nanos() / work as u128).clamp(1, u64::MAX as u128) as u64;
        let before = self.nanos_per_work.load(Ordering::SeqCst);
        // The last batches weigh most: the device's speed moves with the batch's shape.
        let smoothed = if before == 0 {
            now
        } else {
            (before as f64 * 0.7 + now as f64 * 0.3) as u64
        };
        self.nanos_per_work.store(smoothed.max(1), Ordering::SeqCst);
    }
}

pub enum Refused {
    /// The queue holds `max_queue` pairs.
    Full,
    /// The work queued ahead would take the job past its deadline: it would time out in the
    /// queue, so it is refused now (and the device spends no time on it).
    Late { expected: Duration },
    /// The server is stopping.
    Closed,
}

impl Batcher {
    /// Starts the compute thread. `max_batch_tokens` bounds a batch's work (a job over it
    /// runs alone).
    pub fn start(
        backend: Arc<dyn Backend>,
        max_batch_tokens: usize,
        max_wait: Duration,
        max_queue: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        let (sender, receiver) = mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let load = Arc::new(Load::default());
        let gather = Gather {
            receiver,
            budget: max_batch_tokens,
            max_wait,
            queued: queued.clone(),
            load: load.clone(),
            metrics: metrics.clone(),
            carried: None,
        };
        let thread = std::thread::Builder::new()
            .name("spangrad-compute".into())
            .spawn(move || compute_loop(gather, &*backend))
            .expect("the compute thread starts");
        Self {
            sender: Mutex::new(Some(sender)),
            queued,
            load,
            max_queue,
            max_wait,
            metrics,
            thread: Mutex::new(Some(thread)),
        }
    }

    /// Queues `job`, unless the queue is full or the work ahead of it would take it past
    /// `deadline`.
    pub fn submit(&self, job: Job, deadline: Instant) -> Result<(), Refused> {
        if let Some(expected) = self.load.expected(job.work) {
            if Instant::now() + expected + self.max_wait > deadline {
                return Err(Refused::Late { expected });
            }
        }
        let (n, work) = (job.plans.len(), job.work);
        let before = self.queued.fetch_add(n, Ordering::SeqCst);
        if before + n > self.max_queue {
            self.queued.fetch_sub(n, Ordering::SeqCst);
            return Err(Refused::Full);
        }
        self.load.queued.fetch_add(work, Ordering::SeqCst);
        self.metrics.set_queued(before + n);
        let sender = self.sender.lock().unwrap_or_else(|e| e.into_inner());
        match sender.as_ref().map(|s| s.send(job).is_ok()) {
            Some(true) => Ok(()),
            _ => {
                self.queued.fetch_sub(n, Ordering::SeqCst);
                self.load.queued.fetch_sub(work, Ordering::SeqCst);
                Err(Refused::Closed)
            }
        }
    }

    /// Pairs waiting now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    /// Stops taking jobs, lets the compute thread finish those it has, and waits for it.
    pub fn close(&self) {
        self.sender.lock().unwrap_or_else(|e| e.into_inner()).take();
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

/// The receiving end: jobs become batches.
struct Gather {
    receiver: mpsc::Receiver<Job>,
    budget: usize,
    max_wait: Duration,
    queued: Arc<AtomicUsize>,
    load: Arc<Load>,
    metrics: Arc<Metrics>,
    /// A job that did not fit the last batch: the first of the next.
    carried: Option<Job>,
}

impl Gather {
    /// The next batch: the oldest job, then whatever arrives within `max_wait` of it (at once
    /// if the device was busy meanwhile) while the budget lasts. `None`: the queue is closed
    /// and empty.
    fn next(&mut self) -> Option<Vec<Job>> {
        let first = match self.carried.take() {
            Some(job) => job,
            None => self.receiver.recv().ok()?,
        };
        let deadline = first.enqueued + self.max_wait;
        let mut work = first.work;
        let mut jobs = vec![first];
        while work < self.budget {
            let left = deadline.saturating_duration_since(Instant::now());
            let next = if left.is_zero() {
                self.receiver.try_recv().ok()
            } else {
                self.receiver.recv_timeout(left).ok()
            };
            let Some(job) = next else { break };
            if work + job.work > self.budget {
                self.carried = Some(job);
                break;
            }
            work += job.work;
            jobs.push(job);
        }
        let taken: usize = jobs.iter().map(|j| j.plans.len()).sum();
        let left = self.queued.fetch_sub(taken, Ordering::SeqCst) - taken;
        self.metrics.set_queued(left);
        // The job carried over is still queued: it is counted when it is taken.
        let work: usize = jobs.iter().map(|j| j.work).sum();
        self.load.queued.fetch_sub(work, Ordering::SeqCst);
        self.load.running.store(work, Ordering::SeqCst);
        Some(jobs)
    }
}

fn compute_loop(mut gather: Gather, backend: &dyn Backend) {
    while let Some(jobs) = gather.next() {
        // A request that timed out is no longer waited for.
        let jobs: Vec<Job> = jobs.into_iter().filter(|j| !j.reply.is_closed()).collect();
        let (start, work) = (Instant::now(), jobs.iter().map(|j| j.work).sum());
        for group in by_options(jobs) {
            run(group, backend, &gather.metrics);
        }
        gather.load.timed(work, start.elapsed());
        gather.load.running.store(0, Ordering::SeqCst);
    }
}

/// Jobs grouped by their task and options (a batch runs under one set), in arrival order.
fn by_options(jobs: Vec<Job>) -> Vec<Vec<Job>> {
    let mut groups: Vec<Vec<Job>> = Vec::new();
    for job in jobs {
        let alike = |g: &&mut Vec<Job>| g[0].options == job.options && g[0].task == job.task;
        match groups.iter_mut().find(alike) {
            Some(group) => group.push(job),
            None => groups.push(vec![job]),
        }
    }
    groups
}

fn run(jobs: Vec<Job>, backend: &dyn Backend, metrics: &Metrics) {
    let start = Instant::now();
    for job in &jobs {
        metrics.queue_time(start - job.enqueued);
    }
    let (options, task) = (jobs[0].options.clone(), jobs[0].task.clone());
    let plans: Vec<&PairPlan> = jobs.iter().flat_map(|j| &j.plans).collect();
    let work: usize = jobs.iter().map(|j| j.work).sum();
    let mut outcomes = isolated(backend, &options, &task, &plans).into_iter();
    metrics.batch(plans.len(), work, start.elapsed());
    drop(plans);
    for job in jobs {
        let mine: Vec<Outcome> = outcomes.by_ref().take(job.plans.len()).collect();
        // The request may have timed out meanwhile; nobody is left to tell.
        let _ = job.reply.send(mine);
    }
}

/// The pairs run together; if that panics, each alone, so that only the pair that panics
/// fails (with a 500) and the server goes on.
fn isolated(
    backend: &dyn Backend,
    options: &ExplainOptions,
    task: &Task,
    plans: &[&PairPlan],
) -> Vec<Outcome> {
    let compute = || -> crate::Result<Vec<crate::Result<Done>>> {
        Ok(match task {
            Task::Explain => backend
                .explain(options, plans)?
                .into_iter()
                .map(|r| r.map(|e| Done::Explained(Box::new(e))))
                .collect(),
            Task::Evaluate(evaluate) => backend
                .evaluate(options, evaluate, plans)?
                .into_iter()
                .map(|r| r.map(|e| Done::Evaluated(Box::new(e))))
                .collect(),
        })
    };
    match catch_unwind(AssertUnwindSafe(compute)) {
        Ok(Ok(results)) => results
            .into_iter()
            .map(|r| r.map_err(|e| ApiError::from_pair(&e)))
            .collect(),
        Ok(Err(e)) => {
            let error = ApiError::internal(format!("the computation failed: {e}"));
            vec![Err(error); plans.len()]
        }
        Err(_) if plans.len() > 1 => plans
            .iter()
            .flat_map(|p| isolated(backend, options, task, std::slice::from_ref(p)))
            .collect(),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown".into());
            vec![Err(ApiError::internal(format!(
                "internal error: the computation panicked ({message})"
            )))]
        }
    }
}
