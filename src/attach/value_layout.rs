//! Where a counter's or gauge's value lies in a map value: the whole 8-byte
//! value, or one member of a struct value, checked against the map's BTF (the
//! type information clang records with `-g`): a named member must exist, an
//! offset must be where a member of that size starts, and its signedness comes
//! from its type.

use crate::config::ValueField;
use libbpf_rs::AsRawLibbpf;
use std::ffi::CStr;

/// How one metric reads its value from a map value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValueLayout {
    /// Byte offset in the value.
    pub offset: usize,
    /// 1, 2, 4 or 8 bytes.
    pub size: usize,
    /// Whether the integer is signed (sign-extended before summing CPUs).
    pub signed: bool,
    /// Exported value = raw value x multiplier.
    pub multiplier: f64,
}

impl ValueLayout {
    /// The whole value, an unsigned 8-byte integer (every counter before
    /// struct values existed).
    pub const WHOLE_U64: ValueLayout = ValueLayout {
        offset: 0,
        size: 8,
        signed: false,
        multiplier: 1.0,
    };

    /// Whether the value is exported as the exact unsigned integer it is.
    pub fn is_plain_u64(&self) -> bool {
        !self.signed && self.multiplier == 1.0
    }

    /// The exported value of a raw (sign-extended when signed) integer.
    pub fn scale(&self, raw: u64) -> f64 {
        let value = if self.signed {
            raw as i64 as f64
        } else {
            raw as f64
        };
        value * self.multiplier
    }
}

/// One integer member of a value struct.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Member name.
    pub name: String,
    /// Byte offset.
    pub offset: usize,
    /// Size in bytes (0 for a member that is not a whole integer: a bit
    /// field, an array, a nested struct).
    pub size: usize,
    /// Whether its integer type is signed.
    pub signed: bool,
}

/// What the BTF says a map's value is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueType {
    /// A plain integer (`__u64`, `__s64`, an enum).
    Integer {
        /// Whether it is signed.
        signed: bool,
    },
    /// A struct with these members.
    Struct(Vec<Member>),
    /// Something else, or no BTF for the map.
    Unknown,
}

/// The BTF of map `map`'s value in `object`, if the object has BTF for it.
pub fn value_type(object: &libbpf_rs::OpenObject, map: &str) -> ValueType {
    let Some(map) = object.maps().find(|m| m.name().to_string_lossy() == map) else {
        return ValueType::Unknown;
    };
    // SAFETY: the object and map pointers come from live libbpf-rs wrappers;
    // libbpf returns a BTF owned by the object (or null), and every type
    // pointer it hands out is checked for null and read within its bounds
    // (members follow their struct, `vlen` of them).
    unsafe {
        let btf = libbpf_sys::bpf_object__btf(object.as_libbpf_object().as_ptr());
        if btf.is_null() {
            return ValueType::Unknown;
        }
        let id = libbpf_sys::bpf_map__btf_value_type_id(map.as_libbpf_object().as_ptr());
        if id == 0 {
            return ValueType::Unknown;
        }
        let resolved = libbpf_sys::btf__resolve_type(btf, id);
        if resolved < 0 {
            return ValueType::Unknown;
        }
        let ty = libbpf_sys::btf__type_by_id(btf, resolved as u32);
        if ty.is_null() {
            return ValueType::Unknown;
        }
        match kind_of(&*ty) {
            libbpf_sys::BTF_KIND_INT | libbpf_sys::BTF_KIND_ENUM | libbpf_sys::BTF_KIND_ENUM64 => {
                ValueType::Integer {
                    signed: integer_signed(btf, resolved as u32).unwrap_or(false),
                }
            }
            libbpf_sys::BTF_KIND_STRUCT => {
                let vlen = ((*ty).info & 0xffff) as usize;
                let bitfields = (*ty).info >> 31 == 1;
                let first = ty.add(1).cast::<libbpf_sys::btf_member>();
                let members = (0..vlen)
                    .map(|i| {
                        let member = &*first.add(i);
                        let name_ptr = libbpf_sys::btf__name_by_offset(btf, member.name_off);
                        let name = if name_ptr.is_null() {
                            String::new()
                        } else {
                            CStr::from_ptr(name_ptr).to_string_lossy().into_owned()
                        };
                        // With kflag, the low 24 bits are the offset and the
                        // high 8 the bit field's size.
                        let (bit_offset, bit_size) = if bitfields {
                            (member.offset & 0xff_ffff, member.offset >> 24)
                        } else {
                            (member.offset, 0)
                        };
                        let signed = integer_signed(btf, member.type_);
                        let size = match signed {
                            Some(_) if bit_size == 0 && bit_offset % 8 == 0 => {
                                libbpf_sys::btf__resolve_size(btf, member.type_).max(0) as usize
                            }
                            _ => 0,
                        };
                        Member {
                            name,
                            offset: (bit_offset / 8) as usize,
                            size,
                            signed: signed.unwrap_or(false),
                        }
                    })
                    .collect();
                ValueType::Struct(members)
            }
            _ => ValueType::Unknown,
        }
    }
}

fn kind_of(ty: &libbpf_sys::btf_type) -> u32 {
    (ty.info >> 24) & 0x1f
}

/// `Some(signed)` when type `id` (through typedefs and modifiers) is an
/// integer or an enum; `None` otherwise.
///
/// # Safety
///
/// `btf` must be a valid BTF object.
unsafe fn integer_signed(btf: *const libbpf_sys::btf, id: u32) -> Option<bool> {
    let resolved = libbpf_sys::btf__resolve_type(btf, id);
    if resolved < 0 {
        return None;
    }
    let ty = libbpf_sys::btf__type_by_id(btf, resolved as u32);
    if ty.is_null() {
        return None;
    }
    match kind_of(&*ty) {
        libbpf_sys::BTF_KIND_INT => {
            // The int's encoding word follows the type.
            let encoding = *ty.add(1).cast::<u32>();
            Some((encoding >> 24) & libbpf_sys::BTF_INT_SIGNED != 0)
        }
        libbpf_sys::BTF_KIND_ENUM | libbpf_sys::BTF_KIND_ENUM64 => Some((*ty).info >> 31 == 1),
        _ => None,
    }
}

/// The layout of a metric's value: from its `value:` config, the map's value
/// size and the map's BTF. `gauge` picks the default signedness without BTF.
/// Errors say what the value is and how to fix the config.
pub fn resolve(
    config: Option<&ValueField>,
    gauge: bool,
    value_size: usize,
    btf: &ValueType,
) -> Result<ValueLayout, String> {
    let multiplier = config.and_then(|c| c.multiplier).unwrap_or(1.0);
    let members = match btf {
        ValueType::Struct(members) => Some(members.as_slice()),
        _ => None,
    };
    let list = || {
        members
            .unwrap_or_default()
            .iter()
            .map(|m| match m.size {
                0 => format!("{} (offset {}, not an integer)", m.name, m.offset),
                size => format!("{} (offset {}, {size} bytes)", m.name, m.offset),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(config) = config else {
        if value_size != 8 {
            let hint = if members.is_some() {
                format!("; pick a member with `value: {{field: NAME}}`: {}", list())
            } else {
                "; give `value: {offset: N, size: S}`".to_string()
            };
            return Err(format!(
                "has {value_size}-byte values, not one 8-byte integer{hint}"
            ));
        }
        let signed = match btf {
            ValueType::Integer { signed } => *signed,
            _ => gauge,
        };
        return Ok(ValueLayout {
            signed,
            multiplier,
            ..ValueLayout::WHOLE_U64
        });
    };
    let member = match (&config.field, members) {
        (Some(field), Some(members)) => {
            let Some(member) = members.iter().find(|m| &m.name == field) else {
                return Err(format!(
                    "has no value member {field:?}; its members: {}",
                    list()
                ));
            };
            if member.size == 0 {
                return Err(format!(
                    "value member {field:?} is not a whole integer (a bit field, array or struct); metrics read integers of 1, 2, 4 or 8 bytes"
                ));
            }
            Some(member)
        }
        (Some(field), None) => {
            return Err(format!(
                "value member {field:?} cannot be found: the object has no BTF struct for this map's value (build it with clang -g, or give `offset` and `size`)"
            ))
        }
        (None, Some(members)) => {
            let offset = config.offset.unwrap_or(0);
            let size = config.size.unwrap_or(8);
            let Some(member) = members
                .iter()
                .find(|m| m.offset == offset && m.size == size)
            else {
                return Err(format!(
                    "has no {size}-byte integer member at offset {offset} of its value; its members: {}",
                    list()
                ));
            };
            Some(member)
        }
        (None, None) => None,
    };
    let offset = member.map_or(config.offset.unwrap_or(0), |m| m.offset);
    let size = member.map_or(config.size.unwrap_or(8), |m| m.size);
    if let Some(m) = member {
        for (key, given, actual) in [
            ("offset", config.offset, m.offset),
            ("size", config.size, m.size),
        ] {
            if given.is_some_and(|g| g != actual) {
                return Err(format!(
                    "value member {:?} has {key} {actual}, but the config says {}",
                    m.name,
                    given.unwrap_or_default()
                ));
            }
        }
    }
    if offset + size > value_size {
        return Err(format!(
            "value bytes {offset}..{} lie past its {value_size}-byte values",
            offset + size
        ));
    }
    let signed = config.signed.or(member.map(|m| m.signed)).unwrap_or(gauge);
    Ok(ValueLayout {
        offset,
        size,
        signed,
        multiplier,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members() -> ValueType {
        ValueType::Struct(vec![
            Member {
                name: "calls".into(),
                offset: 0,
                size: 8,
                signed: false,
            },
            Member {
                name: "total_ns".into(),
                offset: 8,
                size: 8,
                signed: false,
            },
            Member {
                name: "inflight".into(),
                offset: 16,
                size: 4,
                signed: true,
            },
            Member {
                name: "flags".into(),
                offset: 20,
                size: 0,
                signed: false,
            },
        ])
    }

    fn field(name: &str) -> ValueField {
        ValueField {
            field: Some(name.into()),
            ..ValueField::default()
        }
    }

    #[test]
    fn members_by_name_or_offset() {
        let v = resolve(Some(&field("total_ns")), false, 24, &members()).unwrap();
        assert_eq!((v.offset, v.size, v.signed), (8, 8, false));
        let v = resolve(Some(&field("inflight")), false, 24, &members()).unwrap();
        assert_eq!((v.offset, v.size, v.signed), (16, 4, true));
        let by_offset = ValueField {
            offset: Some(16),
            size: Some(4),
            ..ValueField::default()
        };
        assert_eq!(
            resolve(Some(&by_offset), false, 24, &members())
                .unwrap()
                .offset,
            16
        );
        let scaled = ValueField {
            multiplier: Some(1e-9),
            ..field("total_ns")
        };
        let v = resolve(Some(&scaled), false, 24, &members()).unwrap();
        assert_eq!(v.scale(2_500_000_000), 2.5);
        assert!(!v.is_plain_u64());
    }

    #[test]
    fn mismatches_name_the_members() {
        let e = resolve(Some(&field("max_ns")), false, 24, &members()).unwrap_err();
        assert_eq!(
            e,
            "has no value member \"max_ns\"; its members: calls (offset 0, 8 bytes), total_ns (offset 8, 8 bytes), inflight (offset 16, 4 bytes), flags (offset 20, not an integer)"
        );
        assert!(resolve(Some(&field("flags")), false, 24, &members())
            .unwrap_err()
            .contains("not a whole integer"));
        let wrong = ValueField {
            offset: Some(4),
            size: Some(8),
            ..ValueField::default()
        };
        assert!(resolve(Some(&wrong), false, 24, &members())
            .unwrap_err()
            .starts_with("has no 8-byte integer member at offset 4"));
        let disagree = ValueField {
            size: Some(8),
            ..field("inflight")
        };
        assert_eq!(
            resolve(Some(&disagree), false, 24, &members()).unwrap_err(),
            "value member \"inflight\" has size 4, but the config says 8"
        );
        assert!(resolve(None, false, 24, &members())
            .unwrap_err()
            .contains("pick a member with `value: {field: NAME}`"));
        assert!(
            resolve(Some(&field("calls")), false, 8, &ValueType::Unknown)
                .unwrap_err()
                .contains("no BTF struct")
        );
    }

    #[test]
    fn without_btf_offsets_are_trusted_within_the_value() {
        let v = ValueField {
            offset: Some(8),
            size: Some(4),
            ..ValueField::default()
        };
        let got = resolve(Some(&v), true, 16, &ValueType::Unknown).unwrap();
        assert_eq!((got.offset, got.size, got.signed), (8, 4, true));
        let past = ValueField {
            offset: Some(12),
            size: Some(8),
            ..ValueField::default()
        };
        assert_eq!(
            resolve(Some(&past), false, 16, &ValueType::Unknown).unwrap_err(),
            "value bytes 12..20 lie past its 16-byte values"
        );
        assert_eq!(
            resolve(None, false, 8, &ValueType::Unknown).unwrap(),
            ValueLayout::WHOLE_U64
        );
        assert!(resolve(None, true, 8, &ValueType::Unknown).unwrap().signed);
        assert!(
            !resolve(None, true, 8, &ValueType::Integer { signed: false })
                .unwrap()
                .signed
        );
    }
}
