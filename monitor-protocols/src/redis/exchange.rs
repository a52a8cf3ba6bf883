//! What the Redis parser produces. Apart from the parser because [`Exchange`](crate::Exchange)
//! holds it: the protocol contract sits between the two.
use crate::chunk::Role;

/// Label value for a command name or error prefix that is not a plausible token: arbitrary
/// bytes from the wire never become a label.
pub const OTHER: &str = "_OTHER";

/// One command and the reply that answered it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisExchange {
    pub role: Role,
    /// The command name uppercased (`GET`, `CLIENT`, `FT.SEARCH`), or [`OTHER`]. Never a key,
    /// a value or any other argument: subcommands (`CLIENT INFO`) are arguments too.
    pub command: String,
    /// For an error reply, its prefix (`ERR`, `WRONGTYPE`, `NOSCRIPT`), or [`OTHER`] when
    /// the first word is not an uppercase token; None for any other reply.
    pub error: Option<String>,
    /// From the chunk holding the command's first byte to the chunk holding its reply's
    /// first byte (see the module docs).
    pub duration_ns: u64,
}

/// Whether `name` may be a command label: 1 to 32 bytes of letters, digits and `_-.|`
/// (module commands are dotted, `FT.SEARCH`; container subcommands may show as `CLIENT|INFO`).
pub fn is_command_label(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b"_-.|".contains(&b))
}

/// Whether `prefix` may be an error label: 1 to 32 bytes of uppercase letters, digits, `_`.
pub fn is_error_label(prefix: &str) -> bool {
    (1..=32).contains(&prefix.len())
        && prefix
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}
