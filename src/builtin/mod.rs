//! The embedded default pack: the config used when no `--probe-config` is
//! given, and the BPF objects it names, compiled from `examples/` when the
//! exporter is built (so running it needs no clang).

use crate::config::{Config, ConfigErrors};
use std::path::{Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/builtin_objects.rs"));

/// The default pack's config text.
pub const DEFAULT_CONFIG: &str = include_str!("default.yaml");

/// The name the default config goes by in messages and on the landing page.
pub const DEFAULT_CONFIG_NAME: &str = "builtin:default.yaml";

/// Parses the default pack; its `object:` names resolve to the embedded objects.
pub fn default_config() -> Result<Config, ConfigErrors> {
    let mut config = Config::parse(Path::new(DEFAULT_CONFIG_NAME), DEFAULT_CONFIG)?;
    config.embedded_objects = Some(BUILTIN_OBJECTS);
    Ok(config)
}

/// Writes the default config and its objects to `dir`, as a starting point for
/// a config of one's own.
pub fn write_default_pack(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let config = dir.join("default.yaml");
    std::fs::write(&config, DEFAULT_CONFIG)?;
    written.push(config);
    for (name, bytes) in BUILTIN_OBJECTS {
        let path = dir.join(name);
        std::fs::write(&path, bytes)?;
        written.push(path);
    }
    Ok(written)
}
