//! Which processes a program attaches to.

use super::ProcessInfo;
use crate::config::Attachment;

/// Longest comm the kernel keeps.
const COMM_MAX: usize = 15;

/// A compiled `attachment:` block: a process is selected when every given field matches.
#[derive(Debug, Clone)]
pub struct Selector {
    binary_name: Option<String>,
}

impl Selector {
    /// Builds a selector from config. `binary_name` longer than the kernel's 15-byte
    /// comm is compared truncated, since that is all `/proc/PID/comm` can hold.
    pub fn new(attachment: &Attachment) -> Selector {
        Selector {
            binary_name: attachment.binary_name.as_ref().map(|n| {
                let mut end = n.len().min(COMM_MAX);
                while !n.is_char_boundary(end) {
                    end -= 1;
                }
                n[..end].to_string()
            }),
        }
    }

    /// Whether the process is selected.
    pub fn matches(&self, process: &ProcessInfo) -> bool {
        match &self.binary_name {
            Some(name) => &process.comm == name,
            None => false,
        }
    }

    /// A short human description, for logs and the landing page.
    pub fn describe(&self) -> String {
        match &self.binary_name {
            Some(name) => format!("binary_name={name}"),
            None => "nothing".into(),
        }
    }
}
