//! `/proc/<pid>/stat`, whose second field, the command, may hold spaces and parentheses:
//! fields are counted after its last `)`. A leaf, for the rooms that read a process's stat
//! (`export::process` for the agent's own figures, `process::names` for kernel threads).

/// Field `number` of a stat line, counted from 1 at the pid (so the first after the command
/// is 3, the state); `None` if it is missing or not a whole number.
pub fn field(stat: &str, number: usize) -> Option<u64> {
    let (_, after_command) = stat.rsplit_once(')')?;
    after_command
        .split_whitespace()
        .nth(number.checked_sub(3)?)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn fields_are_counted_after_the_last_parenthesis() {
        let stat = "4242 (a) b) (c) S 1 4242 4242 0 -1 4194560 1500\n";
        assert_eq!(super::field(stat, 4), Some(1));
        assert_eq!(super::field(stat, 9), Some(4_194_560));
        assert_eq!(super::field(stat, 3), None, "the state is a letter");
        assert_eq!(super::field(stat, 11), None, "past the end");
        assert_eq!(
            super::field(stat, 2),
            None,
            "the command is not a field here"
        );
    }
}
