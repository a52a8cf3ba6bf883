//! The bounded queue between the collecting task (one push's batches in) and the delivering
//! task (oldest first, out once the endpoint took it or refused it for good). When the
//! endpoint is slow or down, new batches keep coming and the oldest are dropped: memory
//! stays bounded, and what arrives once the endpoint is back is the newest.
use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use tokio::sync::Notify;

use super::stats::Stats;

/// Batches waiting at most (each of up to `collect::MAX_POINTS_PER_REQUEST` points, a few
/// hundred kilobytes): a few pushes of a large node.
pub const BATCHES: usize = 16;

/// One encoded export request.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// Unique within the queue's life: how the delivering task knows whether the batch it
    /// sent is still the one at the head.
    pub id: u64,
    pub body: Bytes,
    pub points: u64,
}

#[derive(Default)]
struct Inner {
    batches: VecDeque<Batch>,
    next_id: u64,
}

pub struct Queue {
    inner: Mutex<Inner>,
    capacity: usize,
    stats: Arc<Stats>,
    ready: Notify,
}

impl Queue {
    pub fn new(capacity: usize, stats: Arc<Stats>) -> Self {
        Queue {
            inner: Mutex::default(),
            capacity: capacity.max(1),
            stats,
            ready: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere leaves the queue usable: it holds only whole batches.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends a batch; if the queue was full, drops the oldest and counts its points.
    pub fn push(&self, body: Bytes, points: u64) {
        let mut inner = self.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        inner.batches.push_back(Batch { id, body, points });
        while inner.batches.len() > self.capacity {
            if let Some(dropped) = inner.batches.pop_front() {
                self.stats.dropped(dropped.points);
            }
        }
        drop(inner);
        self.ready.notify_one();
    }

    /// The oldest batch, left in the queue (it may be dropped while it is being sent).
    pub async fn head(&self) -> Batch {
        loop {
            let notified = self.ready.notified();
            if let Some(batch) = self.lock().batches.front().cloned() {
                return batch;
            }
            notified.await;
        }
    }

    /// Takes out the batch `id` if it is still queued (sent, or refused for good).
    pub fn remove(&self, id: u64) -> bool {
        let mut inner = self.lock();
        let before = inner.batches.len();
        inner.batches.retain(|batch| batch.id != id);
        inner.batches.len() != before
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().batches.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_its_oldest_batches_and_counts_their_points() {
        let stats = Arc::new(Stats::default());
        let queue = Queue::new(3, Arc::clone(&stats));
        for points in 1..=5 {
            queue.push(Bytes::from(vec![0; 10]), points);
        }
        assert_eq!(queue.len(), 3);
        // Batches of 1 and 2 points went.
        let dropped = &stats.published()[1].rows[0].1;
        assert_eq!(*dropped, crate::series::publish::Value::Counter(3.0));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let head = runtime.block_on(queue.head());
        assert_eq!((head.id, head.points), (2, 3));
        assert!(queue.remove(head.id));
        assert!(!queue.remove(head.id), "removed once");
        assert_eq!(runtime.block_on(queue.head()).points, 4);
    }

    #[test]
    fn a_batch_dropped_while_in_flight_is_not_removed_twice() {
        let stats = Arc::new(Stats::default());
        let queue = Queue::new(1, Arc::clone(&stats));
        queue.push(Bytes::from_static(b"a"), 7);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let in_flight = runtime.block_on(queue.head());
        queue.push(Bytes::from_static(b"b"), 8);
        assert!(!queue.remove(in_flight.id));
        assert_eq!(
            runtime.block_on(queue.head()).body,
            Bytes::from_static(b"b")
        );
    }
}
