//! The web configuration in force, re-read when it or a file it names
//! changes, without a restart.
//!
//! Two things notice a change: a watch (inotify, through `notify`) on the
//! directories of the config file and of the certificate, key and CA files,
//! so that a change is applied (or its error logged) within a moment; and a
//! check of those files' stamps (`stat`, following symlinks) on every new
//! connection, so that the next TLS handshake after a rotation always
//! presents the new certificate, watch or not. Directories are watched rather
//! than files because a rotation (cert-manager, a Kubernetes secret) swaps a
//! symlink to a new directory instead of writing the files in place.
//!
//! A reading that fails keeps the settings in force, logs one error, and is
//! retried only when one of the files changes again. A config file found
//! empty is a warning, not an error: a file written in place is empty
//! between its truncation and its first write.

use super::auth::AuthCache;
use super::web_config::{self, Dependencies, Stamp, WebConfigError, WebSettings};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// How long a reading that failed on a file modified within the last second
/// waits before it reads once more.
const SETTLE: Duration = Duration::from_millis(250);

/// Whether `path` was modified within the last second.
fn just_modified(path: &Path) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age < Duration::from_secs(1))
}

/// Whether the file at `path` exists and holds nothing.
fn is_empty(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.len() == 0)
}

/// The web configuration in force, and how to renew it.
pub struct WebConfig {
    /// The file, when there is one (`--web.config.file`).
    path: Option<PathBuf>,
    current: RwLock<Arc<WebSettings>>,
    /// The files the last reading (good or bad) depended on, with their stamps.
    last: Mutex<Dependencies>,
    cache: Arc<AuthCache>,
}

impl WebConfig {
    /// No web config: plain HTTP, nothing to reload.
    pub fn plain() -> WebConfig {
        WebConfig {
            path: None,
            current: RwLock::new(Arc::new(WebSettings::plain())),
            last: Mutex::new(Vec::new()),
            cache: Arc::new(AuthCache::new()),
        }
    }

    /// Reads the web config at `path`; any problem is an error.
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let cache = Arc::new(AuthCache::new());
        let (settings, files) = web_config::load(path, &cache).map_err(|(e, _)| e)?;
        for warning in &settings.warnings {
            tracing::warn!("{warning}");
        }
        Ok(WebConfig {
            path: Some(path.to_path_buf()),
            current: RwLock::new(Arc::new(settings)),
            last: Mutex::new(files),
            cache,
        })
    }

    /// The settings in force.
    pub fn current(&self) -> Arc<WebSettings> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The web config file, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Whether a file of the last reading changed since: a few `stat` calls.
    /// Never waits: while a reading is in progress the answer is yes, and
    /// [`WebConfig::refresh`] (off the async workers) waits for it.
    pub fn changed(&self) -> bool {
        if self.path.is_none() {
            return false;
        }
        let last = match self.last.try_lock() {
            Ok(last) => last,
            Err(std::sync::TryLockError::WouldBlock) => return true,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
        };
        last.iter().any(|(path, stamp)| Stamp::of(path) != *stamp)
    }

    /// Reads the config again if a file changed; the new settings replace the
    /// ones in force only when they are good. Returns whether they changed.
    pub fn refresh(&self) -> bool {
        let Some(path) = &self.path else {
            return false;
        };
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.iter().all(|(p, stamp)| Stamp::of(p) == *stamp) {
            return false;
        }
        let was_tls = self.current().tls.is_some();
        let attempt = || match web_config::load(path, &self.cache) {
            Ok((settings, files)) if settings.tls.is_some() != was_tls => {
                let message = format!(
                    "{}: the new web config {} TLS: switching between HTTP and HTTPS needs a restart",
                    path.display(),
                    if was_tls { "turns off" } else { "turns on" }
                );
                Err((message, files))
            }
            Ok(good) => Ok(good),
            Err((e, files)) => Err((e.to_string(), files)),
        };
        let mut result = attempt();
        // A file written in place can be caught half written (truncated, not
        // yet filled): when a file just changed, give the writer a moment and
        // read once more before calling the version bad.
        if let Err((_, files)) = &result {
            if files.iter().any(|(p, _)| just_modified(p)) {
                std::thread::sleep(SETTLE);
                result = attempt();
            }
        }
        match result {
            Ok((settings, files)) => {
                *last = files;
                for warning in &settings.warnings {
                    tracing::warn!("{warning}");
                }
                tracing::info!(
                    "web config {} reloaded: {}",
                    path.display(),
                    settings.describe()
                );
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(settings);
                true
            }
            Err((message, files)) => {
                *last = files;
                if is_empty(path) {
                    // Still truncated after the settle: a writer that stalled
                    // between truncating and filling (slow disk, a loaded
                    // host), or a file emptied on purpose. Its next write
                    // changes the stamp and is read then.
                    tracing::warn!(
                        "web config {} is empty (being written?); keeping the web config in force until it has content",
                        path.display()
                    );
                } else {
                    tracing::error!("{message}; keeping the web config in force");
                }
                false
            }
        }
    }

    /// The directories to watch: those holding the files of the last reading.
    fn directories(&self) -> BTreeSet<PathBuf> {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.iter()
            .filter_map(|(p, _)| p.parent())
            .map(|d| {
                if d.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    d.to_path_buf()
                }
            })
            .collect()
    }

    /// Watches the files' directories and refreshes on any change there, for
    /// as long as the runtime runs. Without a watch (no inotify), changes are
    /// still seen by the check on each new connection.
    pub fn spawn_watcher(self: &Arc<Self>) {
        if self.path.is_none() {
            return;
        }
        let wake = Arc::new(tokio::sync::Notify::new());
        let watcher = {
            let wake = wake.clone();
            notify::recommended_watcher(move |_event: notify::Result<notify::Event>| {
                wake.notify_one();
            })
        };
        let mut watcher = match watcher {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!("cannot watch the web config's files ({e}); changes are applied at the next connection");
                return;
            }
        };
        let this = self.clone();
        tokio::spawn(async move {
            use notify::Watcher as _;
            let mut watched = BTreeSet::new();
            loop {
                let wanted = this.directories();
                for gone in watched.difference(&wanted) {
                    let _ = watcher.unwatch(gone);
                }
                for new in wanted.difference(&watched) {
                    if let Err(e) = watcher.watch(new, notify::RecursiveMode::NonRecursive) {
                        tracing::debug!("cannot watch {}: {e}", new.display());
                    }
                }
                watched = wanted;
                wake.notified().await;
                // Let a burst of events (a rotation writes several files) settle.
                tokio::time::sleep(Duration::from_millis(100)).await;
                let this = this.clone();
                let _ = tokio::task::spawn_blocking(move || this.refresh()).await;
            }
        });
    }
}
