//! What one program asks of the kernel, and how it runs on a given kernel:
//! in full, degraded (each fallback named), or not at all (each missing
//! feature named, with the kernel it needs and what to do). Pure: the
//! program's needs are read by the attach stage from its config and object
//! ([`ProgramNeeds`]), the kernel is a [`KernelFeatures`].

use super::{Detection, Feature, KernelFeatures};

/// What a program asks of the kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProgramNeeds {
    /// Its wildcard uprobes and uretprobes, as the config names them
    /// (`uprobe "libc.so.6:str*"`): one uprobe_multi link each.
    pub wildcards: Vec<String>,
    /// Its USDT probes (`usdt "python:gc__start"`), attached by libbpf.
    pub usdt: Vec<String>,
    /// Whether it runs `instances: per_binary` (pid -1 attaches).
    pub per_binary: bool,
    /// Its attached BPF functions that call bpf_get_func_ip.
    pub func_ip: Vec<String>,
    /// Whether its object has CO-RE relocations (`BPF_CORE_READ`, kernel
    /// structs from a generated vmlinux.h), which libbpf resolves against
    /// the kernel's BTF. (libbpf's usdt.bpf.h needs none: it learns whether
    /// the kernel has BPF cookies from libbpf itself.)
    pub core_relocations: bool,
    /// Its uretprobes whose BPF functions may fill metric tables when they
    /// run for a process they were not attached to (no check of state saved
    /// by an entry probe comes first: [`super::return_probes`]).
    pub unguarded_returns: Vec<ReturnProbe>,
}

/// A uretprobe that would count other processes' returns on a kernel that
/// runs it for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnProbe {
    /// As the config names it (`uretprobe "target_add"`).
    pub probe: String,
    /// Its BPF function.
    pub function: String,
    /// The metric tables it may fill for another process.
    pub tables: Vec<String>,
}

impl ReturnProbe {
    /// `uretprobe "target_add" (table return_values)`.
    pub fn describe(&self) -> String {
        format!(
            "{} (table{} {})",
            self.probe,
            if self.tables.len() == 1 { "" } else { "s" },
            self.tables.join(", ")
        )
    }
}

/// A fallback a program runs with here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    /// The missing feature.
    pub feature: Feature,
    /// What is done instead (`one uprobe per function`).
    pub instead: &'static str,
    /// The probes it applies to.
    pub probes: Vec<String>,
    /// Anything more the user should know.
    pub note: Option<String>,
}

/// A feature a program cannot run without.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The missing feature.
    pub feature: Feature,
    /// What in the program needs it.
    pub needed_by: String,
    /// What the user can do.
    pub remedy: &'static str,
}

/// How a program runs on a kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Support {
    /// Fallbacks it runs with (none: in full).
    pub fallbacks: Vec<Fallback>,
    /// Features it cannot do without (any: not at all).
    pub refusals: Vec<Refusal>,
}

impl Support {
    /// `full`, `degraded: one uprobe per function for ... (...)`, or
    /// `not at all: ...`: what `check` says of a program on `kernel`.
    pub fn summary(&self, kernel: &KernelFeatures) -> String {
        if !self.refusals.is_empty() {
            let why: Vec<String> = self.refusals.iter().map(|r| r.message(kernel)).collect();
            return format!("not at all: {}", why.join("; "));
        }
        if self.fallbacks.is_empty() {
            return "full".to_string();
        }
        format!("degraded: {}", self.fallbacks_text(kernel))
    }

    /// The fallbacks, those of one missing feature together:
    /// `one uprobe per function for uprobe "x"; ... (FEATURE needs ...; notes)`.
    pub fn fallbacks_text(&self, kernel: &KernelFeatures) -> String {
        let mut features: Vec<Feature> = self.fallbacks.iter().map(|f| f.feature).collect();
        features.dedup();
        let parts: Vec<String> = features
            .iter()
            .map(|&feature| {
                let of_feature: Vec<&Fallback> = self
                    .fallbacks
                    .iter()
                    .filter(|f| f.feature == feature)
                    .collect();
                let what: Vec<String> = of_feature.iter().map(|f| f.describe()).collect();
                let mut notes: Vec<&str> = of_feature
                    .iter()
                    .filter_map(|f| f.note.as_deref())
                    .collect();
                notes.dedup();
                let notes: String = notes.iter().map(|n| format!("; {n}")).collect();
                format!("{} ({}{notes})", what.join("; "), kernel.needs(feature))
            })
            .collect();
        parts.join("; ")
    }
}

impl Fallback {
    /// `one uprobe per function for uprobe "a", uretprobe "b"` (the first
    /// few probes, and how many more).
    pub fn describe(&self) -> String {
        const SHOWN: usize = 3;
        let mut probes = self.probes[..self.probes.len().min(SHOWN)].join(", ");
        if self.probes.len() > SHOWN {
            probes.push_str(&format!(" and {} more", self.probes.len() - SHOWN));
        }
        format!("{} for {probes}", self.instead)
    }
}

impl Refusal {
    /// `bpf_get_func_ip in uprobes needs Linux 6.6+; this kernel is ...:
    /// BPF function "f" calls it; use ...`.
    pub fn message(&self, kernel: &KernelFeatures) -> String {
        format!(
            "{}: {}; {}",
            kernel.needs(self.feature),
            self.needed_by,
            self.remedy
        )
    }
}

/// How a program with `needs` runs on `kernel`.
pub fn judge(needs: &ProgramNeeds, kernel: &KernelFeatures) -> Support {
    let mut support = Support::default();
    let missing = |feature| !kernel.usable(feature);
    if missing(Feature::UprobeMulti) && !needs.wildcards.is_empty() {
        support.fallbacks.push(Fallback {
            feature: Feature::UprobeMulti,
            instead: "one uprobe per function",
            probes: needs.wildcards.clone(),
            note: Some(
                "perf-event uprobes: CAP_SYS_ADMIN where the kernel requires it".to_string(),
            ),
        });
    }
    if missing(Feature::UprobeMulti) && !needs.usdt.is_empty() {
        let assumed = *kernel.detection(Feature::UprobeMulti) == Detection::AssumedMissing;
        support.fallbacks.push(Fallback {
            feature: Feature::UprobeMulti,
            instead: "one uprobe per USDT site, by libbpf",
            probes: needs.usdt.clone(),
            note: Some(if assumed {
                "libbpf makes this choice itself, and on this kernel it still attaches USDT probes through uprobe_multi links".to_string()
            } else {
                "perf-event uprobes: CAP_SYS_ADMIN where the kernel requires it".to_string()
            }),
        });
    }
    // libbpf then finds a site's argument specs by its address, which it
    // knows only per process: per-process instances lose nothing.
    if missing(Feature::BpfCookie) && !needs.usdt.is_empty() && needs.per_binary {
        support.fallbacks.push(Fallback {
            feature: Feature::BpfCookie,
            instead: "USDT sites found by address, by libbpf",
            probes: needs.usdt.clone(),
            note: Some("`instances: per_binary` cannot attach USDT probes in position-independent files (shared libraries, PIE executables) this way".to_string()),
        });
    }
    // Per binary, a probe runs for every process of the file by design;
    // uprobe_multi links filter their return probes by process, and every
    // uretprobe is attached through one where the kernel has them
    // (`PreparedProgram::multi_uprobe_functions`).
    if missing(Feature::UretprobePidFilter) && !needs.per_binary && missing(Feature::UprobeMulti) {
        let probes: Vec<String> = needs
            .unguarded_returns
            .iter()
            .map(ReturnProbe::describe)
            .collect();
        if !probes.is_empty() {
            support.fallbacks.push(Fallback {
                feature: Feature::UretprobePidFilter,
                instead: "other attached processes' returns of the same function also counted",
                probes,
                note: Some("a return probe that counts only after finding state its entry probe saved stays exact".to_string()),
            });
        }
    }
    if missing(Feature::FuncIpInUprobes) && !needs.func_ip.is_empty() {
        let functions: Vec<String> = needs.func_ip.iter().map(|f| format!("{f:?}")).collect();
        support.refusals.push(Refusal {
            feature: Feature::FuncIpInUprobes,
            needed_by: format!(
                "BPF function{} {} call{} it",
                if functions.len() == 1 { "" } else { "s" },
                functions.join(", "),
                if functions.len() == 1 { "s" } else { "" }
            ),
            remedy: "at a function's entry use PT_REGS_IP(ctx) instead (the same address there); in a uretprobe, save it at entry in a map keyed by thread, or give each function a probe of its own",
        });
    }
    if missing(Feature::KernelBtf) && needs.core_relocations {
        support.refusals.push(Refusal {
            feature: Feature::KernelBtf,
            needed_by: "the object has CO-RE relocations (BPF_CORE_READ, or kernel structs from a generated vmlinux.h), which libbpf resolves against the kernel's BTF".to_string(),
            remedy: "run on a kernel built with CONFIG_DEBUG_INFO_BTF (it has /sys/kernel/btf/vmlinux)",
        });
    }
    support
}

/// Whether `insns` call BPF helper `id` (a call with source register 0; 1
/// and 2 are calls of BPF functions and kfuncs).
pub fn calls_helper(insns: &[libbpf_sys::bpf_insn], id: u32) -> bool {
    const CALL: u8 = 0x85; // BPF_JMP | BPF_CALL
    insns
        .iter()
        .any(|insn| insn.code == CALL && insn.src_reg() == 0 && insn.imm as u32 == id)
}

/// Whether an ELF BPF object's `.BTF.ext` section lists CO-RE relocations.
/// Its header: magic (0xeB9F), version, flags, header length, then
/// offset/length pairs of the func info, line info and (in headers of 32
/// bytes or more) CO-RE relocation sections.
pub fn has_core_relocations(elf: &[u8]) -> bool {
    use object::{Object, ObjectSection};
    let Ok(file) = object::File::parse(elf) else {
        return false;
    };
    let Some(data) = file.section_by_name(".BTF.ext").and_then(|s| s.data().ok()) else {
        return false;
    };
    if data.len() < 32 {
        return false;
    }
    let little = match [data[0], data[1]] {
        [0x9f, 0xeb] => true,
        [0xeb, 0x9f] => false,
        _ => return false,
    };
    let word = |at: usize| {
        let bytes = [data[at], data[at + 1], data[at + 2], data[at + 3]];
        if little {
            u32::from_le_bytes(bytes)
        } else {
            u32::from_be_bytes(bytes)
        }
    };
    let header_len = word(4);
    header_len >= 32 && word(28) > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wildcard_and_usdt() -> ProgramNeeds {
        ProgramNeeds {
            wildcards: vec!["uprobe \"libuexp_plugin.so:plugin_op_*\"".into()],
            usdt: vec!["usdt \"plugin:work\"".into()],
            per_binary: false,
            func_ip: vec!["on_op_return".into()],
            core_relocations: true,
            unguarded_returns: Vec::new(),
        }
    }

    #[test]
    fn a_kernel_with_everything_runs_a_program_in_full() {
        let kernel = KernelFeatures::with("6.18.44", &[]);
        let support = judge(&wildcard_and_usdt(), &kernel);
        assert_eq!(support, Support::default());
        assert_eq!(support.summary(&kernel), "full");
    }

    #[test]
    fn without_uprobe_multi_wildcards_fall_back_to_one_uprobe_per_function() {
        let kernel = KernelFeatures::with(
            "6.1.0-57-amd64",
            &[(
                Feature::UprobeMulti,
                Detection::Missing(
                    "the kernel has no uprobe_multi links (BPF_LINK_CREATE answered EINVAL)".into(),
                ),
            )],
        );
        let support = judge(&wildcard_and_usdt(), &kernel);
        assert!(support.refusals.is_empty());
        let summary = support.summary(&kernel);
        // Both fallbacks of the feature, then its sentence and notes once.
        assert_eq!(
            summary,
            "degraded: one uprobe per function for uprobe \"libuexp_plugin.so:plugin_op_*\"; one uprobe per USDT site, by libbpf for usdt \"plugin:work\" (uprobe_multi links filtering by process needs Linux 6.10+; this kernel is 6.1.0-57-amd64: the kernel has no uprobe_multi links (BPF_LINK_CREATE answered EINVAL); perf-event uprobes: CAP_SYS_ADMIN where the kernel requires it)"
        );
        // A program without wildcards or USDT loses nothing.
        let plain = ProgramNeeds::default();
        assert_eq!(judge(&plain, &kernel).summary(&kernel), "full");
    }

    #[test]
    fn an_assumed_missing_uprobe_multi_says_libbpf_still_decides_usdt() {
        let kernel = KernelFeatures::with(
            "6.18.44",
            &[(Feature::UprobeMulti, Detection::AssumedMissing)],
        );
        let summary = judge(&wildcard_and_usdt(), &kernel).summary(&kernel);
        assert!(
            summary.contains("assumed missing by --kernel.assume-missing"),
            "{summary}"
        );
        assert!(
            summary.contains("it still attaches USDT probes through uprobe_multi links"),
            "{summary}"
        );
    }

    #[test]
    fn missing_func_ip_or_btf_refuse_the_program_naming_feature_version_and_remedy() {
        let kernel = KernelFeatures::with(
            "5.15.0-91-generic",
            &[
                (
                    Feature::FuncIpInUprobes,
                    Detection::Missing("bpf_get_func_ip returned 0 in a uprobe (5.15 to 6.5 answer only for kprobes)".into()),
                ),
                (Feature::KernelBtf, Detection::Missing("no kernel BTF".into())),
            ],
        );
        let support = judge(&wildcard_and_usdt(), &kernel);
        assert_eq!(support.refusals.len(), 2);
        let first = support.refusals[0].message(&kernel);
        assert!(
            first.starts_with("bpf_get_func_ip in uprobes needs Linux 6.6+; this kernel is 5.15.0-91-generic: bpf_get_func_ip returned 0 in a uprobe (5.15 to 6.5 answer only for kprobes): BPF function \"on_op_return\" calls it; at a function's entry use PT_REGS_IP(ctx)"),
            "{first}"
        );
        let summary = support.summary(&kernel);
        assert!(summary.starts_with("not at all: "), "{summary}");
        assert!(
            summary.contains("kernel BTF (CONFIG_DEBUG_INFO_BTF) needs Linux 5.4+"),
            "{summary}"
        );
        // Without a call of the helper, the helper's absence costs nothing.
        let needs = ProgramNeeds {
            func_ip: Vec::new(),
            core_relocations: false,
            ..wildcard_and_usdt()
        };
        assert!(judge(&needs, &kernel).refusals.is_empty());
    }

    #[test]
    fn without_cookies_per_binary_usdt_is_warned_about() {
        let kernel = KernelFeatures::with(
            "5.10.0",
            &[(Feature::BpfCookie, Detection::Missing("no".into()))],
        );
        let mut needs = wildcard_and_usdt();
        needs.func_ip.clear();
        needs.core_relocations = false;
        assert_eq!(judge(&needs, &kernel).summary(&kernel), "full");
        needs.per_binary = true;
        let summary = judge(&needs, &kernel).summary(&kernel);
        assert!(
            summary.contains("USDT sites found by address, by libbpf"),
            "{summary}"
        );
        assert!(
            summary.contains(
                "`instances: per_binary` cannot attach USDT probes in position-independent files"
            ),
            "{summary}"
        );
    }

    #[test]
    fn without_uretprobe_filtering_return_probes_that_count_unguarded_are_named() {
        let missing = Detection::Missing("a uretprobe attached for the exporter's pid also ran when a child process returned from the function".into());
        let kernel = KernelFeatures::with(
            "6.1.0-57-amd64",
            &[(Feature::UretprobePidFilter, missing.clone())],
        );
        let ret = |probe: &str, function: &str, tables: &[&str]| ReturnProbe {
            probe: probe.into(),
            function: function.into(),
            tables: tables.iter().map(|t| t.to_string()).collect(),
        };
        let needs = ProgramNeeds {
            unguarded_returns: vec![
                ret(
                    "uretprobe \"target_add\"",
                    "on_add_return",
                    &["return_values"],
                ),
                ret("uretprobe \"lib.so:op_*\"", "on_op_return", &["a", "b"]),
            ],
            usdt: vec!["usdt \"fixture:hit\"".into()],
            ..ProgramNeeds::default()
        };
        // 6.1: no uprobe_multi links either.
        let old = KernelFeatures::with(
            "6.1.0-57-amd64",
            &[
                (Feature::UretprobePidFilter, missing.clone()),
                (
                    Feature::UprobeMulti,
                    Detection::Missing("the kernel has no uprobe_multi links".into()),
                ),
            ],
        );
        let support = judge(&needs, &old);
        let of_feature: Vec<&Fallback> = support
            .fallbacks
            .iter()
            .filter(|f| f.feature == Feature::UretprobePidFilter)
            .collect();
        assert_eq!(of_feature.len(), 1);
        assert_eq!(
            of_feature[0].probes,
            vec![
                "uretprobe \"target_add\" (table return_values)".to_string(),
                "uretprobe \"lib.so:op_*\" (tables a, b)".to_string()
            ]
        );
        assert_eq!(
            of_feature[0].describe(),
            "other attached processes' returns of the same function also counted for uretprobe \"target_add\" (table return_values), uretprobe \"lib.so:op_*\" (tables a, b)"
        );
        assert!(
            support.summary(&old).contains("(uretprobes filtered by process needs Linux 6.13+; this kernel is 6.1.0-57-amd64: a uretprobe attached for the exporter's pid also ran when a child process returned from the function; a return probe that counts only after finding state its entry probe saved stays exact)"),
            "{}",
            support.summary(&old)
        );
        // 6.10 to 6.12: uprobe_multi links, which filter their return
        // probes, take them: nothing is lost.
        assert_eq!(judge(&needs, &kernel).summary(&kernel), "full");
        // Per binary a probe counts every process of the file by design;
        // a kernel that filters loses nothing; a program whose returns are
        // all guarded neither.
        let per_binary = ProgramNeeds {
            per_binary: true,
            ..needs.clone()
        };
        assert!(judge(&per_binary, &old)
            .fallbacks
            .iter()
            .all(|f| f.feature != Feature::UretprobePidFilter));
        let fixed = KernelFeatures::with("6.18.44", &[]);
        assert_eq!(judge(&needs, &fixed).summary(&fixed), "full");
        assert_eq!(judge(&ProgramNeeds::default(), &old).summary(&old), "full");
    }

    #[test]
    fn helper_calls_are_told_from_calls_of_bpf_functions() {
        use libbpf_sys::bpf_insn;
        let call = |src: u8, imm: i32| {
            let mut insn = bpf_insn {
                code: 0x85,
                imm,
                ..Default::default()
            };
            insn.set_src_reg(src);
            insn
        };
        let exit = bpf_insn {
            code: 0x95,
            ..Default::default()
        };
        assert!(calls_helper(&[call(0, 173), exit], 173));
        // A call of a BPF function 173 instructions on is not the helper.
        assert!(!calls_helper(&[call(1, 173), exit], 173));
        assert!(!calls_helper(&[call(0, 1), exit], 173));
    }

    #[test]
    fn core_relocations_are_read_from_the_btf_ext_header() {
        let mut ext = vec![0x9f, 0xeb, 1, 0];
        ext.extend_from_slice(&32u32.to_le_bytes()); // header length
        for word in [0u32, 0, 0, 0, 0, 12] {
            ext.extend_from_slice(&word.to_le_bytes());
        }
        assert!(has_core_relocations(&elf_with_section(".BTF.ext", &ext)));
        let mut none = ext.clone();
        none[28..32].copy_from_slice(&0u32.to_le_bytes());
        assert!(!has_core_relocations(&elf_with_section(".BTF.ext", &none)));
        // An older header (24 bytes) has no CO-RE part.
        let mut old = ext.clone();
        old[4..8].copy_from_slice(&24u32.to_le_bytes());
        assert!(!has_core_relocations(&elf_with_section(".BTF.ext", &old)));
        assert!(!has_core_relocations(&elf_with_section(".BTF", &ext)));
        assert!(!has_core_relocations(b"not an ELF file"));
    }

    /// A little-endian ELF64 relocatable BPF file with one section (and its
    /// section name table).
    fn elf_with_section(name: &str, data: &[u8]) -> Vec<u8> {
        let names = [b"\0".as_slice(), name.as_bytes(), b"\0.shstrtab\0"].concat();
        let data_at = 64u64;
        let names_at = data_at + data.len() as u64;
        let headers_at = (names_at + names.len() as u64).next_multiple_of(8);
        let mut elf = vec![0x7f, b'E', b'L', b'F', 2, 1, 1];
        elf.resize(16, 0);
        elf.extend_from_slice(&1u16.to_le_bytes()); // ET_REL
        elf.extend_from_slice(&247u16.to_le_bytes()); // EM_BPF
        elf.extend_from_slice(&1u32.to_le_bytes());
        elf.extend_from_slice(&[0; 16]); // entry, program headers
        elf.extend_from_slice(&headers_at.to_le_bytes());
        elf.extend_from_slice(&0u32.to_le_bytes()); // flags
        for half in [64u16, 0, 0, 64, 3, 2] {
            // header size, program header size and count, section header
            // size and count, index of the name table
            elf.extend_from_slice(&half.to_le_bytes());
        }
        elf.extend_from_slice(data);
        elf.extend_from_slice(&names);
        elf.resize(headers_at as usize, 0);
        let section = |elf: &mut Vec<u8>, name: u32, kind: u32, at: u64, size: u64| {
            elf.extend_from_slice(&name.to_le_bytes());
            elf.extend_from_slice(&kind.to_le_bytes());
            elf.extend_from_slice(&[0; 16]); // flags, address
            elf.extend_from_slice(&at.to_le_bytes());
            elf.extend_from_slice(&size.to_le_bytes());
            elf.extend_from_slice(&[0; 8]); // link, info
            elf.extend_from_slice(&1u64.to_le_bytes()); // alignment
            elf.extend_from_slice(&0u64.to_le_bytes()); // entry size
        };
        elf.extend_from_slice(&[0; 64]);
        section(&mut elf, 1, 1, data_at, data.len() as u64); // SHT_PROGBITS
        let names_name = 1 + name.len() as u32 + 1;
        section(&mut elf, names_name, 3, names_at, names.len() as u64); // SHT_STRTAB
        elf
    }
}
