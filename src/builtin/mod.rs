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

#[cfg(test)]
mod tests {
    use super::*;

    /// The text of the program item named `name` in a config's `programs:` list.
    fn program_text<'a>(config: &'a str, name: &str) -> &'a str {
        let start = config
            .find(&format!("  - name: {name}\n"))
            .unwrap_or_else(|| panic!("no program {name}"));
        let rest = &config[start..];
        let end = rest[1..].find("\n  - name: ").map_or(rest.len(), |i| i + 2);
        &rest[..end]
    }

    #[test]
    fn the_python_program_is_the_examples_one() {
        // The tests check examples/python.yaml against every CPython build;
        // what they check is what the pack runs.
        let example = include_str!("../../examples/python.yaml");
        assert_eq!(
            program_text(DEFAULT_CONFIG, "python"),
            program_text(example, "python")
        );
    }

    #[test]
    fn the_default_pack_parses() {
        let config = default_config().unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<&str> = config
            .programs
            .iter()
            .map(|p| p.value.name.as_str())
            .collect();
        assert_eq!(
            names,
            ["python", "jvm", "ruby", "postgresql", "nodejs", "php"]
        );
    }
}
