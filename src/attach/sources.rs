//! Which probe set observes each of a program's sources in one process: the
//! first, in the config's order, whose probes all resolve there (USDT where
//! the build has it, else functions found through `.symtab`, else exported
//! ones). A pure decision over the probes' resolutions, so that an attach,
//! `check --pid` and the landing page decide it the same way.

use crate::config::{ProbeConfig, Program};

/// Why a probe did not resolve: the message an attach would report, and a
/// short reason for the self-metrics (`no_usdt`, `no_symbol`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unresolved {
    /// What an attach would report.
    pub message: String,
    /// A few words, the same for every process that fails this way.
    pub reason: &'static str,
}

/// How one source fares in one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceOutcome {
    /// The source's name (its key under `sources:`).
    pub source: String,
    /// The metrics it feeds.
    pub metrics: Vec<String>,
    /// The set attached: its rank and label; `None`: the source is unavailable.
    pub chosen: Option<(usize, String)>,
    /// The better sets that did not resolve, each with its label and the
    /// first of its probes that did not (all of them when none was chosen).
    pub passed_over: Vec<(String, Unresolved)>,
}

impl SourceOutcome {
    /// Why the source is unavailable: the reason of its last set, the most
    /// basic way of observing it (`None` when a set was chosen).
    pub fn reason(&self) -> Option<&'static str> {
        match self.chosen {
            Some(_) => None,
            None => Some(
                self.passed_over
                    .last()
                    .map_or("no_probe_set", |(_, u)| u.reason),
            ),
        }
    }

    /// One line: `gc: from usdt` or `gc (python_gc_collections_total, ...):
    /// unavailable: usdt: ...; uprobes: ...`.
    pub fn describe(&self) -> String {
        let why = |list: &[(String, Unresolved)]| {
            list.iter()
                .map(|(label, u)| format!("{label}: {}", u.message))
                .collect::<Vec<_>>()
                .join("; ")
        };
        match &self.chosen {
            Some((_, label)) if self.passed_over.is_empty() => {
                format!("source {}: from {label}", self.source)
            }
            Some((_, label)) => format!(
                "source {}: from {label} (passed over {})",
                self.source,
                why(&self.passed_over)
            ),
            None => format!(
                "source {} unavailable, so no {}: {}",
                self.source,
                if self.metrics.is_empty() {
                    "metrics it feeds".to_string()
                } else {
                    self.metrics.join(", ")
                },
                why(&self.passed_over)
            ),
        }
    }
}

/// The choice for one process: which of `probes` to attach, and how each
/// source fares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// One flag per probe: attach it.
    pub attach: Vec<bool>,
    /// One outcome per source, in the config's (name) order.
    pub sources: Vec<SourceOutcome>,
}

/// Chooses, for each source of `program`, the first probe set whose probes
/// all resolve (`resolve(i)` tells for `probes[i]`; it is asked only about
/// the sets that are tried, in order). Probes outside `sources:` are always
/// attached.
pub fn choose(
    program: &Program,
    probes: &[ProbeConfig],
    mut resolve: impl FnMut(usize) -> Result<(), Unresolved>,
) -> Choice {
    let mut attach: Vec<bool> = probes.iter().map(|p| p.source.is_none()).collect();
    let mut outcomes = Vec::new();
    for (name, source) in program.sources.iter().flat_map(|s| s.value.iter()) {
        let mut outcome = SourceOutcome {
            source: name.clone(),
            metrics: source.value.metrics.clone(),
            chosen: None,
            passed_over: Vec::new(),
        };
        for (rank, set) in source.value.from.iter().enumerate() {
            let members: Vec<usize> = probes
                .iter()
                .enumerate()
                .filter(|(_, p)| {
                    p.source
                        .as_ref()
                        .is_some_and(|s| &s.source == name && s.rank == rank)
                })
                .map(|(i, _)| i)
                .collect();
            let label = set.value.label();
            match members.iter().map(|&i| resolve(i)).find_map(Result::err) {
                None if !members.is_empty() => {
                    for i in members {
                        attach[i] = true;
                    }
                    outcome.chosen = Some((rank, label));
                    break;
                }
                None => {}
                Some(unresolved) => outcome.passed_over.push((label, unresolved)),
            }
        }
        outcomes.push(outcome);
    }
    Choice {
        attach,
        sources: outcomes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    const CONFIG: &str = r#"programs:
  - name: python
    object: python.bpf.o
    metrics:
      counters:
        - {name: gc_total, help: h, table: gc}
        - {name: imports_total, help: h, table: imports}
    uprobes:
      Py_Initialize: on_init
    sources:
      gc:
        metrics: [gc_total]
        from:
          - usdt: {python:gc__start: on_gc_start, python:gc__done: on_gc_done}
          - name: symbols
            uprobes: {gc_collect_main: on_gc_entry}
            uretprobes: {gc_collect_main: on_gc_return}
      imports:
        metrics: [imports_total]
        from:
          - uprobes: {PyImport_ImportModuleLevelObject: on_import}
    attachment: {binary_name: python3}
"#;

    fn program() -> Program {
        Config::parse(Path::new("test.yaml"), CONFIG)
            .unwrap()
            .programs
            .remove(0)
            .value
    }

    fn missing(reason: &'static str) -> Unresolved {
        Unresolved {
            message: format!("not here ({reason})"),
            reason,
        }
    }

    /// The choice when the probes with these specs do not resolve.
    fn choice_without(absent: &[&str]) -> (Vec<String>, Vec<SourceOutcome>) {
        let program = program();
        let probes = program.probes();
        let choice = choose(&program, &probes, |i| {
            if absent.contains(&probes[i].spec.as_str()) {
                Err(missing(
                    if probes[i].kind == crate::config::ProbeKind::Usdt {
                        "no_usdt"
                    } else {
                        "no_symbol"
                    },
                ))
            } else {
                Ok(())
            }
        });
        let attached = probes
            .iter()
            .zip(&choice.attach)
            .filter(|(_, &a)| a)
            .map(|(p, _)| format!("{}->{}", p.spec, p.function))
            .collect();
        (attached, choice.sources)
    }

    #[test]
    fn usdt_wins_where_the_build_has_it_and_the_symbols_are_not_attached_too() {
        let (attached, sources) = choice_without(&[]);
        assert_eq!(
            attached,
            [
                "Py_Initialize->on_init",
                "python:gc__done->on_gc_done",
                "python:gc__start->on_gc_start",
                "PyImport_ImportModuleLevelObject->on_import",
            ]
        );
        assert_eq!(sources[0].chosen, Some((0, "usdt".to_string())));
        assert_eq!(sources[0].describe(), "source gc: from usdt");
        assert_eq!(sources[0].reason(), None);
    }

    #[test]
    fn without_usdt_the_symbols_feed_the_same_source() {
        let (attached, sources) = choice_without(&["python:gc__done"]);
        assert_eq!(
            attached,
            [
                "Py_Initialize->on_init",
                "gc_collect_main->on_gc_entry",
                "gc_collect_main->on_gc_return",
                "PyImport_ImportModuleLevelObject->on_import",
            ]
        );
        assert_eq!(sources[0].chosen, Some((1, "symbols".to_string())));
        assert_eq!(
            sources[0].describe(),
            "source gc: from symbols (passed over usdt: not here (no_usdt))"
        );
    }

    #[test]
    fn a_build_with_neither_lacks_the_source_says_why_and_keeps_the_others() {
        let (attached, sources) =
            choice_without(&["python:gc__start", "python:gc__done", "gc_collect_main"]);
        assert_eq!(
            attached,
            [
                "Py_Initialize->on_init",
                "PyImport_ImportModuleLevelObject->on_import"
            ]
        );
        assert_eq!(sources[0].chosen, None);
        assert_eq!(sources[0].reason(), Some("no_symbol"));
        assert_eq!(
            sources[0].describe(),
            "source gc unavailable, so no gc_total: usdt: not here (no_usdt); symbols: not here (no_symbol)"
        );
        assert_eq!(sources[1].chosen, Some((0, "uprobes".to_string())));
    }

    #[test]
    fn only_the_sets_tried_are_resolved() {
        let program = program();
        let probes = program.probes();
        let mut asked = Vec::new();
        choose(&program, &probes, |i| {
            asked.push(probes[i].spec.clone());
            Ok(())
        });
        // gc's second set is never looked up once USDT resolves.
        assert!(!asked.iter().any(|s| s == "gc_collect_main"), "{asked:?}");
    }
}
