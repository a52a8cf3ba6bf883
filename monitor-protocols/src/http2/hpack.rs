//! HPACK (RFC 7541): the header blocks of HTTP/2 HEADERS frames, decoded.
//!
//! Each direction of a connection has its own compression context, a dynamic table that every
//! header block of that direction updates: a block can only be read if all earlier ones were,
//! in order. One [`Decoder`] follows one direction. After an error its table is lost (the
//! peer's encoder and the decoder no longer agree on it) and the decoder should be dropped.
//!
//! # Privacy
//!
//! Header values carry cookies, tokens and personal data. The caller names the fields it
//! reads with a `keep` function of the name; other fields are decoded only as far as the
//! table needs: their values are never copied anywhere (a Huffman-coded one is only counted),
//! and their table entries hold their sizes, not their bytes. Nothing of them outlives the
//! [`Decoder::decode`] call that read them.
//!
//! # Memory
//!
//! The table's RFC size is at most [`MAX_TABLE_SIZE`], so it holds at most that many bytes
//! of names and values ([`Decoder::held_bytes`]). Strings are at most 64 KiB on the wire.
use std::collections::VecDeque;

use super::huffman;

/// Largest dynamic table accepted. A table size update above this is
/// [`HpackError::TableSizeTooLarge`]: SETTINGS_HEADER_TABLE_SIZE is not seen here, so this
/// bounds what a peer can make the decoder hold.
pub const MAX_TABLE_SIZE: usize = 65_536;

/// The table size both sides start with (SETTINGS_HEADER_TABLE_SIZE's initial value).
const DEFAULT_TABLE_SIZE: usize = 4096;
/// Longest string literal, as sent (a Huffman-coded one decodes to at most 8/5 of it).
const MAX_STRING_LEN: usize = 65_536;
/// What each table entry adds to its name and value in the table's size (§4.1).
const ENTRY_OVERHEAD: usize = 32;
/// Scratch capacity kept between blocks: a buffer grown past it for a long string is freed.
const KEPT_SCRATCH: usize = 1024;

/// Why a header block could not be decoded: the connection's table is lost from then on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HpackError {
    /// The block ends inside a field.
    Truncated,
    /// Index 0, or past the end of the static and dynamic tables.
    BadIndex,
    /// A Huffman-coded string that does not decode (§5.2): EOS, or bad padding.
    BadHuffman,
    /// An integer above `u32::MAX`, or with more than 5 continuation bytes.
    IntegerOverflow,
    /// A dynamic table size update above [`MAX_TABLE_SIZE`].
    TableSizeTooLarge,
    /// A string literal longer than 64 KiB as sent.
    StringTooLong,
}

/// Decodes the header blocks of one direction of one connection.
pub struct Decoder {
    keep: fn(&[u8]) -> bool,
    table: Table,
    /// A Huffman-coded name, decoded. It may be one `keep` rejects: zeroed after use.
    name: Vec<u8>,
    /// A kept field's Huffman-coded value, decoded.
    value: Vec<u8>,
}

impl Decoder {
    /// `keep(name)` says which fields' values the caller reads.
    pub fn new(keep: fn(&[u8]) -> bool) -> Self {
        Self::with_max_size(keep, DEFAULT_TABLE_SIZE)
    }

    /// A decoder whose table starts at `max_size` (at most [`MAX_TABLE_SIZE`]) rather than
    /// 4096, for a connection whose decoder side announced SETTINGS_HEADER_TABLE_SIZE.
    pub(crate) fn with_max_size(keep: fn(&[u8]) -> bool, max_size: usize) -> Self {
        Self {
            keep,
            table: Table {
                entries: VecDeque::new(),
                size: 0,
                max_size: max_size.min(MAX_TABLE_SIZE),
                held: 0,
            },
            name: Vec::new(),
            value: Vec::new(),
        }
    }

    /// Decodes one complete header block (HEADERS + CONTINUATION fragments joined, padding
    /// and priority already removed), calling `field(name, value)` for each field whose name
    /// `keep` accepts, in order. Fields whose name is not kept are decoded (to follow the
    /// table) but never passed on. On an error, the fields before it have been passed on.
    pub fn decode(
        &mut self,
        block: &[u8],
        mut field: impl FnMut(&[u8], &[u8]),
    ) -> Result<(), HpackError> {
        let result = self.decode_fields(block, &mut field);
        wipe(&mut self.name);
        wipe(&mut self.value);
        result
    }

    /// Bytes held by the dynamic table (the entries' kept names and values, not RFC sizes).
    pub fn held_bytes(&self) -> usize {
        self.table.held
    }

    /// Every name and value the table holds, as text.
    #[cfg(test)]
    pub(crate) fn held_text(&self) -> String {
        self.table
            .entries
            .iter()
            .filter_map(|entry| entry.field.as_deref())
            .map(String::from_utf8_lossy)
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn decode_fields(
        &mut self,
        block: &[u8],
        field: &mut impl FnMut(&[u8], &[u8]),
    ) -> Result<(), HpackError> {
        let Self {
            keep,
            table,
            name: name_scratch,
            value: value_scratch,
        } = self;
        let mut input = Input(block);
        while let Some(first) = input.byte() {
            // §6: the representation is told by the first byte's high bits.
            let (index, indexing) = match first {
                0x80..=0xff => {
                    // Indexed header field (§6.1).
                    if let Lookup::Field(name, value) = table.get(input.integer(first, 7)?)? {
                        if keep(name) {
                            field(name, value);
                        }
                    }
                    continue;
                }
                0x40..=0x7f => (input.integer(first, 6)?, true),
                0x20..=0x3f => {
                    // Dynamic table size update (§6.3). Accepted anywhere in a block: where
                    // it may appear matters to conformance, not to following the table.
                    let size = input.integer(first, 5)?;
                    if size > MAX_TABLE_SIZE {
                        return Err(HpackError::TableSizeTooLarge);
                    }
                    table.resize(size);
                    continue;
                }
                // Without indexing (0000) or never indexed (0001): the same to a decoder.
                0x00..=0x1f => (input.integer(first, 4)?, false),
            };
            // A literal (§6.2): a new name, or the name of a table entry.
            let name = if index == 0 {
                match input.string()? {
                    Literal::Raw(name) => name,
                    Literal::Huffman(encoded) => {
                        decode_huffman(encoded, name_scratch)?;
                        name_scratch.as_slice()
                    }
                }
            } else {
                match table.get(index)? {
                    Lookup::Field(name, _) => name,
                    Lookup::Dropped { name_len } => {
                        // A dropped entry's name was not kept: neither is this field.
                        let value_len = input.string()?.decoded_len()?;
                        if indexing {
                            table.insert(Entry::dropped(name_len, value_len));
                        }
                        continue;
                    }
                }
            };
            if keep(name) {
                let value = match input.string()? {
                    Literal::Raw(value) => value,
                    Literal::Huffman(encoded) => {
                        decode_huffman(encoded, value_scratch)?;
                        value_scratch.as_slice()
                    }
                };
                let sent_len = value.len();
                let value = without_query(name, value);
                field(name, value);
                if indexing {
                    // Copied before inserting: the name may be an entry that the insertion
                    // evicts (§4.4).
                    let entry = Entry::kept(name, value, sent_len);
                    table.insert(entry);
                }
            } else {
                let name_len = name.len();
                let value_len = input.string()?.decoded_len()?;
                if indexing {
                    table.insert(Entry::dropped(name_len, value_len));
                }
            }
        }
        Ok(())
    }
}

/// The static table (Appendix A), index 1 first.
static STATIC_TABLE: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

/// The dynamic table (§2.3.2, §4).
struct Table {
    /// Newest first, as indices count them: the front is index 62.
    entries: VecDeque<Entry>,
    /// The RFC size (§4.1): every entry's name and value lengths plus 32.
    size: usize,
    max_size: usize,
    /// Bytes of kept names and values.
    held: usize,
}

struct Entry {
    /// The name then the value, for a name `keep` accepts; `None` for any other.
    field: Option<Box<[u8]>>,
    name_len: usize,
    /// The RFC size.
    size: usize,
}

/// A `:path` without its query and fragment, which carry tokens and e-mail addresses: they
/// are neither passed on nor kept in the table (whose entry still counts them in its size).
fn without_query<'v>(name: &[u8], value: &'v [u8]) -> &'v [u8] {
    if name != b":path" {
        return value;
    }
    let end = value
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(value.len());
    &value[..end]
}

impl Entry {
    /// `value` is what is kept of a value `sent_len` bytes long.
    fn kept(name: &[u8], value: &[u8], sent_len: usize) -> Self {
        let mut field = Vec::with_capacity(name.len() + value.len());
        field.extend_from_slice(name);
        field.extend_from_slice(value);
        Self {
            field: Some(field.into_boxed_slice()),
            name_len: name.len(),
            size: name.len() + sent_len + ENTRY_OVERHEAD,
        }
    }

    fn dropped(name_len: usize, value_len: usize) -> Self {
        Self {
            field: None,
            name_len,
            size: name_len + value_len + ENTRY_OVERHEAD,
        }
    }

    fn held(&self) -> usize {
        self.field.as_ref().map_or(0, |field| field.len())
    }
}

/// A table entry as looked up.
enum Lookup<'t> {
    Field(&'t [u8], &'t [u8]),
    /// An entry whose name `keep` rejected: only its name's length is known.
    Dropped {
        name_len: usize,
    },
}

impl Table {
    /// The entry at `index` of the static then dynamic table (§2.3.3).
    fn get(&self, index: usize) -> Result<Lookup<'_>, HpackError> {
        let at = index.checked_sub(1).ok_or(HpackError::BadIndex)?;
        if let Some(&(name, value)) = STATIC_TABLE.get(at) {
            return Ok(Lookup::Field(name, value));
        }
        let entry = self
            .entries
            .get(at - STATIC_TABLE.len())
            .ok_or(HpackError::BadIndex)?;
        Ok(match &entry.field {
            Some(field) => {
                let (name, value) = field.split_at(entry.name_len);
                Lookup::Field(name, value)
            }
            None => Lookup::Dropped {
                name_len: entry.name_len,
            },
        })
    }

    /// Adds an entry, evicting the oldest ones to make room (§4.4). An entry larger than
    /// the whole table empties it and is not added.
    fn insert(&mut self, entry: Entry) {
        let Some(room) = self.max_size.checked_sub(entry.size) else {
            self.evict_to(0);
            return;
        };
        self.evict_to(room);
        self.size += entry.size;
        self.held += entry.held();
        self.entries.push_front(entry);
    }

    fn resize(&mut self, max_size: usize) {
        self.max_size = max_size;
        self.evict_to(max_size);
    }

    fn evict_to(&mut self, size: usize) {
        while self.size > size {
            let Some(oldest) = self.entries.pop_back() else {
                break;
            };
            self.size -= oldest.size;
            self.held -= oldest.held();
        }
    }
}

/// The rest of a header block.
struct Input<'a>(&'a [u8]);

/// A string literal (§5.2) as sent.
enum Literal<'a> {
    Raw(&'a [u8]),
    Huffman(&'a [u8]),
}

impl Literal<'_> {
    /// The string's length, decoded but not stored.
    fn decoded_len(&self) -> Result<usize, HpackError> {
        match *self {
            Literal::Raw(bytes) => Ok(bytes.len()),
            Literal::Huffman(encoded) => {
                let mut len = 0;
                huffman::decode(encoded, |_| len += 1).map_err(|_| HpackError::BadHuffman)?;
                Ok(len)
            }
        }
    }
}

impl<'a> Input<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(first)
    }

    /// An integer (§5.1) whose first byte, already read, holds it in its low `prefix` bits.
    fn integer(&mut self, first: u8, prefix: u32) -> Result<usize, HpackError> {
        let all_ones = (1u8 << prefix) - 1;
        let mut value = u64::from(first & all_ones);
        if value < u64::from(all_ones) {
            return Ok(usize::from(first & all_ones));
        }
        for shift in [0, 7, 14, 21, 28] {
            let byte = self.byte().ok_or(HpackError::Truncated)?;
            value += u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return u32::try_from(value)
                    .ok()
                    .and_then(|value| usize::try_from(value).ok())
                    .ok_or(HpackError::IntegerOverflow);
            }
        }
        Err(HpackError::IntegerOverflow)
    }

    /// A string literal (§5.2), not yet decoded.
    fn string(&mut self) -> Result<Literal<'a>, HpackError> {
        let first = self.byte().ok_or(HpackError::Truncated)?;
        let len = self.integer(first, 7)?;
        if len > MAX_STRING_LEN {
            return Err(HpackError::StringTooLong);
        }
        let (bytes, rest) = self.0.split_at_checked(len).ok_or(HpackError::Truncated)?;
        self.0 = rest;
        Ok(if first & 0x80 != 0 {
            Literal::Huffman(bytes)
        } else {
            Literal::Raw(bytes)
        })
    }
}

/// Decodes a Huffman-coded string into `scratch`, which is zeroed first and reserved in full
/// up front (each symbol takes at least 5 bits), so that growing it never leaves a copy of
/// earlier contents in freed memory.
fn decode_huffman(encoded: &[u8], scratch: &mut Vec<u8>) -> Result<(), HpackError> {
    scratch.fill(0);
    scratch.clear();
    scratch.reserve(encoded.len() * 8 / 5);
    huffman::decode(encoded, |byte| scratch.push(byte)).map_err(|_| HpackError::BadHuffman)
}

/// Zeroes a scratch buffer at the end of a block, freeing it if one long string grew it.
fn wipe(scratch: &mut Vec<u8>) {
    scratch.fill(0);
    scratch.clear();
    if scratch.capacity() > KEPT_SCRATCH {
        *scratch = Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text
            .bytes()
            .filter(|byte| !byte.is_ascii_whitespace())
            .collect();
        assert!(digits.len().is_multiple_of(2), "odd number of hex digits");
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    fn keep_all(_: &[u8]) -> bool {
        true
    }

    /// The fields `decode` passes on, as `name: value`.
    fn decode(decoder: &mut Decoder, block: &str) -> Result<Vec<String>, HpackError> {
        let mut fields = Vec::new();
        decoder.decode(&hex(block), |name, value| {
            fields.push(format!(
                "{}: {}",
                String::from_utf8_lossy(name),
                String::from_utf8_lossy(value)
            ));
        })?;
        Ok(fields)
    }

    /// The dynamic table, newest first; a dropped entry shows as its RFC size.
    fn table(decoder: &Decoder) -> Vec<String> {
        decoder
            .table
            .entries
            .iter()
            .map(|entry| match &entry.field {
                Some(field) => {
                    let (name, value) = field.split_at(entry.name_len);
                    format!(
                        "{}: {}",
                        String::from_utf8_lossy(name),
                        String::from_utf8_lossy(value)
                    )
                }
                None => format!("({} dropped)", entry.size),
            })
            .collect()
    }

    #[test]
    fn hpack_c2_single_fields() {
        // C.2.1: literal with indexing, new name.
        let mut decoder = Decoder::new(keep_all);
        let block = "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572";
        assert_eq!(
            decode(&mut decoder, block).unwrap(),
            ["custom-key: custom-header"]
        );
        assert_eq!(table(&decoder), ["custom-key: custom-header"]);
        assert_eq!(decoder.table.size, 55);
        assert_eq!(decoder.held_bytes(), 23);

        // C.2.2: literal without indexing, indexed name.
        let mut decoder = Decoder::new(keep_all);
        let block = "040c 2f73 616d 706c 652f 7061 7468";
        assert_eq!(
            decode(&mut decoder, block).unwrap(),
            [":path: /sample/path"]
        );
        assert_eq!(decoder.table.size, 0);

        // C.2.3: literal never indexed, new name.
        let mut decoder = Decoder::new(keep_all);
        let block = "1008 7061 7373 776f 7264 0673 6563 7265 74";
        assert_eq!(decode(&mut decoder, block).unwrap(), ["password: secret"]);
        assert_eq!(decoder.table.size, 0);

        // C.2.4: indexed field.
        let mut decoder = Decoder::new(keep_all);
        assert_eq!(decode(&mut decoder, "82").unwrap(), [":method: GET"]);
        assert_eq!(decoder.table.size, 0);
        assert_eq!(decoder.held_bytes(), 0);
    }

    const REQUEST_1: [&str; 4] = [
        ":method: GET",
        ":scheme: http",
        ":path: /",
        ":authority: www.example.com",
    ];
    const REQUEST_2: [&str; 5] = [
        ":method: GET",
        ":scheme: http",
        ":path: /",
        ":authority: www.example.com",
        "cache-control: no-cache",
    ];
    const REQUEST_3: [&str; 5] = [
        ":method: GET",
        ":scheme: https",
        ":path: /index.html",
        ":authority: www.example.com",
        "custom-key: custom-value",
    ];
    const TABLE_AFTER_REQUEST_3: [&str; 3] = [
        "custom-key: custom-value",
        "cache-control: no-cache",
        ":authority: www.example.com",
    ];

    fn requests(blocks: [&str; 3]) {
        let mut decoder = Decoder::new(keep_all);
        assert_eq!(decode(&mut decoder, blocks[0]).unwrap(), REQUEST_1);
        assert_eq!(table(&decoder), [":authority: www.example.com"]);
        assert_eq!(decoder.table.size, 57);
        assert_eq!(decode(&mut decoder, blocks[1]).unwrap(), REQUEST_2);
        assert_eq!(decoder.table.size, 110);
        assert_eq!(decode(&mut decoder, blocks[2]).unwrap(), REQUEST_3);
        assert_eq!(table(&decoder), TABLE_AFTER_REQUEST_3);
        assert_eq!(decoder.table.size, 164);
        assert_eq!(decoder.held_bytes(), 164 - 3 * 32);
    }

    #[test]
    fn hpack_c3_requests() {
        requests([
            "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
            "8286 84be 5808 6e6f 2d63 6163 6865",
            "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
        ]);
    }

    #[test]
    fn hpack_c4_requests_huffman() {
        requests([
            "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
            "8286 84be 5886 a8eb 1064 9cbf",
            "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
        ]);
    }

    const RESPONSE_1: [&str; 4] = [
        ":status: 302",
        "cache-control: private",
        "date: Mon, 21 Oct 2013 20:13:21 GMT",
        "location: https://www.example.com",
    ];
    const RESPONSE_2: [&str; 4] = [
        ":status: 307",
        "cache-control: private",
        "date: Mon, 21 Oct 2013 20:13:21 GMT",
        "location: https://www.example.com",
    ];
    const RESPONSE_3: [&str; 6] = [
        ":status: 200",
        "cache-control: private",
        "date: Mon, 21 Oct 2013 20:13:22 GMT",
        "location: https://www.example.com",
        "content-encoding: gzip",
        "set-cookie: foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
    ];

    /// C.5 and C.6 assume SETTINGS_HEADER_TABLE_SIZE 256, so the second and third responses
    /// evict.
    fn responses(blocks: [&str; 3]) {
        let mut decoder = Decoder::with_max_size(keep_all, 256);
        assert_eq!(decode(&mut decoder, blocks[0]).unwrap(), RESPONSE_1);
        assert_eq!(
            table(&decoder),
            [
                "location: https://www.example.com",
                "date: Mon, 21 Oct 2013 20:13:21 GMT",
                "cache-control: private",
                ":status: 302",
            ]
        );
        assert_eq!(decoder.table.size, 222);
        assert_eq!(decode(&mut decoder, blocks[1]).unwrap(), RESPONSE_2);
        assert_eq!(
            table(&decoder),
            [
                ":status: 307",
                "location: https://www.example.com",
                "date: Mon, 21 Oct 2013 20:13:21 GMT",
                "cache-control: private",
            ]
        );
        assert_eq!(decoder.table.size, 222);
        assert_eq!(decode(&mut decoder, blocks[2]).unwrap(), RESPONSE_3);
        assert_eq!(
            table(&decoder),
            [
                "set-cookie: foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
                "content-encoding: gzip",
                "date: Mon, 21 Oct 2013 20:13:22 GMT",
            ]
        );
        assert_eq!(decoder.table.size, 215);
        assert_eq!(decoder.held_bytes(), 215 - 3 * 32);
    }

    const C5: [&str; 3] = [
        "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
         2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70
         6c65 2e63 6f6d",
        "4803 3330 37c1 c0bf",
        "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d
         54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049
         5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e
         3d31",
    ];
    const C6: [&str; 3] = [
        "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
         2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
        "4883 640e ffc1 c0bf",
        "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
         77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
         9587 3160 65c0 03ed 4ee5 b106 3d50 07",
    ];

    #[test]
    fn hpack_c5_responses() {
        responses(C5);
    }

    #[test]
    fn hpack_c6_responses_huffman() {
        responses(C6);
    }

    #[test]
    fn hpack_huffman_code_is_complete() {
        // Kraft: a prefix code with no unused code words has sum(2^-len) = 1, here scaled
        // by 2^30 (the longest code) to stay exact.
        let sum: u64 = huffman::CODES
            .iter()
            .map(|&(_, len)| 1u64 << (30 - len))
            .sum();
        assert_eq!(sum, 1 << 30);
    }

    #[test]
    fn hpack_huffman_decodes_every_symbol() {
        for (symbol, &(code, len)) in huffman::CODES.iter().enumerate().take(256) {
            // The symbol twice, then padding: all ones up to the byte boundary.
            let bits = 2 * u32::from(len);
            let padding = (8 - bits % 8) % 8;
            let value =
                (((u128::from(code) << len) | u128::from(code)) << padding) | ((1 << padding) - 1);
            let bytes = value.to_be_bytes();
            let encoded = &bytes[bytes.len() - ((bits + padding) / 8) as usize..];
            let mut decoded = Vec::new();
            assert_eq!(
                huffman::decode(encoded, |byte| decoded.push(byte)),
                Ok(()),
                "{symbol}"
            );
            assert_eq!(decoded, [symbol as u8; 2]);
        }
    }

    #[test]
    fn hpack_huffman_rejects_eos_and_bad_padding() {
        let decode = |encoded: &[u8]| huffman::decode(encoded, |_| {});
        assert_eq!(decode(&[]), Ok(()));
        // 'a' (00011) and three padding ones.
        assert_eq!(decode(&[0b0001_1111]), Ok(()));
        // Padding with a zero.
        assert_eq!(decode(&[0b0001_1101]), Err(huffman::Invalid));
        // A whole byte of padding.
        assert_eq!(decode(&[0b0001_1111, 0xff]), Err(huffman::Invalid));
        assert_eq!(decode(&[0xff]), Err(huffman::Invalid));
        // EOS (30 ones) and two padding ones.
        assert_eq!(decode(&[0xff; 4]), Err(huffman::Invalid));
        // Cut inside a long code: its first bits are not padding.
        assert_eq!(decode(&[0xfe]), Err(huffman::Invalid));
        // Through a field: a value that is EOS.
        let mut decoder = Decoder::new(keep_all);
        assert_eq!(
            decode_block(&mut decoder, "0001 6184 ffff ffff"),
            Err(HpackError::BadHuffman)
        );
    }

    fn decode_block(decoder: &mut Decoder, block: &str) -> Result<(), HpackError> {
        decoder.decode(&hex(block), |_, _| {})
    }

    /// What a monitor keeps: the pseudo-header fields and the content type.
    fn keep_some(name: &[u8]) -> bool {
        name.starts_with(b":") || name == b"content-type"
    }

    #[test]
    fn hpack_rejected_fields_are_not_passed_on_nor_held() {
        let mut decoder = Decoder::new(keep_some);
        let block = [
            // Literal with indexing, new name: cookie: session=secret.
            "40 06 636f6f6b6965 0e 73657373696f6e3d736563726574",
            // Literal with indexing, new name: :path: /a.
            "40 05 3a70617468 02 2f61",
            // Literal with indexing, static name 32 (cookie): other=secret.
            "60 0c 6f746865723d736563726574",
            // Literal without indexing, static name 4 (:path): /b.
            "04 02 2f62",
        ]
        .join(" ");
        assert_eq!(
            decode(&mut decoder, &block).unwrap(),
            [":path: /a", ":path: /b"]
        );
        assert_eq!(
            table(&decoder),
            ["(50 dropped)", ":path: /a", "(52 dropped)"]
        );
        assert_eq!(decoder.table.size, 50 + 39 + 52);
        assert_eq!(decoder.held_bytes(), ":path/a".len());

        let block = [
            // Indexed 62, 63, 64: the other cookie, :path: /a, the first cookie.
            "be bf c0",
            // Literal without indexing, name of entry 63 (:path): /c.
            "0f 30 02 2f63",
            // Literal with indexing, name of entry 62 (the dropped cookie): x.
            "7e 01 78",
            // Indexed 64: :path: /a, one further down.
            "c0",
            // Literal with indexing, name of entry 64 (:path), a Huffman-coded value.
            "7f 01 82 6402",
        ]
        .join(" ");
        assert_eq!(
            decode(&mut decoder, &block).unwrap(),
            [":path: /a", ":path: /c", ":path: /a", ":path: 302"]
        );
        assert_eq!(
            table(&decoder),
            [
                ":path: 302",
                "(39 dropped)",
                "(50 dropped)",
                ":path: /a",
                "(52 dropped)"
            ]
        );
        assert_eq!(decoder.held_bytes(), ":path/a:path302".len());
        assert!(decoder.name.is_empty() && decoder.value.is_empty());
    }

    #[test]
    fn hpack_c6_without_set_cookie() {
        fn not_set_cookie(name: &[u8]) -> bool {
            name != b"set-cookie"
        }
        let mut decoder = Decoder::with_max_size(not_set_cookie, 256);
        for (block, expected) in C6
            .iter()
            .zip([&RESPONSE_1[..], &RESPONSE_2[..], &RESPONSE_3[..5]])
        {
            assert_eq!(decode(&mut decoder, block).unwrap(), expected);
        }
        // The set-cookie entry still counts in the table's size, with nothing held.
        let set_cookie_size = "set-cookie".len()
            + "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1".len()
            + 32;
        let dropped = format!("({set_cookie_size} dropped)");
        assert_eq!(
            table(&decoder),
            [
                dropped.as_str(),
                "content-encoding: gzip",
                "date: Mon, 21 Oct 2013 20:13:22 GMT",
            ]
        );
        assert_eq!(decoder.table.size, 215);
        assert_eq!(decoder.held_bytes(), 215 - 3 * 32 - (set_cookie_size - 32));
    }

    #[test]
    fn hpack_table_size_updates() {
        let mut decoder = Decoder::new(keep_all);
        decode_block(&mut decoder, C5[0]).unwrap();
        // To 100: only the newest entry (63) still fits.
        decode_block(&mut decoder, "3f 45").unwrap();
        assert_eq!(decoder.table.size, 63);
        assert_eq!(table(&decoder), ["location: https://www.example.com"]);
        // To 0, then back up to MAX_TABLE_SIZE, in one block.
        decode_block(&mut decoder, "20 3f e1 ff 03").unwrap();
        assert_eq!((decoder.table.size, decoder.held_bytes()), (0, 0));
        assert_eq!(decoder.table.max_size, MAX_TABLE_SIZE);
        assert_eq!(
            decode_block(&mut decoder, "3f e2 ff 03"),
            Err(HpackError::TableSizeTooLarge)
        );
        // An entry larger than the table empties it and is not added (§4.4).
        let mut decoder = Decoder::with_max_size(keep_all, 40);
        decode_block(&mut decoder, "40 01 61 01 62").unwrap();
        assert_eq!(decoder.table.size, 34);
        assert_eq!(
            decode(&mut decoder, "40 01 61 08 3132333435363738").unwrap(),
            ["a: 12345678"]
        );
        assert_eq!((decoder.table.size, decoder.held_bytes()), (0, 0));
    }

    #[test]
    fn hpack_malformed_blocks() {
        let cases = [
            ("80", HpackError::BadIndex),
            ("be", HpackError::BadIndex),
            ("40 01 61 01 62 bf", HpackError::BadIndex),
            ("7f 00 00", HpackError::BadIndex),
            ("ff", HpackError::Truncated),
            ("ff 80", HpackError::Truncated),
            ("40", HpackError::Truncated),
            ("40 01 61", HpackError::Truncated),
            ("40 0a 616263", HpackError::Truncated),
            ("82 04", HpackError::Truncated),
            ("ff ff ff ff ff 0f", HpackError::IntegerOverflow),
            ("ff 80 80 80 80 80 00", HpackError::IntegerOverflow),
            ("40 7f 82 ff 03", HpackError::StringTooLong),
            ("00 81 00", HpackError::BadHuffman),
        ];
        for (block, error) in cases {
            let mut decoder = Decoder::new(keep_all);
            assert_eq!(decode_block(&mut decoder, block), Err(error), "{block}");
        }
        // The largest accepted integer, and a string of exactly 64 KiB (cut short here).
        let mut decoder = Decoder::new(keep_all);
        assert_eq!(
            decode_block(&mut decoder, "ff 80 ff ff ff 0f"),
            Err(HpackError::BadIndex)
        );
        assert_eq!(
            decode_block(&mut decoder, "40 7f 81 ff 03"),
            Err(HpackError::Truncated)
        );
    }

    #[test]
    fn hpack_garbage_does_not_panic() {
        // xorshift64: a fixed, dependency-free sequence.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let seeds: Vec<Vec<u8>> = C5.iter().chain(&C6).map(|block| hex(block)).collect();
        let mut decoder = Decoder::new(keep_some);
        for round in 0..20_000 {
            let mut block = if round % 2 == 0 {
                // Mutations of valid blocks reach deeper than random bytes.
                let mut block = seeds[next() as usize % seeds.len()].clone();
                for _ in 0..1 + next() % 4 {
                    let at = next() as usize % block.len();
                    block[at] = next() as u8;
                }
                block
            } else {
                (0..next() % 48).map(|_| next() as u8).collect()
            };
            if round % 3 == 0 {
                block.truncate(next() as usize % (block.len() + 1));
            }
            if decoder.decode(&block, |_, _| {}).is_err() {
                decoder = Decoder::new(if round % 5 == 0 { keep_all } else { keep_some });
            }
            assert!(decoder.table.size <= decoder.table.max_size);
            assert!(decoder.held_bytes() <= decoder.table.size);
            assert!(decoder.name.is_empty() && decoder.value.is_empty());
        }
    }
}
