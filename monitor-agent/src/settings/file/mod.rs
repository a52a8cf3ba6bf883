//! `--config.file`: the YAML file for series, labels, identity, service overrides and process
//! selection. Read and checked in full at start-up, before anything is loaded; every mistake
//! is one error naming the line and the field (`series.ttl`, `selection.include[1]`, …).
//! Unknown fields are errors, so a typo never silently falls back to a default.
//!
//! Checks that need a value's own position (a bad duration, selector or label name) run inside
//! serde visitors: serde_norway then reports the value's line and path. Only what it places at
//! the start of a mapping (unknown, missing or repeated fields) is pointed at its key's line here.
use std::{
    collections::HashMap,
    fmt,
    marker::PhantomData,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{
    Deserialize, Deserializer,
    de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor},
};

use crate::{
    identity::selection::{Selector, SelectorKey, ServiceOverride, check_pattern},
    series::labels::IdentityLabel,
    settings::checks::{check_constant_label_name, parse_api_url, parse_duration},
    signals::syscalls::histograms::HistogramSyscalls,
};

/// What the file sets; `None` (or empty) where it says nothing.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FileConfig {
    pub series_ttl: Option<Duration>,
    pub series_max: Option<usize>,
    pub pid_label: Option<bool>,
    pub constant_labels: Option<Vec<(String, String)>>,
    pub family_labels: HashMap<String, Vec<IdentityLabel>>,
    pub tcp_peers_per_comm: Option<usize>,
    pub http_routes_per_comm: Option<usize>,
    pub syscall_histograms: Option<HistogramSyscalls>,
    pub processes_names_per_parent: Option<usize>,
    pub processes_short_lived: Option<Duration>,
    pub docker_socket: Option<PathBuf>,
    pub kubernetes_node_name: Option<String>,
    pub kubernetes_api_url: Option<String>,
    pub kubernetes_deleted_pod_ttl: Option<Duration>,
    pub service_overrides: Vec<ServiceOverride>,
    pub select_include: Option<Vec<Selector>>,
    pub select_exclude: Option<Vec<Selector>>,
}

/// A mistake in the file, placed as precisely as the YAML allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based; `None` when the file could not be read at all.
    pub line: Option<usize>,
    /// Dotted path of the field, e.g. `series.ttl` or `selection.include[0]`.
    pub field: Option<String>,
    pub problem: String,
}

/// A [`Problem`] with the file it is in: `config file PATH: line N: FIELD: PROBLEM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub path: PathBuf,
    pub problem: Problem,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config file {}", self.path.display())?;
        if let Some(line) = self.problem.line {
            write!(f, ": line {line}")?;
        }
        if let Some(field) = &self.problem.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.problem.problem)
    }
}

impl std::error::Error for FileError {}

impl FileConfig {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<FileConfig, FileError> {
        let error = |problem| FileError {
            path: path.to_owned(),
            problem,
        };
        let text = std::fs::read_to_string(path).map_err(|err| {
            error(Problem {
                line: None,
                field: None,
                problem: format!("cannot read it: {err}"),
            })
        })?;
        FileConfig::parse(&text).map_err(error)
    }

    /// Checks `text`; an empty document (or only comments) sets nothing.
    pub fn parse(text: &str) -> Result<FileConfig, Problem> {
        let raw: Option<RawFile> =
            serde_norway::from_str(text).map_err(|err| locate(text, &err))?;
        Ok(raw.unwrap_or_default().into_config())
    }
}

// ---------------------------------------------------------------------------------------------
// The schema, as written in the file.

#[derive(Deserialize, Default)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping of series, labels, syscalls, processes, tcp, http, identity, \
                 service and selection"
)]
struct RawFile {
    series: Option<RawSeries>,
    labels: Option<RawLabels>,
    syscalls: Option<RawSyscalls>,
    processes: Option<RawProcesses>,
    tcp: Option<RawTcp>,
    http: Option<RawHttp>,
    identity: Option<RawIdentity>,
    service: Option<RawService>,
    selection: Option<RawSelection>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with ttl and max")]
struct RawSeries {
    ttl: Option<DurationValue>,
    max: Option<SeriesMax>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with pid, constant and families"
)]
struct RawLabels {
    pid: Option<bool>,
    constant: Option<UniqueMap<ConstantLabelName, LabelValue>>,
    families: Option<UniqueMap<FamilyName, LabelChoice>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with histograms")]
struct RawSyscalls {
    histograms: Option<SyscallList>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with names_per_parent and short_lived"
)]
struct RawProcesses {
    names_per_parent: Option<usize>,
    short_lived: Option<DurationValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with peers_per_comm")]
struct RawTcp {
    peers_per_comm: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with routes_per_comm")]
struct RawHttp {
    routes_per_comm: Option<usize>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with docker_socket and kubernetes"
)]
struct RawIdentity {
    docker_socket: Option<PathBuf>,
    kubernetes: Option<RawKubernetes>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with node_name, api_url and deleted_pod_ttl"
)]
struct RawKubernetes {
    node_name: Option<NonEmpty>,
    api_url: Option<ApiUrl>,
    deleted_pod_ttl: Option<DurationValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with overrides")]
struct RawService {
    overrides: Option<Vec<RawOverride>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with match and service")]
struct RawOverride {
    #[serde(rename = "match")]
    matchers: Matchers,
    service: NonEmpty,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with include and exclude")]
struct RawSelection {
    include: Option<Vec<Selector>>,
    exclude: Option<Vec<Selector>>,
}

impl RawFile {
    fn into_config(self) -> FileConfig {
        let (series_ttl, series_max) = self
            .series
            .map(|series| (series.ttl.map(|ttl| ttl.0), series.max.map(|max| max.0)))
            .unwrap_or_default();
        let (pid_label, constant_labels, family_labels) = match self.labels {
            Some(labels) => (
                labels.pid,
                labels.constant.map(|constant| {
                    constant
                        .0
                        .into_iter()
                        .map(|(name, value)| (name.0, value.0))
                        .collect()
                }),
                labels
                    .families
                    .map(|families| {
                        families
                            .0
                            .into_iter()
                            .map(|(family, labels)| (family.0, labels.0))
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            None => (None, None, HashMap::new()),
        };
        let (docker_socket, kubernetes) = self
            .identity
            .map(|identity| (identity.docker_socket, identity.kubernetes))
            .unwrap_or_default();
        let (kubernetes_node_name, kubernetes_api_url, kubernetes_deleted_pod_ttl) = kubernetes
            .map(|kube| {
                (
                    kube.node_name.map(|name| name.0),
                    kube.api_url.map(|url| url.0),
                    kube.deleted_pod_ttl.map(|ttl| ttl.0),
                )
            })
            .unwrap_or_default();
        let service_overrides = self
            .service
            .and_then(|service| service.overrides)
            .unwrap_or_default()
            .into_iter()
            .map(|rule| ServiceOverride {
                matchers: rule.matchers.0,
                service: rule.service.0,
            })
            .collect();
        let (select_include, select_exclude) = self
            .selection
            .map(|selection| (selection.include, selection.exclude))
            .unwrap_or_default();
        FileConfig {
            series_ttl,
            series_max,
            pid_label,
            constant_labels,
            family_labels,
            tcp_peers_per_comm: self.tcp.and_then(|tcp| tcp.peers_per_comm),
            http_routes_per_comm: self.http.and_then(|http| http.routes_per_comm),
            syscall_histograms: self
                .syscalls
                .and_then(|syscalls| syscalls.histograms)
                .map(|list| list.0),
            processes_names_per_parent: self
                .processes
                .as_ref()
                .and_then(|processes| processes.names_per_parent),
            processes_short_lived: self
                .processes
                .and_then(|processes| processes.short_lived)
                .map(|limit| limit.0),
            docker_socket,
            kubernetes_node_name,
            kubernetes_api_url,
            kubernetes_deleted_pod_ttl,
            service_overrides,
            select_include,
            select_exclude,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Values checked where they stand (inside a visitor, so that the error carries their line).

/// Implements `Deserialize` for a newtype over a string checked by `check`.
macro_rules! checked_string {
    ($name:ident, $expecting:literal, $check:expr) => {
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct StrVisitor;
                impl Visitor<'_> for StrVisitor {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: de::Error>(self, text: &str) -> Result<$name, E> {
                        let check: fn(&str) -> Result<$name, String> = $check;
                        check(text).map_err(E::custom)
                    }
                }
                deserializer.deserialize_str(StrVisitor)
            }
        }
    };
}

struct DurationValue(Duration);
checked_string!(DurationValue, "a duration such as 30s, 5m or 1h", |text| {
    parse_duration(text).map(DurationValue)
});

struct SyscallList(HistogramSyscalls);
checked_string!(
    SyscallList,
    "all, none, blocking or syscall names such as blocking,mmap",
    |text| text.parse().map(SyscallList)
);

struct NonEmpty(String);
checked_string!(NonEmpty, "a non-empty string", |text| {
    if text.trim().is_empty() {
        Err("must not be empty".to_owned())
    } else {
        Ok(NonEmpty(text.to_owned()))
    }
});

struct ApiUrl(String);
checked_string!(ApiUrl, "a URL such as https://10.0.0.1:443", |text| {
    parse_api_url(text).map(ApiUrl)
});

struct ConstantLabelName(String);
checked_string!(ConstantLabelName, "a label name", |text| {
    check_constant_label_name(text).map(|()| ConstantLabelName(text.to_owned()))
});

struct LabelValue(String);
checked_string!(LabelValue, "a label value", |text| {
    if text.is_empty() {
        Err("a constant label's value must not be empty".to_owned())
    } else {
        Ok(LabelValue(text.to_owned()))
    }
});

struct FamilyName(String);
checked_string!(FamilyName, "a workload metric family name", |text| {
    let mut workload = crate::series::families::family::ALL
        .iter()
        .filter(|family| family.workload);
    if workload.clone().any(|family| family.name == text) {
        Ok(FamilyName(text.to_owned()))
    } else {
        let known: Vec<&str> = workload.by_ref().map(|family| family.name).collect();
        Err(format!(
            "`{text}` is not a workload metric family (one of {})",
            known.join(", ")
        ))
    }
});

checked_string!(IdentityLabel, "an identity label", |text| text.parse());

checked_string!(Selector, "a selector KEY=PATTERN", |text| text.parse());

impl PartialEq for ConstantLabelName {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl PartialEq for FamilyName {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl fmt::Display for ConstantLabelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for FamilyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// At least 1: a budget of no series at all would only ever fill the overflow series.
struct SeriesMax(usize);

impl<'de> Deserialize<'de> for SeriesMax {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MaxVisitor;
        impl Visitor<'_> for MaxVisitor {
            type Value = SeriesMax;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number of series, at least 1")
            }
            fn visit_u64<E: de::Error>(self, max: u64) -> Result<SeriesMax, E> {
                match usize::try_from(max) {
                    Ok(0) | Err(_) => Err(E::custom(format!(
                        "{max} is not a number of series: use at least 1"
                    ))),
                    Ok(max) => Ok(SeriesMax(max)),
                }
            }
            fn visit_i64<E: de::Error>(self, max: i64) -> Result<SeriesMax, E> {
                match u64::try_from(max) {
                    Ok(max) => self.visit_u64(max),
                    Err(_) => Err(E::custom(format!(
                        "{max} is not a number of series: use at least 1"
                    ))),
                }
            }
        }
        deserializer.deserialize_u64(MaxVisitor)
    }
}

/// A family's identity labels: no label twice.
struct LabelChoice(Vec<IdentityLabel>);

impl<'de> Deserialize<'de> for LabelChoice {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ChoiceVisitor;
        impl<'de> Visitor<'de> for ChoiceVisitor {
            type Value = LabelChoice;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of pid, comm, container, pod, namespace and service")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<LabelChoice, A::Error> {
                let mut labels = Vec::new();
                while let Some(label) = seq.next_element::<IdentityLabel>()? {
                    if labels.contains(&label) {
                        return Err(de::Error::custom(format!(
                            "`{}` is listed twice",
                            label.as_str()
                        )));
                    }
                    labels.push(label);
                }
                Ok(LabelChoice(labels))
            }
        }
        deserializer.deserialize_seq(ChoiceVisitor)
    }
}

/// A mapping kept in file order, where a key given twice is an error (serde would keep the
/// last one silently).
struct UniqueMap<K, V>(Vec<(K, V)>);

impl<'de, K, V> Deserialize<'de> for UniqueMap<K, V>
where
    K: Deserialize<'de> + PartialEq + fmt::Display,
    V: Deserialize<'de>,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<K, V>(PhantomData<(K, V)>);
        impl<'de, K, V> Visitor<'de> for MapVisitor<K, V>
        where
            K: Deserialize<'de> + PartialEq + fmt::Display,
            V: Deserialize<'de>,
        {
            type Value = UniqueMap<K, V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries: Vec<(K, V)> = Vec::new();
                while let Some((key, value)) = map.next_entry::<K, V>()? {
                    if entries.iter().any(|(seen, _)| *seen == key) {
                        return Err(de::Error::custom(format!("duplicate field `{key}`")));
                    }
                    entries.push((key, value));
                }
                Ok(UniqueMap(entries))
            }
        }
        deserializer.deserialize_map(MapVisitor(PhantomData))
    }
}

/// A service override's `match`: keys of a selector, each with a glob; at least one.
struct Matchers(Vec<Selector>);

impl<'de> Deserialize<'de> for Matchers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MatchVisitor;
        impl<'de> Visitor<'de> for MatchVisitor {
            type Value = Matchers;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of comm, exe, container and namespace to globs")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Matchers, A::Error> {
                let mut matchers: Vec<Selector> = Vec::new();
                while let Some(key) = map.next_key::<KeyName>()? {
                    if matchers.iter().any(|matcher| matcher.key == key.0) {
                        return Err(de::Error::custom(format!(
                            "duplicate field `{}`",
                            key.0.as_str()
                        )));
                    }
                    let pattern = map.next_value_seed(PatternSeed(key.0))?;
                    matchers.push(Selector {
                        key: key.0,
                        pattern,
                    });
                }
                if matchers.is_empty() {
                    return Err(de::Error::custom(
                        "is empty: give at least one of comm, exe, container, namespace \
                         (a rule that matches everything would name every process alike)",
                    ));
                }
                Ok(Matchers(matchers))
            }
        }
        deserializer.deserialize_map(MatchVisitor)
    }
}

struct KeyName(SelectorKey);
checked_string!(KeyName, "comm, exe, container or namespace", |text| {
    text.parse().map(KeyName)
});

/// A glob for a known key (so that e.g. an impossible `comm` is refused on its own line).
struct PatternSeed(SelectorKey);

impl<'de> DeserializeSeed<'de> for PatternSeed {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for PatternSeed {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a glob pattern")
    }
    fn visit_str<E: de::Error>(self, text: &str) -> Result<String, E> {
        check_pattern(self.0, text)
            .map(|()| text.to_owned())
            .map_err(E::custom)
    }
}

// ---------------------------------------------------------------------------------------------
// serde_norway's errors → line, field, problem.

/// serde_norway writes `PATH: MESSAGE at line L column C` (no `PATH: ` at the top level).
/// Value errors are placed on the value; unknown, missing and repeated fields on the start of
/// the mapping that holds them, so those are looked up by key from there.
fn locate(text: &str, err: &serde_norway::Error) -> Problem {
    let mut message = err.to_string();
    // Not written out at the very start of the document, but that is line 1 all the same.
    let line = err.location().map(|location| location.line());
    if let Some(location) = err.location() {
        let at = format!(" at line {} column {}", location.line(), location.column());
        if let Some(index) = message.find(&at) {
            message.replace_range(index..index + at.len(), "");
        }
    }
    let (path, message) = split_path(&message);
    for (prefix, problem, occurrence) in [
        ("unknown field `", "unknown field", 0),
        ("missing field `", "required but missing", usize::MAX),
        ("duplicate field `", "given twice", 1),
    ] {
        let Some(rest) = message.strip_prefix(prefix) else {
            continue;
        };
        let Some((key, rest)) = rest.split_once('`') else {
            continue;
        };
        let field = match &path {
            Some(path) => format!("{path}.{key}"),
            None => key.to_owned(),
        };
        // "unknown field `x`, expected `a` or `b`" → "unknown field, expected `a` or `b`".
        let problem = format!("{problem}{rest}");
        let line = match occurrence {
            // A missing key has no line of its own: the mapping's is the best there is.
            usize::MAX => line,
            nth => key_line(text, key, line.unwrap_or(1), nth).or(line),
        };
        return Problem {
            line,
            field: Some(field),
            problem,
        };
    }
    Problem {
        line,
        field: path,
        problem: message.to_owned(),
    }
}

/// `series.ttl: bad` → (`series.ttl`, `bad`). A path has no spaces and never starts with a
/// backtick, which tells it from a top-level message such as `invalid type: …`.
fn split_path(message: &str) -> (Option<String>, &str) {
    match message.split_once(": ") {
        Some((path, rest))
            if !path.is_empty()
                && !path.starts_with('`')
                && !path.contains(char::is_whitespace) =>
        {
            (Some(path.to_owned()), rest)
        }
        _ => (None, message),
    }
}

/// The 1-based line of the `nth` (0-based) occurrence of `key:` as a mapping key, searching
/// from line `from`, in block (`key: v`, `- key: v`) or flow (`{ a: 1, key: v }`) style.
fn key_line(text: &str, key: &str, from: usize, nth: usize) -> Option<usize> {
    let spellings = [
        format!("{key}:"),
        format!("'{key}':"),
        format!("\"{key}\":"),
    ];
    text.lines()
        .enumerate()
        .skip(from.saturating_sub(1))
        .filter(|(_, line)| {
            let code = line.split(" #").next().unwrap_or(line);
            spellings.iter().any(|spelling| {
                code.match_indices(spelling.as_str()).any(|(index, _)| {
                    let before = code[..index].chars().next_back();
                    let after = code[index + spelling.len()..].chars().next();
                    matches!(before, None | Some(' ' | '\t' | '{' | ',' | '-'))
                        && matches!(after, None | Some(' ' | '\t'))
                })
            })
        })
        .nth(nth)
        .map(|(index, _)| index + 1)
}

#[cfg(test)]
mod tests;
