//! Expedited RCU grace periods while a probe is attached.
//!
//! Registering a uprobe takes the kernel's `dup_mmap_sem` for writing, which can
//! wait for a full RCU grace period: 10 to 20 ms on a 2-core VM, the whole tail
//! of exec-to-attach latency (BENCHMARKS.md). `/sys/kernel/rcu_expedited` makes
//! that wait tens of microseconds, at the price of IPIs to every CPU for grace
//! periods started meanwhile, so it is opt-in (`--attach.expedited-rcu`) and set
//! only for the duration of one attach.

use std::path::Path;

const KNOB: &str = "/sys/kernel/rcu_expedited";

/// While alive, RCU grace periods are expedited; the knob is put back when dropped
/// (left alone if it was already on, or cannot be written).
#[derive(Debug)]
pub struct ExpeditedRcu {
    restore: bool,
}

impl ExpeditedRcu {
    /// Turns expedited grace periods on if they are off.
    pub fn begin() -> ExpeditedRcu {
        let knob = Path::new(KNOB);
        let off = std::fs::read_to_string(knob).is_ok_and(|v| v.trim() == "0");
        let restore = off && std::fs::write(knob, "1").is_ok();
        ExpeditedRcu { restore }
    }
}

impl Drop for ExpeditedRcu {
    fn drop(&mut self) {
        if self.restore {
            if let Err(e) = std::fs::write(KNOB, "0") {
                tracing::warn!("cannot put {KNOB} back to 0: {e}");
            }
        }
    }
}

/// Whether the knob exists and can be written (checked once at startup, so a
/// flag that cannot work says so).
pub fn expedited_rcu_available() -> Result<(), String> {
    let value = std::fs::read_to_string(KNOB).map_err(|e| format!("cannot read {KNOB}: {e}"))?;
    std::fs::write(KNOB, value.trim())
        .map_err(|e| format!("cannot write {KNOB}: {e} (needs root and a writable /sys)"))
}
