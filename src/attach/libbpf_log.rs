//! Routes libbpf's messages to tracing, and captures them while loading so a
//! verifier rejection can be shown with the end of its log.

use libbpf_rs::PrintLevel;
use std::cell::RefCell;

thread_local! {
    static CAPTURE: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn print(level: PrintLevel, message: String) {
    CAPTURE.with(|c| {
        if let Some(buf) = c.borrow_mut().as_mut() {
            buf.push_str(&message);
        }
    });
    // libbpf's own warnings lack our context (program, pid); we report failures
    // ourselves, so its text goes to debug.
    match level {
        PrintLevel::Warn | PrintLevel::Info => {
            tracing::debug!(target: "libbpf", "{}", message.trim_end())
        }
        PrintLevel::Debug => tracing::trace!(target: "libbpf", "{}", message.trim_end()),
    }
}

/// Installs the libbpf print callback (idempotent).
pub fn install() {
    libbpf_rs::set_print(Some((PrintLevel::Debug, print)));
}

/// Runs `f` while collecting everything libbpf prints on this thread.
pub fn capture<T>(f: impl FnOnce() -> T) -> (T, String) {
    CAPTURE.with(|c| *c.borrow_mut() = Some(String::new()));
    let out = f();
    let log = CAPTURE.with(|c| c.borrow_mut().take()).unwrap_or_default();
    (out, log)
}

/// The last `lines` lines of a log, for error messages.
pub fn tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
