//! `--config.watch`: a reload when the config file's contents change. A
//! Kubernetes ConfigMap volume updates its files by swapping a symlinked
//! directory, so the file's directory is watched, not the file, and what
//! counts is the contents the path leads to.

use super::Exporter;
use notify::{RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

/// Changes within this long are one change (an editor's save, a symlink swap).
const SETTLE: Duration = Duration::from_millis(300);

/// The watch; dropping it stops it.
pub struct ConfigWatch {
    _watcher: notify::RecommendedWatcher,
}

/// Hash of the file's contents, `None` while it cannot be read.
fn contents(path: &Path) -> Option<[u8; 32]> {
    std::fs::read(path)
        .ok()
        .map(|bytes| Sha256::digest(bytes).into())
}

/// Reloads `exporter`'s config whenever the contents of `path` change.
pub fn watch_config(exporter: Arc<Exporter>, path: &Path) -> anyhow::Result<ConfigWatch> {
    let path: PathBuf = std::path::absolute(path)?;
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    let (sender, receiver) = channel();
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = sender.send(event);
    })
    .map_err(|e| anyhow::anyhow!("--config.watch: cannot watch {}: {e}", dir.display()))?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|e| anyhow::anyhow!("--config.watch: cannot watch {}: {e}", dir.display()))?;
    let mut last = contents(&path);
    tracing::info!(path = %path.display(), "reloading the config when it changes (--config.watch)");
    std::thread::Builder::new()
        .name("config-watch".into())
        .spawn(move || {
            while receiver.recv().is_ok() {
                // Let a burst of events settle before reading the file.
                loop {
                    match receiver.recv_timeout(SETTLE) {
                        Ok(_) => continue,
                        Err(RecvTimeoutError::Timeout) => break,
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
                let now = contents(&path);
                if now.is_some() && now != last {
                    last = now;
                    tracing::info!(path = %path.display(), "config file changed: reloading");
                    // Errors are logged and kept for the landing page by the reload itself.
                    let _ = exporter.reload_config();
                }
            }
        })?;
    Ok(ConfigWatch { _watcher: watcher })
}
