//! Spike: byte offsets of kernel struct members from /sys/kernel/btf/vmlinux, no dependencies.
//! Walks the type section once, keeps (name, kind, size/type, members) per id, then resolves
//! "struct.member" paths, descending through anonymous struct/union members.
use std::collections::HashMap;

const KIND_INT: u32 = 1; const KIND_PTR: u32 = 2; const KIND_ARRAY: u32 = 3; const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5; const KIND_ENUM: u32 = 6; const KIND_FWD: u32 = 7; const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9; const KIND_CONST: u32 = 10; const KIND_RESTRICT: u32 = 11; const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13; const KIND_VAR: u32 = 14; const KIND_DATASEC: u32 = 15; const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17; const KIND_TYPE_TAG: u32 = 18; const KIND_ENUM64: u32 = 19;

struct Member { name: u32, ty: u32, bit_off: u32, bitfield: u32 }
struct Ty { name: u32, kind: u32, size_or_type: u32, members: Vec<Member> }

pub struct Btf { types: Vec<Ty>, strings: Vec<u8>, by_name: HashMap<(String, u32), u32> }

fn u32_at(b: &[u8], o: usize) -> Result<u32, String> {
    b.get(o..o + 4).map(|s| u32::from_le_bytes(s.try_into().unwrap())).ok_or_else(|| format!("truncated at {o}"))
}

impl Btf {
    pub fn len(&self) -> usize { self.types.len() - 1 }
    pub fn parse(data: &[u8]) -> Result<Btf, String> {
        if data.len() < 24 || u16::from_le_bytes([data[0], data[1]]) != 0xeb9f {
            return Err("not little-endian BTF".into());
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let (type_off, type_len) = (u32_at(data, 8)? as usize, u32_at(data, 12)? as usize);
        let (str_off, str_len) = (u32_at(data, 16)? as usize, u32_at(data, 20)? as usize);
        let tsec = data.get(hdr_len + type_off..hdr_len + type_off + type_len).ok_or("type section")?;
        let strings = data.get(hdr_len + str_off..hdr_len + str_off + str_len).ok_or("string section")?.to_vec();
        let mut types = vec![Ty { name: 0, kind: 0, size_or_type: 0, members: vec![] }]; // id 0 = void
        let mut o = 0;
        while o < tsec.len() {
            let (name, info, st) = (u32_at(tsec, o)?, u32_at(tsec, o + 4)?, u32_at(tsec, o + 8)?);
            let (kind, vlen, kflag) = ((info >> 24) & 0x1f, (info & 0xffff) as usize, info >> 31);
            o += 12;
            let mut members = vec![];
            o += match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION => {
                    for i in 0..vlen {
                        let m = o + 12 * i;
                        let raw = u32_at(tsec, m + 8)?;
                        let (bit_off, bitfield) = if kflag == 1 { (raw & 0xff_ffff, raw >> 24) } else { (raw, 0) };
                        members.push(Member { name: u32_at(tsec, m)?, ty: u32_at(tsec, m + 4)?, bit_off, bitfield });
                    }
                    12 * vlen
                }
                KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen,
                KIND_DATASEC | KIND_ENUM64 => 12 * vlen,
                KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_FUNC
                | KIND_FLOAT | KIND_TYPE_TAG => 0,
                k => return Err(format!("unknown BTF kind {k} at type {}", types.len())),
            };
            types.push(Ty { name, kind, size_or_type: st, members });
        }
        let mut btf = Btf { types, strings, by_name: HashMap::new() };
        for id in 1..btf.types.len() {
            let t = &btf.types[id];
            if (t.kind == KIND_STRUCT || t.kind == KIND_UNION) && t.name != 0 {
                let key = (btf.str(t.name).to_owned(), t.kind);
                btf.by_name.entry(key).or_insert(id as u32); // first definition wins (vmlinux has one)
            }
        }
        Ok(btf)
    }
    fn str(&self, off: u32) -> &str {
        let s = &self.strings[off as usize..];
        std::str::from_utf8(&s[..s.iter().position(|&c| c == 0).unwrap_or(s.len())]).unwrap_or("")
    }
    /// Skips typedef/const/volatile/restrict/type_tag to the underlying type id.
    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.types[id as usize].kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => id = self.types[id as usize].size_or_type,
                _ => break,
            }
        }
        id
    }
    /// Bit offset and byte size of `member` inside struct/union `id`, searching anonymous members.
    fn member(&self, id: u32, member: &str) -> Option<(u32, u32, u32)> {
        for m in &self.types[id as usize].members {
            let mt = self.resolve(m.ty);
            if m.name != 0 && self.str(m.name) == member {
                let t = &self.types[mt as usize];
                let size = match t.kind { KIND_PTR => 8, KIND_STRUCT | KIND_UNION | KIND_INT | KIND_ENUM | KIND_ENUM64 => t.size_or_type, _ => 0 };
                return Some((m.bit_off, size, m.bitfield));
            }
            if m.name == 0 && matches!(self.types[mt as usize].kind, KIND_STRUCT | KIND_UNION) {
                if let Some((off, size, bf)) = self.member(mt, member) {
                    return Some((m.bit_off + off, size, bf));
                }
            }
        }
        None
    }
    /// "struct.a.b" → byte offset from the start of `struct`.
    pub fn offset(&self, path: &str) -> Result<(u32, u32), String> {
        let mut parts = path.split('.');
        let root = parts.next().unwrap();
        let mut id = *self.by_name.get(&(root.to_owned(), KIND_STRUCT)).ok_or(format!("no struct {root}"))?;
        let (mut bits, mut size) = (0u32, 0u32);
        for p in parts {
            let (off, sz, bf) = self.member(id, p).ok_or(format!("{path}: no member {p}"))?;
            if bf != 0 || off % 8 != 0 { return Err(format!("{path}: bitfield")); }
            bits += off; size = sz;
            // descend for the next component
            let mt = self.types[id as usize].members.iter().find(|m| m.name != 0 && self.str(m.name) == p).map(|m| self.resolve(m.ty));
            if let Some(mt) = mt { id = mt; }
        }
        Ok((bits / 8, size))
    }
}

