//! The pipeline's own thread. Ring-buffer reading and sweeps run there, on a single-threaded
//! runtime of their own; the HTTP server and the Kubernetes and Docker clients run on the main
//! runtime. A scrape sends a request and awaits the snapshot: the pipeline computes it between
//! two drains and never waits on the scrape (rendering, compression and the network write
//! happen on the server's side), and a slow scraper or a slow API server never delays reading.
use std::{cell::RefCell, os::fd::OwnedFd, rc::Rc, time::Duration};

use anyhow::Context as _;
use log::warn;
use tokio::{
    io::unix::AsyncFd,
    sync::{mpsc, oneshot},
    time::{Instant, MissedTickBehavior},
};

use super::{Pipeline, Snapshot};

/// How often the batched rings (TCP events, payloads) are drained when no batch is full.
const BATCH_POLL: Duration = Duration::from_millis(50);

/// Scrapes waiting at once; more wait for a place (the server bounds requests anyway).
const SCRAPE_QUEUE: usize = 16;

/// Asks the pipeline for a snapshot.
#[derive(Clone)]
pub struct Snapshots {
    requests: mpsc::Sender<oneshot::Sender<Snapshot>>,
}

impl Snapshots {
    pub async fn take(&self) -> anyhow::Result<Snapshot> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(reply)
            .await
            .map_err(|_| anyhow::anyhow!("the pipeline has stopped"))?;
        answer
            .await
            .map_err(|_| anyhow::anyhow!("the pipeline stopped before answering"))
    }
}

/// The running thread; `stop` ends it and drops the pipeline (closing its map fds).
pub struct Running {
    stop: oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Running {
    pub fn stop(self) {
        let _ = self.stop.send(());
        if self.thread.join().is_err() {
            warn!("the pipeline thread panicked");
        }
    }
}

/// Starts the pipeline's thread; returns once its rings are registered for polling.
pub fn spawn(pipeline: Pipeline, sweep_interval: Duration) -> anyhow::Result<(Snapshots, Running)> {
    let process_fd = pipeline.process_ring_fd()?;
    let signal_fds = pipeline.signal_ring_fds()?;
    let (requests, scrapes) = mpsc::channel(SCRAPE_QUEUE);
    let (stop, stopped) = oneshot::channel();
    let (ready, started) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("pipeline".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(err) => {
                    let _ = ready.send(Err(anyhow::Error::new(err)));
                    return;
                }
            };
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, async move {
                let tasks = Tasks {
                    pipeline: Rc::new(RefCell::new(pipeline)),
                };
                let started = tasks.start(process_fd, signal_fds, sweep_interval);
                let ok = started.is_ok();
                let _ = ready.send(started);
                if ok {
                    tokio::select! {
                        _ = stopped => {}
                        () = tasks.answer(scrapes) => {}
                    }
                }
            });
        })
        .context("starting the pipeline thread")?;
    started
        .recv()
        .context("the pipeline thread ended before starting")?
        .context("polling the ring buffers")?;
    Ok((Snapshots { requests }, Running { stop, thread }))
}

struct Tasks {
    pipeline: Rc<RefCell<Pipeline>>,
}

impl Tasks {
    /// Spawns the ring readers and the sweep on the thread's `LocalSet`. The pipeline is
    /// borrowed only inside a synchronous call, never across an await.
    fn start(
        &self,
        process_fd: OwnedFd,
        signal_fds: Vec<(usize, OwnedFd)>,
        sweep_interval: Duration,
    ) -> anyhow::Result<()> {
        // Exec/exit events wake the reader at once: names must be known before their
        // processes' entries are retired.
        let ready = watch_readable(process_fd)?;
        let pipeline = Rc::clone(&self.pipeline);
        tokio::task::spawn_local(read(ready, None, move || {
            let mut pipeline = pipeline.borrow_mut();
            let now = std::time::Instant::now();
            pipeline.drain_process_events(now);
            // Under process churn, free the ended processes' kernel entries before the maps
            // fill (see `Pipeline::sweep_due`).
            if pipeline.sweep_due(now) {
                pipeline.refresh(now);
            }
        }));
        // The TCP and payload probes wake the reader only once a batch is waiting (see
        // `maps::batched_wakeup` in the probes); the poll drains what a quiet moment leaves.
        for (index, fd) in signal_fds {
            let ready = watch_readable(fd)?;
            let pipeline = Rc::clone(&self.pipeline);
            tokio::task::spawn_local(read(ready, Some(BATCH_POLL), move || {
                pipeline
                    .borrow_mut()
                    .drain_signal(index, std::time::Instant::now())
            }));
        }
        // Folds and frees finished processes' kernel entries even when nobody scrapes.
        let pipeline = Rc::clone(&self.pipeline);
        tokio::task::spawn_local(async move {
            let mut interval = tokio::time::interval(sweep_interval);
            interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                pipeline.borrow_mut().refresh(std::time::Instant::now());
            }
        });
        Ok(())
    }

    async fn answer(&self, mut scrapes: mpsc::Receiver<oneshot::Sender<Snapshot>>) {
        while let Some(reply) = scrapes.recv().await {
            let snapshot = self
                .pipeline
                .borrow_mut()
                .refresh(std::time::Instant::now());
            // A scraper that gave up meanwhile is no error.
            let _ = reply.send(snapshot);
        }
    }
}

/// Drains a ring buffer as it becomes readable, and every `poll_every` if given.
async fn read(ready: AsyncFd<OwnedFd>, poll_every: Option<Duration>, mut drain: impl FnMut()) {
    let mut timer = poll_every.map(|every| {
        let mut timer = tokio::time::interval_at(Instant::now() + every, every);
        timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
        timer
    });
    loop {
        let tick = async {
            match timer.as_mut() {
                Some(timer) => {
                    timer.tick().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            readable = ready.readable() => {
                let mut guard = match readable {
                    Ok(guard) => guard,
                    Err(err) => {
                        warn!("ring buffer polling failed, its events wait for the next sweep: {err}");
                        return;
                    }
                };
                drain();
                guard.clear_ready();
            }
            () = tick => drain(),
        }
    }
}

/// Registers a ring buffer's fd with this thread's reactor for read readiness.
fn watch_readable(fd: OwnedFd) -> anyhow::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the `AsyncFd` owns `fd` (a duplicate of the ring buffer's map fd) and keeps it
    // open, unchanged, until it is dropped.
    unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(std::io::Error::from)
        .context("registering a ring buffer with the reactor")
}
