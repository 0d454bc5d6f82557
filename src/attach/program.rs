//! A program checked once against its object: functions and tables exist,
//! key layouts add up. Instances are stamped out of it per process.

use super::instance::{AttachTarget, Instance, InstanceError};
use super::libbpf_log;
use crate::config::{Config, ConfigError, Label, ProbeConfig, ProbeKind, Program};
use crate::discovery::Selector;
use crate::elf::ElfCache;
use crate::kernel::needs::{ProgramNeeds, ReturnProbe, Support};
use crate::kernel::return_probes::ObjectCode;
use crate::kernel::Feature;
use libbpf_rs::{MapType, ObjectBuilder, OpenObject};
use serde_saphyr::Spanned;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

/// Shape of a map as the object declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableLayout {
    /// Map type.
    pub map_type: MapType,
    /// Key size in bytes.
    pub key_size: u32,
    /// Value size in bytes (per CPU for per-CPU maps).
    pub value_size: u32,
}

impl TableLayout {
    /// Whether values are per CPU (and summed when read).
    pub fn is_percpu(&self) -> bool {
        matches!(
            self.map_type,
            MapType::PercpuHash | MapType::PercpuArray | MapType::LruPercpuHash
        )
    }
}

/// Whether `probe` is a uprobe or uretprobe on a symbol glob.
pub(crate) fn is_wildcard_uprobe(probe: &ProbeConfig) -> bool {
    probe.kind != ProbeKind::Usdt
        && crate::config::UprobeSpec::parse(&probe.spec).is_some_and(|s| s.is_wildcard())
}

/// What `program` (its `probes`, its opened object and the object's bytes)
/// asks of the kernel.
fn program_needs(
    program: &Program,
    probes: &[ProbeConfig],
    open: &OpenObject,
    object: &[u8],
) -> ProgramNeeds {
    let named = |p: &ProbeConfig| {
        let kind = match p.kind {
            ProbeKind::Usdt => "usdt",
            ProbeKind::Uprobe => "uprobe",
            ProbeKind::Uretprobe => "uretprobe",
        };
        format!("{kind} {:?}", p.spec)
    };
    let used: HashSet<&str> = probes.iter().map(|p| p.function.as_str()).collect();
    let mut func_ip: Vec<String> = open
        .progs()
        .filter(|prog| used.contains(prog.name().to_string_lossy().as_ref()))
        .filter(|prog| {
            crate::kernel::needs::calls_helper(prog.insns(), libbpf_sys::BPF_FUNC_get_func_ip)
        })
        .map(|prog| prog.name().to_string_lossy().into_owned())
        .collect();
    func_ip.sort();
    // A pid-keyed program's probes count only the processes its exporter_pids
    // map holds: another process's returns find nothing there.
    let pid_keyed = program
        .instances
        .as_ref()
        .is_some_and(|m| m.value == crate::config::InstanceMode::PidKeyed);
    let unguarded_returns = if pid_keyed {
        Vec::new()
    } else {
        unguarded_returns(program, probes, object, &named)
    };
    ProgramNeeds {
        wildcards: probes
            .iter()
            .filter(|p| is_wildcard_uprobe(p))
            .map(named)
            .collect(),
        usdt: probes
            .iter()
            .filter(|p| p.kind == ProbeKind::Usdt)
            .map(named)
            .collect(),
        per_binary: program
            .instances
            .as_ref()
            .is_some_and(|m| m.value == crate::config::InstanceMode::PerBinary),
        func_ip,
        core_relocations: crate::kernel::needs::has_core_relocations(object),
        unguarded_returns,
    }
}

/// The program's uretprobes whose BPF functions may fill metric tables
/// for a process they were not attached to: those that reach a table
/// before finding state saved by an entry probe on the same function (in
/// the same probe set, or in none). An object that cannot be read counts
/// as filling every table.
fn unguarded_returns(
    program: &Program,
    probes: &[ProbeConfig],
    object: &[u8],
    named: &dyn Fn(&ProbeConfig) -> String,
) -> Vec<ReturnProbe> {
    let metrics = &program.metrics;
    let tables: BTreeSet<String> = metrics
        .scalars()
        .map(|(_, m)| m.value.table.clone())
        .chain(metrics.histograms.iter().map(|h| h.value.table.clone()))
        .collect();
    let code = ObjectCode::parse(object);
    probes
        .iter()
        .filter(|p| p.kind == ProbeKind::Uretprobe)
        .filter_map(|ret| {
            // Maps the function's entry probes use that are no metric's
            // table: where a start time or the like is kept.
            let state: BTreeSet<String> = probes
                .iter()
                .filter(|e| {
                    e.kind == ProbeKind::Uprobe
                        && e.spec == ret.spec
                        && e.function != ret.function
                        && (e.source.is_none() || e.source == ret.source)
                })
                .filter_map(|e| code.as_ref()?.referenced_maps(&e.function))
                .flatten()
                .filter(|m| !tables.contains(m))
                .collect();
            let unguarded = code
                .as_ref()
                .and_then(|c| c.unguarded_tables(&ret.function, &state, &tables))
                .unwrap_or_else(|| tables.clone());
            (!unguarded.is_empty()).then(|| ReturnProbe {
                probe: named(ret),
                function: ret.function.clone(),
                tables: unguarded.into_iter().collect(),
            })
        })
        .collect()
}

/// Map types whose entries we can read as metrics.
fn readable(map_type: MapType) -> bool {
    matches!(
        map_type,
        MapType::Hash
            | MapType::Array
            | MapType::PercpuHash
            | MapType::PercpuArray
            | MapType::LruHash
            | MapType::LruPercpuHash
    )
}

/// A program whose object has been checked against its config.
#[derive(Debug)]
pub struct PreparedProgram {
    /// The program's config.
    pub config: Program,
    /// Selects the processes to attach to.
    pub selector: Selector,
    /// The BPF object file contents.
    pub object: Arc<Vec<u8>>,
    /// Every probe, in config order.
    pub probes: Vec<ProbeConfig>,
    /// Layout of each map a metric reads, by name.
    pub tables: BTreeMap<String, TableLayout>,
    /// Where each counter's and gauge's value lies in its map value, by metric name.
    pub values: BTreeMap<String, super::ValueLayout>,
    /// How it runs on this kernel: its fallbacks, and the features it
    /// cannot run without ([`PreparedProgram::refusals`]).
    pub support: Support,
    /// Whether its uprobes and uretprobes attach through uprobe_multi links
    /// (the kernel has them): otherwise by perf-event uprobes, one per
    /// function.
    pub uprobe_multi: bool,
    /// Whether a pid-keyed program's USDT probes are placed once per file
    /// (the kernel has BPF cookies, which libbpf needs to tell the sites of
    /// a position-independent file apart for every process at once);
    /// otherwise once per process, into the same object.
    pub usdt_per_file: bool,
}

impl PreparedProgram {
    /// Checks `program`'s object (already read into `object`) against its config.
    /// Every mismatch is returned, located in the config file.
    pub fn prepare(
        config: &Config,
        program: &Spanned<Program>,
        object: Vec<u8>,
    ) -> Result<PreparedProgram, Vec<ConfigError>> {
        let p = &program.value;
        let at = |line: u64, column: u64, message: String| {
            ConfigError::new(&config.path, line, column, message)
        };
        let (opened, log) =
            super::libbpf_log::capture(|| ObjectBuilder::default().open_memory(&object));
        let open = opened.map_err(|e| {
            // libbpf says why (an unknown map attribute, a bad section) only
            // in its log: its last lines name the culprit.
            let tail = super::libbpf_log::tail(&log, 2);
            let why: Vec<&str> = tail
                .lines()
                .map(|l| l.trim().trim_start_matches("libbpf: "))
                .collect();
            let why = why.join("; ");
            vec![at(
                program.referenced.line(),
                program.referenced.column(),
                format!(
                    "program {:?}: libbpf cannot open the BPF object: {e}{}",
                    p.name,
                    if why.is_empty() {
                        String::new()
                    } else {
                        format!(" (libbpf: {why})")
                    }
                ),
            )]
        })?;
        let mut errors = Vec::new();
        let functions: HashSet<String> = open
            .progs()
            .map(|prog| prog.name().to_string_lossy().into_owned())
            .collect();
        let probes = p.probes();
        for probe in &probes {
            if !functions.contains(&probe.function) {
                let map = match probe.kind {
                    ProbeKind::Usdt => &p.usdt,
                    ProbeKind::Uprobe => &p.uprobes,
                    ProbeKind::Uretprobe => &p.uretprobes,
                };
                let (line, column) = map
                    .as_ref()
                    .map(|m| (m.referenced.line(), m.referenced.column()))
                    .unwrap_or((0, 0));
                let mut known: Vec<&String> = functions.iter().collect();
                known.sort();
                errors.push(at(
                    line,
                    column,
                    format!(
                        "program {:?}: {} probe {:?} names BPF function {:?}, which the object does not have; its programs: {}",
                        p.name,
                        probe.kind.config_key(),
                        probe.spec,
                        probe.function,
                        known.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
        let maps: BTreeMap<String, TableLayout> = open
            .maps()
            .map(|m| {
                (
                    m.name().to_string_lossy().into_owned(),
                    TableLayout {
                        map_type: m.map_type(),
                        key_size: m.key_size(),
                        value_size: m.value_size(),
                    },
                )
            })
            .collect();
        // libbpf's USDT support lives in the object: without usdt.bpf.h's maps
        // every USDT attach fails with a bare "failed to attach USDT".
        if let Some(usdt) = p.usdt.as_ref().filter(|u| !u.value.is_empty()) {
            if !maps.contains_key("__bpf_usdt_specs") {
                errors.push(at(
                    usdt.referenced.line(),
                    usdt.referenced.column(),
                    format!(
                        "program {:?}: the object has USDT probes in the config but was not built with libbpf's USDT support: include <bpf/usdt.bpf.h> (from `ebpf-userspace-exporter headers`) in its source and read arguments with bpf_usdt_arg()",
                        p.name
                    ),
                ));
            }
        }
        let mut tables = BTreeMap::new();
        let mut values = BTreeMap::new();
        let metric_tables = p
            .metrics
            .scalars()
            .map(|(kind, c)| {
                (
                    &c.referenced,
                    kind,
                    &c.value.name,
                    &c.value.table,
                    &c.value.labels,
                    Some(c.value.value.as_ref()),
                )
            })
            .chain(p.metrics.histograms.iter().map(|h| {
                (
                    &h.referenced,
                    "histogram",
                    &h.value.name,
                    &h.value.table,
                    &h.value.labels,
                    None,
                )
            }));
        for (loc, kind, name, table, labels, value) in metric_tables {
            let here = |message: String| at(loc.line(), loc.column(), message);
            let Some(layout) = maps.get(table.as_str()) else {
                let user_maps: Vec<&str> = maps
                    .keys()
                    .map(String::as_str)
                    .filter(|n| !n.contains('.') && !n.starts_with("__bpf_usdt"))
                    .collect();
                errors.push(here(format!(
                    "{kind} {name:?}: table {table:?} is not a map of the object; its maps: {}",
                    user_maps.join(", ")
                )));
                continue;
            };
            if !readable(layout.map_type) {
                errors.push(here(format!(
                    "{kind} {name:?}: table {table:?} is a {:?} map; metrics read hash, array, per-CPU hash and per-CPU array maps",
                    layout.map_type
                )));
                continue;
            }
            match value {
                // Counters and gauges: the whole value or one field of it.
                Some(field) => {
                    let btf = super::value_layout::value_type(&open, table);
                    match super::value_layout::resolve(
                        field,
                        kind == "gauge",
                        layout.value_size as usize,
                        &btf,
                    ) {
                        Ok(resolved) => {
                            values.insert(name.clone(), resolved);
                        }
                        Err(e) => {
                            errors.push(here(format!("{kind} {name:?}: table {table:?} {e}")))
                        }
                    }
                }
                None if layout.value_size != 8 => {
                    errors.push(here(format!(
                        "{kind} {name:?}: table {table:?} has {}-byte values; histograms need 8-byte (u64) values",
                        layout.value_size
                    )));
                }
                None => {}
            }
            let wanted: usize = labels.iter().map(|l: &Label| l.size + l.padding).sum();
            // A counter or gauge without labels sums every entry of its table, whatever the key.
            let unlabelled_counter = kind != "histogram" && labels.is_empty();
            if wanted != layout.key_size as usize && !unlabelled_counter {
                let detail: Vec<String> = labels
                    .iter()
                    .map(|l| format!("{}={}+{}", l.name, l.size, l.padding))
                    .collect();
                errors.push(here(format!(
                    "{kind} {name:?}: label sizes plus padding add up to {wanted} bytes ({}), but table {table:?} has {}-byte keys; fix `size`/`padding` to match the key struct",
                    if detail.is_empty() { "no labels".to_string() } else { detail.join(", ") },
                    layout.key_size
                )));
            }
            tables.insert(table.clone(), *layout);
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let attachment = p.attachment().map(|a| a.value.clone()).unwrap_or_default();
        let needs = program_needs(p, &probes, &open, &object);
        let kernel = crate::kernel::features();
        let support = crate::kernel::needs::judge(&needs, kernel);
        Ok(PreparedProgram {
            config: p.clone(),
            selector: Selector::new(&attachment),
            object: Arc::new(object),
            probes,
            tables,
            values,
            support,
            uprobe_multi: kernel.usable(Feature::UprobeMulti),
            usdt_per_file: kernel.usable(Feature::BpfCookie),
        })
    }

    /// The features this kernel lacks that the program cannot run without,
    /// each a message naming the feature, the kernel it needs and what to do,
    /// located at the program in `config`.
    pub fn refusals(&self, config: &Config, program: &Spanned<Program>) -> Vec<ConfigError> {
        let kernel = crate::kernel::features();
        self.support
            .refusals
            .iter()
            .map(|refusal| {
                ConfigError::new(
                    &config.path,
                    program.referenced.line(),
                    program.referenced.column(),
                    format!("program {:?}: {}", self.name(), refusal.message(kernel)),
                )
            })
            .collect()
    }

    /// Program name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The BPF functions attached through uprobe_multi links: every
    /// function a uprobe or uretprobe names, where the kernel has the links
    /// (a wildcard's link goes to every matching symbol, a single
    /// function's to one); none where it has not (perf-event uprobes, one
    /// per function). Either way all of a program's uprobes take one path,
    /// so a function may serve a wildcard and a plain probe alike.
    pub fn multi_uprobe_functions(&self) -> HashSet<&str> {
        if !self.uprobe_multi {
            return HashSet::new();
        }
        self.probes
            .iter()
            .filter(|p| p.kind != ProbeKind::Usdt)
            .map(|p| p.function.as_str())
            .collect()
    }

    /// Opens a fresh copy of the object with only the probed functions set to load.
    pub(crate) fn open(&self) -> Result<OpenObject, InstanceError> {
        let mut open = ObjectBuilder::default()
            .open_memory(&self.object)
            .map_err(|e| InstanceError::Load {
                message: format!("cannot open object: {e}"),
            })?;
        let used: HashSet<&str> = self.probes.iter().map(|p| p.function.as_str()).collect();
        let multi = self.multi_uprobe_functions();
        for mut prog in open.progs_mut() {
            let name = prog.name().to_string_lossy().into_owned();
            prog.set_autoload(used.contains(name.as_str()));
            // A multi-uprobe link needs a program loaded for that attach type.
            if multi.contains(name.as_str()) {
                prog.set_attach_type(libbpf_rs::ProgramAttachType::TraceUprobeMulti);
            }
        }
        Ok(open)
    }

    /// Opens a fresh copy and loads it through the verifier.
    pub fn load(&self) -> Result<libbpf_rs::Object, InstanceError> {
        let open = self.open()?;
        let (loaded, log) = libbpf_log::capture(|| open.load());
        loaded.map_err(|e| InstanceError::load_failed(e, &log))
    }

    /// Loads the object through the verifier and unloads it, without attaching.
    pub fn verify(&self) -> Result<(), InstanceError> {
        self.load().map(drop)
    }

    /// Whether one loaded object serves every matching process (`instances: shared`).
    pub fn is_shared(&self) -> bool {
        self.config
            .instances
            .as_ref()
            .is_some_and(|m| m.value == crate::config::InstanceMode::Shared)
    }

    /// Whether instances are per binary, for every process of it (`instances: per_binary`).
    pub fn is_per_binary(&self) -> bool {
        self.config
            .instances
            .as_ref()
            .is_some_and(|m| m.value == crate::config::InstanceMode::PerBinary)
    }

    /// Whether one loaded object serves every matching process, its probes
    /// placed once per file and its maps keyed by pid (`instances: pid_keyed`).
    pub fn is_pid_keyed(&self) -> bool {
        self.config
            .instances
            .as_ref()
            .is_some_and(|m| m.value == crate::config::InstanceMode::PidKeyed)
    }

    /// Attaches every probe to `target`: into a private copy of the object,
    /// into `shared` (the program's one object, for `instances: shared`), or
    /// through `pid_keyed` (for `instances: pid_keyed`).
    pub fn instantiate(
        &self,
        target: AttachTarget,
        cache: &mut ElfCache,
        shared: Option<&std::sync::Arc<libbpf_rs::Object>>,
        pid_keyed: Option<&super::pid_keyed::PidKeyedSlot>,
    ) -> Result<Instance, InstanceError> {
        Instance::attach(self, target, cache, shared, pid_keyed)
    }
}
