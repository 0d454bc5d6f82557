//! The config parser on arbitrary YAML: `Config::parse` returns a config or
//! errors, each at a `file:line:column` inside the text; never a panic.

use crate::engine::{self, generate_text, shrink_text, Behaviour, Rng, Target};
use crate::seeds;
use std::path::Path;
use userspace_exporter::config::{Config, ConfigError};

const FILE: &str = "fuzz.yaml";

/// YAML syntax and the config schema's words.
const DICTIONARY: &[&str] = &[
    "programs:",
    "\n  - name: p\n",
    "- name: x",
    "name:",
    "metrics:",
    "counters:",
    "gauges:",
    "histograms:",
    "labels:",
    "decoders:",
    "size: 8",
    "size: 4",
    "padding: 4",
    "static_map:",
    "allow_unknown: true",
    "regexps:",
    "usdt:",
    "uprobes:",
    "uretprobes:",
    "attachment:",
    "attachments:",
    "binary_name: python3.11",
    "exe_path: /usr/bin/*",
    "cmdline: x",
    "pid: 1",
    "pid_file: x.pid",
    "cgroup: /x",
    "exclude:",
    "parent_binary_name: sh",
    "any_ancestor: true",
    "object: x.bpf.o",
    "code: |\n  int f(struct pt_regs *ctx) { return 0; }\n",
    "cflags: [-DX]",
    "kprobes:",
    "tracepoints:",
    "instances: shared",
    "instances: per_binary",
    "process_labels: [comm, exe, cgroup, container_id, pod_uid]",
    "bucket_type: exp2",
    "bucket_type: linear",
    "bucket_type: fixed",
    "bucket_keys: [1, 2]",
    "bucket_min: 0",
    "bucket_max: 63",
    "bucket_multiplier: 0.001",
    "table: t",
    "help: h",
    "value:",
    "field: f",
    "offset: 8",
    "signed: true",
    "multiplier: 2",
    "kind: counter",
    "function: f",
    "spec: x",
    "path: /x",
    "- name: uint",
    "- name: int",
    "- name: hex",
    "- name: string",
    "- name: static_map",
    "- name: regexp",
    "- name: usym",
    "- name: errno",
    "- name: inet_ip",
    "- name: cgroup",
    "python:gc__start: f",
    "libc:malloc: f",
    "/usr/bin/python3.11:function__entry: f",
    "&a ",
    "*a",
    "<<: *a",
    "!!str ",
    "!!int ",
    "!!binary ",
    "!!map ",
    "!include x.yaml",
    "!custom ",
    "---\n",
    "...\n",
    "? ",
    "- ",
    "|-\n",
    ">+\n",
    "|2\n",
    "~",
    "null",
    "{}",
    "[]",
    "{a: b}",
    "[a, b]",
    "\"\\u0000\"",
    "\"\\x\"",
    "''",
    "%YAML 1.1\n",
    "%TAG ! tag:x,2000:\n",
    "${X}",
    "  ",
    "\t",
    ": ",
    "-1",
    "0x10",
    "true",
    "yes",
    "no",
    "on",
    "1e3",
    ".inf",
    ".nan",
];

pub struct ConfigTarget {
    seeds: Vec<String>,
}

impl ConfigTarget {
    pub fn new() -> ConfigTarget {
        let mut seeds = seeds::configs();
        seeds.extend(seeds::test_configs());
        for (_, bytes) in engine::regression_files("config") {
            seeds.push(String::from_utf8_lossy(&bytes).into_owned());
        }
        ConfigTarget { seeds }
    }
}

/// Whether an error's position lies in `text`: lines as YAML breaks them
/// (`\r\n`, `\r` or `\n`), columns counting characters, one past the end of
/// a line included.
fn check_position(text: &str, e: &ConfigError) -> Result<(), String> {
    let shown = e.to_string();
    if e.file != Path::new(FILE) {
        return Err(format!("error names another file: {:?} in {shown}", e.file));
    }
    if e.line == 0 || e.column == 0 {
        return Err(format!("error without a line and column: {shown:?}"));
    }
    let lines: Vec<&str> = text
        .split("\r\n")
        .flat_map(|l| l.split(['\r', '\n']))
        .collect();
    let Some(line) = lines.get(e.line as usize - 1) else {
        return Err(format!(
            "error past the last line: {} lines, {shown:?}",
            lines.len()
        ));
    };
    let width = line.chars().count() as u64;
    if e.column > width + 1 {
        return Err(format!(
            "error past the end of its line: {width} characters, {shown:?}"
        ));
    }
    let prefix = format!("{FILE}:{}:{}: ", e.line, e.column);
    if !shown.starts_with(&prefix) || e.message.trim().is_empty() {
        return Err(format!(
            "error not shown as `file:line:column: message`: {shown:?}"
        ));
    }
    Ok(())
}

impl Target for ConfigTarget {
    type Input = String;

    fn name(&self) -> &'static str {
        "config"
    }

    fn ci_executions(&self) -> u64 {
        1500
    }

    fn seeds(&self) -> Vec<String> {
        self.seeds.clone()
    }

    fn generate(&self, rng: &mut Rng, corpus: &[String]) -> String {
        generate_text(rng, corpus, DICTIONARY, 40, "\n")
    }

    fn run(&self, text: &String) -> Result<Behaviour, String> {
        match Config::parse(Path::new(FILE), text) {
            Ok(config) => {
                let warnings = config.warnings();
                for w in &warnings {
                    check_position(text, w).map_err(|e| format!("a warning's {e}"))?;
                }
                Ok(format!(
                    "ok {} programs, {} warnings",
                    config.programs.len().min(3),
                    warnings.len().min(3)
                ))
            }
            Err(errors) => {
                if errors.0.is_empty() {
                    return Err("no errors: an Err with an empty list".into());
                }
                for e in &errors.0 {
                    check_position(text, e)?;
                }
                // The kind of the first error (its words) is the behaviour.
                let first: String = errors.0[0]
                    .message
                    .split(|c: char| !c.is_ascii_alphabetic() && c != ' ')
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(48)
                    .collect();
                Ok(format!("err {} {first}", errors.0.len().min(4)))
            }
        }
    }

    fn shrink(&self, text: &String) -> Box<dyn Iterator<Item = String>> {
        shrink_text(text)
    }

    fn save(&self, text: &String) -> Vec<u8> {
        text.as_bytes().to_vec()
    }

    fn extension(&self) -> &'static str {
        "yaml"
    }

    fn allocation_bound(&self, text: &String) -> usize {
        (64 << 20) + 256 * text.len()
    }
}
