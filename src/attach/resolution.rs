//! Where each probe of a program would attach in one process, found as an
//! attach finds it (the same [`resolve`] calls) but with nothing loaded or
//! attached: what `check --pid` and the landing page's explain view show.

use super::resolve::{self, Origin, Target};
use super::sources::Unresolved;
use crate::config::{ProbeConfig, ProbeKind};
use crate::discovery::ProcessInfo;
use crate::elf::ElfCache;

/// One probe of a program, looked up in one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResolution {
    /// The probe as configured.
    pub probe: ProbeConfig,
    /// Where it would attach (a USDT probe may live in several files), or why
    /// it cannot: the message an attach would report, and its reason.
    pub outcome: Result<Vec<Target>, Unresolved>,
}

/// `usdt`, `uprobe` or `uretprobe`.
fn kind_name(kind: ProbeKind) -> &'static str {
    match kind {
        ProbeKind::Usdt => "usdt",
        ProbeKind::Uprobe => "uprobe",
        ProbeKind::Uretprobe => "uretprobe",
    }
}

impl ProbeResolution {
    /// Whether the probe was found.
    pub fn resolved(&self) -> bool {
        self.outcome.is_ok()
    }

    /// One line: `usdt fixture:hit -> on_hit: found fixture:hit in /usr/bin/x`,
    /// or `uprobe f -> on_f: does not resolve: symbol "f" not found in ...`.
    pub fn describe(&self) -> String {
        let probe = format!(
            "{} {} -> {}",
            kind_name(self.probe.kind),
            self.probe.spec,
            self.probe.function
        );
        match &self.outcome {
            Ok(targets) => {
                let places: Vec<String> = targets
                    .iter()
                    .map(|t| {
                        let what = if !t.provider.is_empty() {
                            format!("{}:{}", t.provider, t.name)
                        } else if !t.symbols.is_empty() {
                            format!("{} ({} functions)", t.name, t.symbols.len())
                        } else if !t.each.is_empty() {
                            let names: Vec<&str> = t.each.iter().map(|(n, _)| n.as_str()).collect();
                            format!("{} ({})", t.name, names.join("; "))
                        } else {
                            t.name.clone()
                        };
                        let what = match &t.choice {
                            Some(choice) => format!("{what} ({choice})"),
                            None => what,
                        };
                        let note = t
                            .note
                            .as_ref()
                            .map(|n| format!("; {n}"))
                            .unwrap_or_default();
                        let later = t
                            .not_mapped_yet
                            .map(|via| format!(" (not loaded yet, found through {via})"))
                            .unwrap_or_default();
                        format!("{what} in {}{later}{note}", t.path.display())
                    })
                    .collect();
                format!("{probe}: found {}", places.join("; "))
            }
            Err(e) => format!("{probe}: does not resolve: {}", e.message),
        }
    }
}

/// Looks one probe up as an attach would: where it would attach, or why
/// it cannot (with a short reason for the self-metrics).
pub fn resolve_probe(
    origin: Origin<'_>,
    probe: &ProbeConfig,
    cache: &mut ElfCache,
) -> Result<Vec<Target>, Unresolved> {
    let unresolved = |e: resolve::ResolveError| Unresolved {
        message: e.to_string(),
        reason: e.reason(),
    };
    match probe.kind {
        ProbeKind::Usdt => resolve::resolve_usdt(origin, &probe.spec, cache).map_err(unresolved),
        ProbeKind::Uprobe | ProbeKind::Uretprobe => {
            resolve::resolve_uprobe(origin, &probe.spec, cache)
                .map_err(unresolved)
                .and_then(|(target, is_go)| {
                    if is_go && probe.kind == ProbeKind::Uretprobe {
                        Err(Unresolved {
                            message: format!(
                                "{} is a Go binary: uretprobes are refused on Go binaries (they corrupt Go's moving stacks)",
                                target.path.display()
                            ),
                            reason: "go_uretprobe",
                        })
                    } else {
                        Ok(vec![target])
                    }
                })
        }
    }
}

/// Looks every probe up in `process`'s executable and mapped files, as an
/// attach would (parsed files are kept in `cache`).
pub fn resolve_probes(
    process: &ProcessInfo,
    probes: &[ProbeConfig],
    cache: &mut ElfCache,
) -> Vec<ProbeResolution> {
    let origin = Origin::Process(process, None);
    probes
        .iter()
        .map(|probe| ProbeResolution {
            probe: probe.clone(),
            outcome: resolve_probe(origin, probe, cache),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn probe(kind: ProbeKind, spec: &str, function: &str) -> ProbeConfig {
        ProbeConfig {
            kind,
            spec: spec.into(),
            function: function.into(),
            source: None,
        }
    }

    fn target(provider: &str, name: &str, path: &str) -> Target {
        Target {
            path: PathBuf::from(path),
            host_path: PathBuf::from("/proc/1/exe"),
            provider: provider.into(),
            name: name.into(),
            not_mapped_yet: None,
            symbols: Vec::new(),
            offset: None,
            choice: None,
            each: Vec::new(),
            note: None,
        }
    }

    #[test]
    fn descriptions_name_the_probe_and_where_it_lives() {
        let found = ProbeResolution {
            probe: probe(ProbeKind::Usdt, "fixture:hit", "on_hit"),
            outcome: Ok(vec![
                target("fixture", "hit", "/opt/app"),
                target("fixture", "hit", "/opt/lib.so"),
            ]),
        };
        assert_eq!(
            found.describe(),
            "usdt fixture:hit -> on_hit: found fixture:hit in /opt/app; fixture:hit in /opt/lib.so"
        );
        let uprobe = ProbeResolution {
            probe: probe(ProbeKind::Uretprobe, "target_add", "on_ret"),
            outcome: Ok(vec![target("", "target_add", "/opt/app")]),
        };
        assert_eq!(
            uprobe.describe(),
            "uretprobe target_add -> on_ret: found target_add in /opt/app"
        );
        let missing = ProbeResolution {
            probe: probe(ProbeKind::Uprobe, "target_ad", "on_add"),
            outcome: Err(Unresolved {
                message: "symbol \"target_ad\" not found".into(),
                reason: "no_symbol",
            }),
        };
        assert!(!missing.resolved());
        assert_eq!(
            missing.describe(),
            "uprobe target_ad -> on_add: does not resolve: symbol \"target_ad\" not found"
        );
    }

    #[test]
    fn probes_of_this_test_process_resolve_in_its_files() {
        let me = ProcessInfo::read(std::process::id() as i32).unwrap();
        let mut cache = ElfCache::new(8);
        let resolved = resolve_probes(
            &me,
            &[
                probe(ProbeKind::Uprobe, "c:getpid", "f"),
                probe(ProbeKind::Uprobe, "no_such_symbol_here", "f"),
                probe(ProbeKind::Usdt, "no_such:probe", "f"),
            ],
            &mut cache,
        );
        let libc = resolved[0].outcome.as_ref().unwrap();
        assert_eq!(libc[0].name, "getpid");
        assert!(
            libc[0].path.to_string_lossy().contains("libc.so"),
            "{:?}",
            libc[0].path
        );
        let missing = resolved[1].outcome.as_ref().unwrap_err();
        assert_eq!(missing.reason, "no_symbol");
        let missing = &missing.message;
        assert!(
            missing.starts_with(&format!(
                "symbol \"no_such_symbol_here\" not found in {}",
                me.exe.display()
            )),
            "{missing}"
        );
        let usdt = resolved[2].outcome.as_ref().unwrap_err();
        assert_eq!(usdt.reason, "no_usdt");
        let usdt = &usdt.message;
        assert!(
            usdt.starts_with("USDT probe no_such:probe not found in process "),
            "{usdt}"
        );
    }
}
