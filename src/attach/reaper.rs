//! Detaching off the hot paths: dropping an [`Instance`] detaches its uprobes,
//! which waits for the kernel; that must hold up neither the next attach nor a
//! scrape.
//!
//! The kernel releases a uprobe link after RCU grace periods, and the thread
//! that closes it waits for them: 55 ms on average per USDT instance of the
//! soak on the project's VM (kernel 6.18.44, 3,621 instances). One thread
//! freeing them one after another manages about 18 a second, fewer than the
//! soak's 10 short-lived processes a second bring with two programs each: the
//! instances waiting grew without bound, with their fds, kernel objects and
//! memory (1,450 fds and 3 MiB of RSS a minute). [`DETACH_THREADS`] threads
//! free them at once, so that their grace periods overlap. Perf-event uprobes
//! (one named function) are freed by the kernel under a global lock, one after
//! another whatever the threads (README, "Stopping"); they no longer hold up
//! the others.

use super::Instance;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often an instance a scrape still reads is looked at again.
const RETRY: Duration = Duration::from_millis(20);

/// Threads freeing instances at once. Each waits in the kernel, not on a
/// CPU; 8 free about 8 times as many a second as one.
pub const DETACH_THREADS: usize = 8;

/// What the reaper frees: an [`Instance`] (a stand-in in tests).
pub trait Reaped: Send + Sync + 'static {
    /// What it is attached to, for the debug log.
    fn describe(&self) -> String;
}

impl Reaped for Instance {
    fn describe(&self) -> String {
        self.target.describe()
    }
}

/// Drops detached instances off the caller's thread, once nothing else holds
/// them (a scrape that began before the detach may still be reading their
/// maps), from [`DETACH_THREADS`] threads at once.
#[derive(Debug)]
pub struct Reaper<T: Reaped = Instance> {
    sender: Option<Sender<Arc<T>>>,
    /// Instances handed over and not freed yet.
    pending: Arc<AtomicUsize>,
}

impl<T: Reaped> Reaper<T> {
    /// A reaper counting the instances it has not freed yet in `pending`.
    pub fn new(pending: Arc<AtomicUsize>) -> Reaper<T> {
        Reaper::with_threads(DETACH_THREADS, pending)
    }

    /// A reaper freeing with `threads` threads (at least one). Without any
    /// thread, instances are dropped by their last holder.
    pub fn with_threads(threads: usize, pending: Arc<AtomicUsize>) -> Reaper<T> {
        let (free, to_free) = channel::<T>();
        let to_free = Arc::new(Mutex::new(to_free));
        let freeing = (0..threads.max(1))
            .filter(|_| {
                let (to_free, pending) = (to_free.clone(), pending.clone());
                std::thread::Builder::new()
                    .name("detach".into())
                    .spawn(move || free_from(&to_free, &pending))
                    .is_ok()
            })
            .count();
        drop(to_free);
        let (sender, received) = channel::<Arc<T>>();
        let spawned = (freeing > 0).then(|| {
            let pending = pending.clone();
            std::thread::Builder::new()
                .name("detach-wait".into())
                .spawn(move || wait_unshared(&received, &free, &pending))
        });
        Reaper {
            sender: matches!(spawned, Some(Ok(_))).then_some(sender),
            pending,
        }
    }

    /// Detaches and frees `instance` off the caller's thread, once no scrape
    /// reads it any more (inline, as the last holder lets go, if the threads
    /// are gone).
    pub fn drop_later(&self, instance: Arc<T>) {
        if let Some(sender) = &self.sender {
            self.pending.fetch_add(1, Ordering::SeqCst);
            if sender.send(instance).is_err() {
                self.pending.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    /// Instances handed over and not freed yet.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }
}

/// Keeps what it receives until this is its last holder, then hands it to
/// the freeing threads.
fn wait_unshared<T: Reaped>(received: &Receiver<Arc<T>>, free: &Sender<T>, pending: &AtomicUsize) {
    let mut waiting: Vec<Arc<T>> = Vec::new();
    loop {
        let next = if waiting.is_empty() {
            received.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            received.recv_timeout(RETRY)
        };
        match next {
            Ok(instance) => waiting.push(instance),
            Err(RecvTimeoutError::Timeout) => {}
            // Shutting down: whatever is left goes as its last holder drops it.
            Err(RecvTimeoutError::Disconnected) => return,
        }
        // Take in everything queued meanwhile, so a burst is handed over at once.
        waiting.extend(received.try_iter());
        waiting = waiting
            .into_iter()
            .filter_map(|instance| match Arc::try_unwrap(instance) {
                Ok(unshared) => {
                    if let Err(unsent) = free.send(unshared) {
                        release(unsent.0, pending);
                    }
                    None
                }
                Err(shared) => Some(shared),
            })
            .collect();
    }
}

/// One freeing thread: frees what it is handed until the reaper is gone.
fn free_from<T: Reaped>(to_free: &Mutex<Receiver<T>>, pending: &AtomicUsize) {
    loop {
        let next = to_free
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .recv();
        match next {
            Ok(instance) => release(instance, pending),
            Err(_) => return,
        }
    }
}

/// Frees `instance` (detaching it, waiting for the kernel) and counts it freed.
fn release<T: Reaped>(instance: T, pending: &AtomicUsize) {
    let started = Instant::now();
    let target = tracing::enabled!(tracing::Level::DEBUG).then(|| instance.describe());
    drop(instance);
    pending.fetch_sub(1, Ordering::SeqCst);
    if let Some(target) = target {
        tracing::debug!(
            target,
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "instance detached"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Condvar;

    /// How long a test waits for what must happen before it fails.
    const PATIENCE: Duration = Duration::from_secs(10);

    /// Waits (at most [`PATIENCE`]) until `done`.
    fn eventually(done: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + PATIENCE;
        while !done() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        done()
    }

    /// Counts of the stand-ins being freed and freed, with a condition to wait on.
    #[derive(Default)]
    struct Board {
        state: Mutex<(usize, usize)>,
        changed: Condvar,
    }

    impl Board {
        /// Waits (at most [`PATIENCE`]) until `done` holds of (being freed, freed).
        fn wait_for(&self, done: impl Fn((usize, usize)) -> bool) -> bool {
            let guard = self.state.lock().unwrap();
            let (guard, _) = self
                .changed
                .wait_timeout_while(guard, PATIENCE, |s| !done(*s))
                .unwrap();
            done(*guard)
        }

        fn update(&self, change: impl FnOnce(&mut (usize, usize))) {
            change(&mut self.state.lock().unwrap());
            self.changed.notify_all();
        }
    }

    /// An instance whose drop waits until `together` drops are under way at
    /// once (as a detach waits for the kernel), then counts itself freed.
    struct Slow {
        board: Arc<Board>,
        together: usize,
        /// Whether the others came while it waited.
        met: Arc<Mutex<Vec<bool>>>,
    }

    impl Reaped for Slow {
        fn describe(&self) -> String {
            "slow".into()
        }
    }

    impl Drop for Slow {
        fn drop(&mut self) {
            self.board.update(|s| s.0 += 1);
            let met = self.board.wait_for(|s| s.0 + s.1 >= self.together);
            self.met.lock().unwrap().push(met);
            self.board.update(|s| {
                s.0 -= 1;
                s.1 += 1;
            });
        }
    }

    #[test]
    fn instances_are_freed_several_at_once_and_none_stays_pending() {
        // One thread freeing at a time let a backlog grow without bound.
        let together = DETACH_THREADS;
        let board = Arc::new(Board::default());
        let met = Arc::new(Mutex::new(Vec::new()));
        let reaper = Reaper::new(Arc::default());
        for _ in 0..3 * together {
            reaper.drop_later(Arc::new(Slow {
                board: board.clone(),
                together,
                met: met.clone(),
            }));
        }
        assert!(board.wait_for(|(_, freed)| freed == 3 * together));
        let met = met.lock().unwrap();
        assert_eq!(met.len(), 3 * together);
        assert!(
            met[..together].iter().all(|&m| m),
            "the first {together} were not freed at once: {met:?}"
        );
        assert!(eventually(|| reaper.pending() == 0), "{}", reaper.pending());
    }

    #[test]
    fn an_instance_still_held_is_freed_only_once_let_go() {
        let board = Arc::new(Board::default());
        let met = Arc::new(Mutex::new(Vec::new()));
        let slow = || {
            Arc::new(Slow {
                board: board.clone(),
                together: 1,
                met: met.clone(),
            })
        };
        let reaper = Reaper::with_threads(2, Arc::default());
        let held = slow();
        reaper.drop_later(held.clone());
        reaper.drop_later(slow());
        // The second is freed; the first was looked at meanwhile (it came
        // first) and is still held here.
        assert!(board.wait_for(|(_, freed)| freed == 1));
        assert_eq!(Arc::strong_count(&held), 2);
        assert!(eventually(|| reaper.pending() == 1), "{}", reaper.pending());
        drop(held);
        assert!(board.wait_for(|(_, freed)| freed == 2));
        assert!(eventually(|| reaper.pending() == 0), "{}", reaper.pending());
    }
}
