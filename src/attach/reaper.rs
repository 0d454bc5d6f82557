//! Detaching off the hot paths: dropping an [`Instance`] detaches its uprobes,
//! which waits for the kernel (RCU grace periods, 10-20 ms); that must hold up
//! neither the next attach nor a scrape.

use super::Instance;
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often an instance a scrape still reads is looked at again.
const RETRY: Duration = Duration::from_millis(20);

/// Drops detached instances on a thread of its own, once nothing else holds
/// them: a scrape that began before the detach may still be reading its maps.
#[derive(Debug)]
pub struct Reaper {
    sender: Option<Sender<Arc<Instance>>>,
}

impl Reaper {
    /// Starts the detach thread (without it, instances are dropped inline).
    pub fn new() -> Reaper {
        let (sender, receiver) = channel::<Arc<Instance>>();
        let spawned = std::thread::Builder::new()
            .name("detach".into())
            .spawn(move || {
                let mut waiting: Vec<Arc<Instance>> = Vec::new();
                loop {
                    let received = if waiting.is_empty() {
                        receiver.recv().map_err(|_| RecvTimeoutError::Disconnected)
                    } else {
                        receiver.recv_timeout(RETRY)
                    };
                    match received {
                        Ok(instance) => waiting.push(instance),
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                    waiting = waiting.into_iter().filter_map(free_if_unshared).collect();
                }
                // Shutting down: whatever is left goes as its last holder drops it.
            });
        Reaper {
            sender: spawned.ok().map(|_| sender),
        }
    }

    /// Detaches and frees `instance` off the caller's thread, once no scrape
    /// reads it any more (inline, as the last holder lets go, if the thread is gone).
    pub fn drop_later(&self, instance: Arc<Instance>) {
        if let Some(sender) = &self.sender {
            let _ = sender.send(instance);
        }
    }
}

impl Default for Reaper {
    fn default() -> Self {
        Reaper::new()
    }
}

/// Frees `instance` if this is its last holder; gives it back otherwise.
fn free_if_unshared(instance: Arc<Instance>) -> Option<Arc<Instance>> {
    match Arc::try_unwrap(instance) {
        Ok(instance) => {
            let started = Instant::now();
            let target = instance.target.describe();
            drop(instance);
            tracing::debug!(
                target,
                elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                "instance detached"
            );
            None
        }
        Err(shared) => Some(shared),
    }
}
