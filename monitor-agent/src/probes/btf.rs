//! Byte offsets of kernel struct members, from the running kernel's BTF.
//!
//! The network probes read a few `struct sock` members; their offsets differ between kernel
//! versions and configurations, so they are looked up here at start-up and handed to the
//! probes as load-time constants. aya parses BTF but keeps member offsets private, and this
//! needs only the type section: a small reader suffices (about 20 ms for vmlinux).
use std::collections::HashMap;

pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

const MAGIC: u16 = 0xeb9f;
const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Debug)]
struct Member {
    name: u32,
    type_id: u32,
    bit_offset: u32,
    bitfield_size: u32,
}

#[derive(Debug)]
struct Type {
    name: u32,
    kind: u32,
    /// Byte size (ints, structs, unions, enums) or referenced type id (pointers, typedefs…).
    size_or_type: u32,
    members: Vec<Member>,
    /// Array element type and length.
    array: Option<(u32, u32)>,
}

/// A member's place: byte offset from the start of the root struct, and byte size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub offset: u32,
    pub size: u32,
}

pub struct Btf {
    types: Vec<Type>,
    strings: Vec<u8>,
    structs: HashMap<String, u32>,
}

fn u32_at(bytes: &[u8], at: usize) -> Result<u32, String> {
    bytes
        .get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| format!("BTF truncated at byte {at}"))
}

impl Btf {
    pub fn from_sys_fs() -> Result<Self, String> {
        let bytes = std::fs::read(VMLINUX).map_err(|err| format!("reading {VMLINUX}: {err}"))?;
        Self::parse(&bytes)
    }

    pub fn parse(data: &[u8]) -> Result<Self, String> {
        if data.len() < 24 || u16::from_le_bytes([data[0], data[1]]) != MAGIC {
            return Err("not little-endian BTF".into());
        }
        let header = u32_at(data, 4)? as usize;
        let section = |offset_at, len_at| -> Result<&[u8], String> {
            let start = header + u32_at(data, offset_at)? as usize;
            let end = start + u32_at(data, len_at)? as usize;
            data.get(start..end)
                .ok_or_else(|| "BTF section out of bounds".to_owned())
        };
        let type_section = section(8, 12)?;
        let strings = section(16, 20)?.to_vec();

        // Type id 0 is `void`.
        let mut types = vec![Type {
            name: 0,
            kind: 0,
            size_or_type: 0,
            members: Vec::new(),
            array: None,
        }];
        let mut at = 0;
        while at < type_section.len() {
            let name = u32_at(type_section, at)?;
            let info = u32_at(type_section, at + 4)?;
            let size_or_type = u32_at(type_section, at + 8)?;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let kind_flag = info >> 31;
            at += 12;
            let mut members = Vec::new();
            let mut array = None;
            at += match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => {
                    array = Some((u32_at(type_section, at)?, u32_at(type_section, at + 8)?));
                    12
                }
                KIND_STRUCT | KIND_UNION => {
                    for i in 0..vlen {
                        let member = at + 12 * i;
                        let raw = u32_at(type_section, member + 8)?;
                        // With kind_flag set, the top byte holds the bitfield size.
                        let (bit_offset, bitfield_size) = if kind_flag == 1 {
                            (raw & 0x00ff_ffff, raw >> 24)
                        } else {
                            (raw, 0)
                        };
                        members.push(Member {
                            name: u32_at(type_section, member)?,
                            type_id: u32_at(type_section, member + 4)?,
                            bit_offset,
                            bitfield_size,
                        });
                    }
                    12 * vlen
                }
                KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen,
                KIND_DATASEC | KIND_ENUM64 => 12 * vlen,
                KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
                | KIND_FUNC | KIND_FLOAT | KIND_TYPE_TAG => 0,
                other => return Err(format!("unknown BTF kind {other} (type {})", types.len())),
            };
            types.push(Type {
                name,
                kind,
                size_or_type,
                members,
                array,
            });
        }
        let mut btf = Btf {
            types,
            strings,
            structs: HashMap::new(),
        };
        for id in 1..btf.types.len() {
            let ty = &btf.types[id];
            if ty.kind == KIND_STRUCT && ty.name != 0 {
                let name = btf.string(ty.name).to_owned();
                btf.structs.entry(name).or_insert(id as u32);
            }
        }
        Ok(btf)
    }

    fn string(&self, offset: u32) -> &str {
        let rest = self.strings.get(offset as usize..).unwrap_or_default();
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or_default()
    }

    fn ty(&self, id: u32) -> Result<&Type, String> {
        self.types
            .get(id as usize)
            .ok_or_else(|| format!("BTF type id {id} out of range"))
    }

    /// Follows typedefs and qualifiers to the type they name.
    fn resolve(&self, mut id: u32) -> Result<u32, String> {
        for _ in 0..32 {
            let ty = self.ty(id)?;
            match ty.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = ty.size_or_type;
                }
                _ => return Ok(id),
            }
        }
        Err(format!("BTF type {id}: qualifier chain too long"))
    }

    fn size_of(&self, id: u32) -> Result<u32, String> {
        let id = self.resolve(id)?;
        let ty = self.ty(id)?;
        Ok(match ty.kind {
            KIND_PTR => 8,
            KIND_INT | KIND_ENUM | KIND_ENUM64 | KIND_STRUCT | KIND_UNION | KIND_FLOAT => {
                ty.size_or_type
            }
            KIND_ARRAY => {
                let (element, len) = ty.array.unwrap_or_default();
                self.size_of(element)? * len
            }
            _ => 0,
        })
    }

    /// Finds `name` in struct/union `id`, looking into anonymous members (where many `sock`
    /// fields live); returns its bit offset and resolved type.
    fn member(&self, id: u32, name: &str) -> Result<Option<(u32, u32)>, String> {
        for member in &self.ty(id)?.members {
            let member_type = self.resolve(member.type_id)?;
            if member.name != 0 && self.string(member.name) == name {
                if member.bitfield_size != 0 {
                    return Err(format!("{name} is a bitfield"));
                }
                return Ok(Some((member.bit_offset, member_type)));
            }
            let kind = self.ty(member_type)?.kind;
            if member.name == 0 && (kind == KIND_STRUCT || kind == KIND_UNION) {
                if let Some((inner, ty)) = self.member(member_type, name)? {
                    return Ok(Some((member.bit_offset + inner, ty)));
                }
            }
        }
        Ok(None)
    }

    /// `"struct.member.member"` → where it is, from the start of `struct`.
    pub fn field(&self, path: &str) -> Result<Field, String> {
        let mut parts = path.split('.');
        let root = parts.next().unwrap_or_default();
        let mut id = *self
            .structs
            .get(root)
            .ok_or_else(|| format!("kernel BTF has no struct {root}"))?;
        let mut bits = 0;
        let mut any = false;
        for part in parts {
            let (offset, member_type) = self
                .member(id, part)
                .map_err(|err| format!("{path}: {err}"))?
                .ok_or_else(|| format!("kernel BTF has no member {path}"))?;
            bits += offset;
            id = member_type;
            any = true;
        }
        if !any {
            return Err(format!("{path}: no member named"));
        }
        if bits % 8 != 0 {
            return Err(format!("{path} is not byte-aligned"));
        }
        Ok(Field {
            offset: bits / 8,
            size: self.size_of(id)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-built BTF blob: `struct inner { int a; int b; }` and
    /// `struct outer { long x; union { int y; struct inner in; }; }` (anonymous union).
    fn fixture() -> Vec<u8> {
        let strings = b"\0int\0long\0inner\0a\0b\0outer\0x\0y\0in\0".to_vec();
        let s = |name: &str| -> u32 {
            let needle = format!("\0{name}\0");
            strings
                .windows(needle.len())
                .position(|w| w == needle.as_bytes())
                .unwrap() as u32
                + 1
        };
        let mut types = Vec::new();
        let mut push = |words: &[u32]| {
            for word in words {
                types.extend_from_slice(&word.to_le_bytes());
            }
        };
        let info = |kind: u32, vlen: u32| (kind << 24) | vlen;
        push(&[s("int"), info(KIND_INT, 0), 4, 32]); // 1
        push(&[s("long"), info(KIND_INT, 0), 8, 64]); // 2
        push(&[s("inner"), info(KIND_STRUCT, 2), 8]); // 3
        push(&[s("a"), 1, 0, s("b"), 1, 32]);
        push(&[0, info(KIND_UNION, 2), 8]); // 4: anonymous union
        push(&[s("y"), 1, 0, s("in"), 3, 0]);
        push(&[s("outer"), info(KIND_STRUCT, 2), 16]); // 5
        push(&[s("x"), 2, 0, 0, 4, 64]);
        let mut blob = Vec::new();
        blob.extend_from_slice(&MAGIC.to_le_bytes());
        blob.extend_from_slice(&[1, 0]); // version, flags
        for word in [
            24u32,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            blob.extend_from_slice(&word.to_le_bytes());
        }
        blob.extend_from_slice(&types);
        blob.extend_from_slice(&strings);
        blob
    }

    #[test]
    fn members_through_anonymous_unions_and_nested_structs() {
        let btf = Btf::parse(&fixture()).unwrap();
        assert_eq!(btf.field("outer.x").unwrap(), Field { offset: 0, size: 8 });
        assert_eq!(btf.field("outer.y").unwrap(), Field { offset: 8, size: 4 });
        assert_eq!(
            btf.field("outer.in.b").unwrap(),
            Field {
                offset: 12,
                size: 4
            }
        );
        assert!(btf.field("outer.nope").unwrap_err().contains("no member"));
        assert!(btf.field("nope.x").unwrap_err().contains("no struct"));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(Btf::parse(b"not btf at all, not at all").is_err());
        let mut truncated = fixture();
        truncated.truncate(40);
        assert!(Btf::parse(&truncated).is_err());
    }

    /// The running kernel's BTF (world-readable, no root needed): every offset the probes
    /// need resolves, with the size the probes read.
    #[test]
    fn the_running_kernel_has_every_offset_the_probes_need() {
        let btf = Btf::from_sys_fs().unwrap();
        for (_, path, size) in monitor_common::global::KERNEL_OFFSETS {
            let field = btf.field(path).unwrap();
            assert_eq!(field.size, size, "{path}");
        }
    }
}
