//! Which metric tables a uretprobe's BPF function may fill when it runs for
//! a process it was not attached to (kernels before 6.13 run it there:
//! [`super::Feature::UretprobePidFilter`]).
//!
//! Such a run is harmless where the function first looks up state that the
//! function's entry probe saved (a start time keyed by thread): that entry
//! probe is filtered by process, so in another process the lookup finds
//! nothing and a function written the usual way returns. So a table counts
//! other processes' returns when some path from the function's start
//! reaches a reference to it without passing a successful lookup in a
//! state map (a map the entry probe's function uses that is no metric's
//! table). The paths are read from the object's instructions: the jumps,
//! the null check of the lookup's result (also through a copy of it), and
//! calls of BPF subprograms, whose tables count as reached wherever the call
//! is (a lookup inside a subprogram is not taken as a guard). Registers
//! spilled to the stack are not followed: such a program is reported as
//! unguarded, which errs toward a warning.
//!
//! [`ObjectCode::parse`] reads an ELF object's functions and their map
//! references; the rest is pure and tested on hand-written instructions.

use std::collections::{BTreeMap, BTreeSet, HashSet};

/// One BPF instruction, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Opcode.
    pub code: u8,
    /// Destination register.
    pub dst: u8,
    /// Source register.
    pub src: u8,
    /// Offset (jumps, memory).
    pub off: i16,
    /// Immediate.
    pub imm: i32,
}

/// The code of one BPF function (a program or a subprogram).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routine {
    /// Its instructions (a 64-bit load takes two slots).
    pub insns: Vec<Insn>,
    /// The map each 64-bit load of a map address loads, by instruction index.
    pub maps: BTreeMap<usize, String>,
    /// The routine each call of a BPF subprogram (or each load of a callback's
    /// address) enters, by instruction index: an index into [`ObjectCode::routines`].
    pub calls: BTreeMap<usize, usize>,
}

/// An object's BPF functions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectCode {
    /// Every function, programs and subprograms.
    pub routines: Vec<Routine>,
    /// The programs' routines by function name.
    pub by_name: BTreeMap<String, usize>,
}

/// The helper a lookup calls (`bpf_map_lookup_elem`).
const MAP_LOOKUP_ELEM: i32 = 1;
/// Registers a call clobbers: r0 to r5.
const CALLER_SAVED: u16 = 0b11_1111;
/// Steps after which the walk gives up (its states are few in real code).
const MAX_STEPS: usize = 200_000;

impl ObjectCode {
    /// The maps `function` and the subprograms it calls reference; `None`
    /// for a function the object does not have.
    pub fn referenced_maps(&self, function: &str) -> Option<BTreeSet<String>> {
        let start = *self.by_name.get(function)?;
        Some(self.maps_from(start))
    }

    /// The maps routine `start` and the routines it calls reference.
    fn maps_from(&self, start: usize) -> BTreeSet<String> {
        let mut maps = BTreeSet::new();
        let mut seen = HashSet::new();
        let mut todo = vec![start];
        while let Some(r) = todo.pop() {
            if !seen.insert(r) {
                continue;
            }
            if let Some(routine) = self.routines.get(r) {
                maps.extend(routine.maps.values().cloned());
                todo.extend(routine.calls.values().copied());
            }
        }
        maps
    }

    /// The `tables` that `function` may reference on a path that did not
    /// pass a successful lookup in one of the `state` maps; `None` for a
    /// function the object does not have (the caller then assumes all of
    /// them).
    pub fn unguarded_tables(
        &self,
        function: &str,
        state: &BTreeSet<String>,
        tables: &BTreeSet<String>,
    ) -> Option<BTreeSet<String>> {
        let start = *self.by_name.get(function)?;
        let routine = &self.routines[start];
        let mut found = BTreeSet::new();
        let flag = |found: &mut BTreeSet<String>, name: &String| {
            if tables.contains(name) {
                found.insert(name.clone());
            }
        };
        // (pc, guarded, registers holding a state lookup's result, registers
        // holding a state map's address)
        let mut seen: HashSet<(usize, bool, u16, u16)> = HashSet::new();
        let mut todo = vec![(0usize, false, 0u16, 0u16)];
        let mut steps = 0;
        while let Some(state_now) = todo.pop() {
            if !seen.insert(state_now) {
                continue;
            }
            steps += 1;
            if steps > MAX_STEPS {
                return Some(
                    tables
                        .intersection(&self.maps_from(start))
                        .cloned()
                        .collect(),
                );
            }
            let (pc, guarded, mut results, mut map_regs) = state_now;
            let Some(insn) = routine.insns.get(pc) else {
                continue;
            };
            let dst = 1u16 << (insn.dst & 0xf);
            let class = insn.code & 0x07;
            let mut next = vec![];
            match class {
                // 64-bit immediate load (two slots); other BPF_LD forms
                // (legacy packet loads) write r0.
                0x00 if insn.code == 0x18 => {
                    results &= !dst;
                    map_regs &= !dst;
                    if let Some(map) = routine.maps.get(&pc) {
                        if !guarded {
                            flag(&mut found, map);
                        }
                        if state.contains(map) {
                            map_regs |= dst;
                        }
                    }
                    if let Some(&callee) = routine.calls.get(&pc) {
                        // A callback's address (bpf_loop and the like): it
                        // may run here.
                        if !guarded {
                            for map in self.maps_from(callee) {
                                flag(&mut found, &map);
                            }
                        }
                    }
                    next.push((pc + 2, guarded, results, map_regs));
                }
                0x00 => {
                    results &= !1;
                    map_regs &= !1;
                    next.push((pc + 1, guarded, results, map_regs));
                }
                // Loads into a register.
                0x01 => {
                    results &= !dst;
                    map_regs &= !dst;
                    next.push((pc + 1, guarded, results, map_regs));
                }
                // Stores; atomics with BPF_FETCH write their source register,
                // a compare-and-exchange r0.
                0x02 | 0x03 => {
                    if class == 0x03 && insn.code & 0xe0 == 0xc0 {
                        let src = 1u16 << (insn.src & 0xf);
                        if insn.imm & 0x01 != 0 {
                            results &= !src;
                            map_regs &= !src;
                        }
                        if insn.imm == 0xf1 {
                            results &= !1;
                            map_regs &= !1;
                        }
                    }
                    next.push((pc + 1, guarded, results, map_regs));
                }
                0x04 | 0x07 => {
                    // A 64-bit register move copies what the source holds;
                    // anything else overwrites the destination.
                    if insn.code == 0xbf && insn.off == 0 {
                        let src = 1u16 << (insn.src & 0xf);
                        results = (results & !dst) | if results & src != 0 { dst } else { 0 };
                        map_regs = (map_regs & !dst) | if map_regs & src != 0 { dst } else { 0 };
                    } else {
                        results &= !dst;
                        map_regs &= !dst;
                    }
                    next.push((pc + 1, guarded, results, map_regs));
                }
                0x05 | 0x06 => {
                    let op = insn.code & 0xf0;
                    let target = |off: i64| (pc as i64 + off + 1).max(0) as usize;
                    match op {
                        0x00 => {
                            // ja (the 32-bit class's gotol takes imm).
                            let off = if class == 0x06 {
                                insn.imm as i64
                            } else {
                                insn.off as i64
                            };
                            next.push((target(off), guarded, results, map_regs));
                        }
                        0x80 => {
                            let lookup = insn.src == 0
                                && insn.imm == MAP_LOOKUP_ELEM
                                && map_regs & 0b10 != 0;
                            if insn.src == 1 {
                                if let (false, Some(&callee)) = (guarded, routine.calls.get(&pc)) {
                                    for map in self.maps_from(callee) {
                                        flag(&mut found, &map);
                                    }
                                }
                            }
                            results &= !CALLER_SAVED;
                            map_regs &= !CALLER_SAVED;
                            if lookup {
                                results |= 1;
                            }
                            next.push((pc + 1, guarded, results, map_regs));
                        }
                        0x90 => {}
                        _ => {
                            let taken = target(insn.off as i64);
                            // `if rX == 0` / `if rX != 0` / `if rX > 0` on
                            // a lookup's result: the non-null edge is
                            // guarded from there on.
                            let on_result = class == 0x05
                                && insn.code & 0x08 == 0
                                && insn.imm == 0
                                && results & dst != 0;
                            let (taken_guarded, through_guarded) = match op {
                                0x10 if on_result => (guarded, true),
                                0x50 | 0x20 if on_result => (true, guarded),
                                _ => (guarded, guarded),
                            };
                            next.push((taken, taken_guarded, results, map_regs));
                            next.push((pc + 1, through_guarded, results, map_regs));
                        }
                    }
                }
                _ => next.push((pc + 1, guarded, results, map_regs)),
            }
            todo.extend(next);
        }
        Some(found)
    }

    /// Reads the BPF functions of an ELF object (little-endian BPF): each
    /// function symbol in an executable section, with the maps its 64-bit
    /// loads reference (BTF-defined `.maps` and legacy `maps` sections; not
    /// `.bss`, `.data`, `.rodata` or `.kconfig`, which are the object's
    /// global variables) and the subprograms its calls enter. `None` if the
    /// file is no such object.
    pub fn parse(elf: &[u8]) -> Option<ObjectCode> {
        use object::{
            Object, ObjectSection, ObjectSymbol, RelocationTarget, SectionKind, SymbolKind,
        };
        let file = object::File::parse(elf).ok()?;
        if file.architecture() != object::Architecture::Bpf || !file.is_little_endian() {
            return None;
        }
        // (section index, start offset, size, name) of every function.
        let mut functions: Vec<(object::SectionIndex, u64, u64, String)> = file
            .symbols()
            .filter(|s| s.kind() == SymbolKind::Text && s.size() > 0)
            .filter_map(|s| {
                let section = s.section_index()?;
                let kind = file.section_by_index(section).ok()?.kind();
                let name = s.name().ok()?.to_string();
                (kind == SectionKind::Text).then_some((section, s.address(), s.size(), name))
            })
            .collect();
        functions.sort_by_key(|f| (f.0 .0, f.1));
        functions.dedup_by_key(|f| (f.0, f.1));
        let routine_at = |section: object::SectionIndex, offset: u64| {
            functions
                .iter()
                .position(|f| f.0 == section && f.1 <= offset && offset < f.1 + f.2)
        };
        let mut code = ObjectCode::default();
        for (section, start, size, name) in &functions {
            let data = file.section_by_index(*section).ok()?.data().ok()?;
            let bytes = data.get(*start as usize..(*start + *size) as usize)?;
            let insns: Vec<Insn> = bytes
                .chunks_exact(8)
                .map(|b| Insn {
                    code: b[0],
                    dst: b[1] & 0x0f,
                    src: b[1] >> 4,
                    off: i16::from_le_bytes([b[2], b[3]]),
                    imm: i32::from_le_bytes([b[4], b[5], b[6], b[7]]),
                })
                .collect();
            let mut routine = Routine {
                insns,
                ..Default::default()
            };
            // Calls within the section need no relocation.
            for (i, insn) in routine.insns.iter().enumerate() {
                if insn.code == 0x85 && insn.src == 1 {
                    let target = *start as i64 + (i as i64 + insn.imm as i64 + 1) * 8;
                    if let Some(callee) = routine_at(*section, target.max(0) as u64) {
                        routine.calls.insert(i, callee);
                    }
                }
            }
            code.by_name.insert(name.clone(), code.routines.len());
            code.routines.push(routine);
        }
        // Map references and calls into other sections, from relocations.
        for (index, (section, start, size, _)) in functions.iter().enumerate() {
            let sec = file.section_by_index(*section).ok()?;
            for (offset, relocation) in sec.relocations() {
                if offset < *start || offset >= start + size {
                    continue;
                }
                let RelocationTarget::Symbol(symbol) = relocation.target() else {
                    continue;
                };
                let Ok(symbol) = file.symbol_by_index(symbol) else {
                    continue;
                };
                let Some(target_section) = symbol
                    .section_index()
                    .and_then(|i| file.section_by_index(i).ok())
                else {
                    continue;
                };
                let at = ((offset - start) / 8) as usize;
                let routine = &mut code.routines[index];
                let Some(insn) = routine.insns.get(at).copied() else {
                    continue;
                };
                let section_name = target_section.name().unwrap_or("");
                if section_name == ".maps" || section_name == "maps" {
                    if let Ok(name) = symbol.name() {
                        routine.maps.insert(at, name.to_string());
                    }
                } else if target_section.kind() == SectionKind::Text {
                    // A call (or a callback's address): the callee starts
                    // (imm + 1) instructions past the symbol.
                    let target = symbol.address() as i64 + (insn.imm as i64 + 1) * 8;
                    match routine_at(target_section.index(), target.max(0) as u64) {
                        Some(callee) => routine.calls.insert(at, callee),
                        // Not where the first pass, reading imm as relative
                        // to the call, put it.
                        None => routine.calls.remove(&at),
                    };
                }
            }
        }
        Some(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            dst,
            src,
            off,
            imm,
        }
    }
    fn ld_map(dst: u8) -> [Insn; 2] {
        [insn(0x18, dst, 1, 0, 0), insn(0, 0, 0, 0, 0)]
    }
    fn call(helper: i32) -> Insn {
        insn(0x85, 0, 0, 0, helper)
    }
    fn exit() -> [Insn; 2] {
        [insn(0xb7, 0, 0, 0, 0), insn(0x95, 0, 0, 0, 0)]
    }

    /// An object with one program `ret` made of `insns`, whose 64-bit loads
    /// at the given indices load the named maps.
    fn object(insns: Vec<Insn>, maps: &[(usize, &str)]) -> ObjectCode {
        let routine = Routine {
            insns,
            maps: maps.iter().map(|(i, m)| (*i, m.to_string())).collect(),
            calls: BTreeMap::new(),
        };
        ObjectCode {
            routines: vec![routine],
            by_name: [("ret".to_string(), 0)].into(),
        }
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_return_probe_without_entry_state_fills_its_tables_for_any_process() {
        // r1 = &returns; call update; exit
        let mut code = ld_map(1).to_vec();
        code.push(call(2));
        code.extend(exit());
        let obj = object(code, &[(0, "returns")]);
        assert_eq!(
            obj.unguarded_tables("ret", &set(&[]), &set(&["returns"])),
            Some(set(&["returns"]))
        );
        assert_eq!(obj.referenced_maps("ret"), Some(set(&["returns"])));
        assert_eq!(obj.unguarded_tables("other", &set(&[]), &set(&[])), None);
    }

    /// The latency pattern: t0 = lookup(&start, &tid); if (!t0) return 0;
    /// observe(&latency, now - *t0).
    fn latency(check: Insn) -> Vec<Insn> {
        let mut code = ld_map(1).to_vec(); // 0-1: r1 = &start
        code.push(call(MAP_LOOKUP_ELEM)); // 2
        code.push(insn(0xbf, 7, 0, 0, 0)); // 3: r7 = r0
        code.push(check); // 4: if r7 ... goto exit (+4 or through)
        code.extend(ld_map(1)); // 5-6: r1 = &latency
        code.push(call(2)); // 7
        code.push(insn(0x05, 0, 0, 0, 0)); // 8: ja +0
        code.extend(exit()); // 9-10
        code
    }

    #[test]
    fn a_lookup_of_entry_state_checked_for_null_guards_what_follows() {
        let maps = [(0, "start"), (5, "latency")];
        let tables = set(&["latency"]);
        let state = set(&["start"]);
        // if r7 == 0 goto exit
        let obj = object(latency(insn(0x15, 7, 0, 4, 0)), &maps);
        assert_eq!(obj.unguarded_tables("ret", &state, &tables), Some(set(&[])));
        // The same code with the map not known as entry state.
        assert_eq!(
            obj.unguarded_tables("ret", &set(&[]), &tables),
            Some(set(&["latency"]))
        );
        // if r7 != 0 goto +0 (through and taken both reach the update): the
        // taken edge is guarded, the other not.
        let obj = object(latency(insn(0x55, 7, 0, 0, 0)), &maps);
        assert_eq!(
            obj.unguarded_tables("ret", &state, &tables),
            Some(set(&["latency"]))
        );
        // A check of another register guards nothing.
        let obj = object(latency(insn(0x15, 6, 0, 4, 0)), &maps);
        assert_eq!(
            obj.unguarded_tables("ret", &state, &tables),
            Some(set(&["latency"]))
        );
    }

    #[test]
    fn a_count_made_before_the_lookup_is_unguarded() {
        // The libc_getaddrinfo example: calls by result, then latency.
        let mut code = ld_map(1).to_vec(); // 0-1: r1 = &calls
        code.push(call(2)); // 2
        code.extend(latency(insn(0x15, 7, 0, 4, 0))); // 3..
        let obj = object(code, &[(0, "calls"), (3, "start"), (8, "latency")]);
        assert_eq!(
            obj.unguarded_tables("ret", &set(&["start"]), &set(&["calls", "latency"])),
            Some(set(&["calls"]))
        );
    }

    #[test]
    fn subprograms_count_where_they_are_called() {
        // ret: call sub; lookup; if null exit; call sub2 ... sub fills
        // `early`, sub2 fills `late`.
        let mut ret = vec![insn(0x85, 0, 1, 0, 0)]; // 0: call sub
        ret.extend(ld_map(1)); // 1-2: r1 = &start
        ret.push(call(MAP_LOOKUP_ELEM)); // 3
        ret.push(insn(0x15, 0, 0, 2, 0)); // 4: if r0 == 0 goto 7
        ret.push(insn(0x85, 0, 1, 0, 0)); // 5: call sub2
        ret.push(insn(0x05, 0, 0, 0, 0)); // 6
        ret.extend(exit()); // 7-8
        let sub = |map: &str| Routine {
            insns: [ld_map(1).to_vec(), exit().to_vec()].concat(),
            maps: [(0, map.to_string())].into(),
            calls: BTreeMap::new(),
        };
        let obj = ObjectCode {
            routines: vec![
                Routine {
                    insns: ret,
                    maps: [(1, "start".to_string())].into(),
                    calls: [(0, 1), (5, 2)].into(),
                },
                sub("early"),
                sub("late"),
            ],
            by_name: [("ret".to_string(), 0)].into(),
        };
        assert_eq!(
            obj.unguarded_tables("ret", &set(&["start"]), &set(&["early", "late"])),
            Some(set(&["early"]))
        );
        assert_eq!(
            obj.referenced_maps("ret"),
            Some(set(&["early", "late", "start"]))
        );
    }

    #[test]
    fn a_loop_ends_and_an_overwritten_result_guards_nothing() {
        // 0-1: r1 = &start; 2: lookup; 3: r0 = 1 (overwritten);
        // 4: if r0 == 0 goto 0 (a loop back); 5-6: r1 = &t; 7-8: exit
        let mut code = ld_map(1).to_vec();
        code.push(call(MAP_LOOKUP_ELEM));
        code.push(insn(0xb7, 0, 0, 0, 1));
        code.push(insn(0x15, 0, 0, -5, 0));
        code.extend(ld_map(1));
        code.extend(exit());
        let obj = object(code, &[(0, "start"), (5, "t")]);
        assert_eq!(
            obj.unguarded_tables("ret", &set(&["start"]), &set(&["t"])),
            Some(set(&["t"]))
        );
    }

    #[test]
    fn what_is_not_a_bpf_object_is_not_read() {
        assert_eq!(ObjectCode::parse(b"not an ELF file"), None);
    }
}
