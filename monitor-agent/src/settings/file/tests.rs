use super::*;

const FULL: &str = "\
series:
  ttl: 5m              # same as --series.ttl
  max: 10000           # --series.max
labels:
  pid: false           # --labels pid
  constant:            # --label.const
    environment: prod
  families:
    monitor_syscall_duration_seconds: [comm, service, namespace]
syscalls:
  histograms: blocking,mmap   # --syscalls.histograms
processes:
  names_per_parent: 16  # --processes.names-per-parent
  short_lived: 5s       # --processes.short-lived
tcp:
  peers_per_comm: 64
http:
  routes_per_comm: 100
identity:
  docker_socket: /var/run/docker.sock
  kubernetes:
    node_name: node-1
    api_url: https://10.0.0.1:443
    deleted_pod_ttl: 1m
service:
  overrides:           # first match wins
    - match: { comm: \"java*\", namespace: shop, container: api }
      service: checkout
selection:
  include: [\"comm=nginx\", \"namespace=shop\"]
  exclude: [\"comm=sshd\"]
";

fn problem(yaml: &str) -> Problem {
    match FileConfig::parse(yaml) {
        Ok(config) => panic!("accepted:\n{yaml}\n{config:?}"),
        Err(problem) => {
            assert!(!problem.problem.contains('\n'), "{problem:?}");
            problem
        }
    }
}

/// The line, the field, and a piece of the problem.
fn assert_problem(yaml: &str, line: usize, field: &str, needle: &str) {
    let problem = problem(yaml);
    assert_eq!(problem.line, Some(line), "{yaml}\n{problem:?}");
    assert_eq!(problem.field.as_deref(), Some(field), "{yaml}\n{problem:?}");
    assert!(
        problem.problem.contains(needle),
        "{needle:?} not in {problem:?}"
    );
}

/// The README's example is what people paste: it must parse, and filter nothing away
/// nor reach for a cluster the machine is not in.
#[test]
fn the_readme_example_parses_and_is_safe_to_paste() {
    let readme = include_str!("../../../../README.md");
    let section = &readme[readme.find("### Configuration file").unwrap()..];
    let start = section.find("```yaml\n").unwrap() + "```yaml\n".len();
    let example = &section[start..start + section[start..].find("```").unwrap()];
    let config = FileConfig::parse(example).unwrap();
    assert_eq!(
        config.select_include, None,
        "an include filters everything else away"
    );
    assert_eq!(config.kubernetes_node_name, None, "only inside a cluster");
    assert!(config.select_exclude.is_some() && !config.service_overrides.is_empty());
}

#[test]
fn the_documented_schema_parses() {
    let config = FileConfig::parse(FULL).unwrap();
    assert_eq!(config.series_ttl, Some(Duration::from_secs(300)));
    assert_eq!(config.series_max, Some(10_000));
    assert_eq!(config.pid_label, Some(false));
    assert_eq!(
        config.constant_labels,
        Some(vec![("environment".to_owned(), "prod".to_owned())])
    );
    assert_eq!(
        config.family_labels["monitor_syscall_duration_seconds"],
        [
            IdentityLabel::Comm,
            IdentityLabel::Service,
            IdentityLabel::Namespace
        ]
    );
    assert_eq!(
        config.syscall_histograms,
        Some("blocking,mmap".parse().unwrap())
    );
    assert_eq!(config.processes_names_per_parent, Some(16));
    assert_eq!(config.processes_short_lived, Some(Duration::from_secs(5)));
    assert_eq!(config.tcp_peers_per_comm, Some(64));
    assert_eq!(config.http_routes_per_comm, Some(100));
    assert_eq!(
        config.docker_socket.as_deref(),
        Some(Path::new("/var/run/docker.sock"))
    );
    assert_eq!(config.kubernetes_node_name.as_deref(), Some("node-1"));
    assert_eq!(
        config.kubernetes_api_url.as_deref(),
        Some("https://10.0.0.1:443")
    );
    assert_eq!(
        config.kubernetes_deleted_pod_ttl,
        Some(Duration::from_secs(60))
    );
    let rule = &config.service_overrides[0];
    assert_eq!(rule.service, "checkout");
    let matchers: Vec<String> = rule.matchers.iter().map(ToString::to_string).collect();
    assert_eq!(matchers, ["comm=java*", "namespace=shop", "container=api"]);
    let include: Vec<String> = config
        .select_include
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(include, ["comm=nginx", "namespace=shop"]);
    assert_eq!(config.select_exclude.unwrap().len(), 1);
}

#[test]
fn a_bad_syscall_list_is_named_with_its_line() {
    assert_problem(
        "syscalls:\n  histograms: blocking,reed\n",
        2,
        "syscalls.histograms",
        "`reed` is not a syscall",
    );
}

#[test]
fn an_empty_file_sets_nothing() {
    for yaml in ["", "\n", "# nothing\n", "{}", "series:\n", "series: {}\n"] {
        assert_eq!(
            FileConfig::parse(yaml).unwrap(),
            FileConfig::default(),
            "{yaml:?}"
        );
    }
}

#[test]
fn unknown_fields_are_named_with_their_line() {
    assert_problem("serie:\n  ttl: 5m\n", 1, "serie", "unknown field");
    assert_problem(
        "series:\n  ttl: 5m\n  maxx: 3\n",
        3,
        "series.maxx",
        "expected `ttl` or `max`",
    );
    assert_problem(
        "identity:\n  kubernetes:\n    node_name: a\n    nodename: b\n",
        4,
        "identity.kubernetes.nodename",
        "unknown field",
    );
    assert_problem(
        "service:\n  overrides:\n    - match: { comm: a }\n      service: b\n      servce: c\n",
        5,
        "service.overrides[0].servce",
        "unknown field",
    );
    assert_problem(
        "service:\n  overrides:\n    - match: { comm: a, pod: b }\n      service: c\n",
        3,
        "service.overrides[0].match",
        "`pod` is not a selector key",
    );
}

#[test]
fn bad_types_are_named_with_their_line() {
    assert_problem("series:\n  max: lots\n", 2, "series.max", "at least 1");
    assert_problem("series:\n  max: 0\n", 2, "series.max", "at least 1");
    assert_problem("series:\n  max: -3\n", 2, "series.max", "at least 1");
    assert_problem("labels:\n  pid: yes\n", 2, "labels.pid", "boolean");
    assert_problem(
        "tcp:\n  peers_per_comm: many\n",
        2,
        "tcp.peers_per_comm",
        "invalid type",
    );
    assert_problem("series: 5m\n", 1, "series", "a mapping with ttl and max");
    let problem = problem("- series\n");
    assert_eq!(problem.line, Some(1), "{problem:?}");
    assert!(problem.problem.contains("invalid type"), "{problem:?}");
}

#[test]
fn bad_durations_are_named_with_their_line() {
    assert_problem("series:\n  ttl: 5\n", 2, "series.ttl", "no unit");
    assert_problem("series:\n  max: 5\n  ttl: 5x\n", 3, "series.ttl", "`5x`");
    assert_problem(
        "identity:\n  kubernetes:\n    deleted_pod_ttl: soon\n",
        3,
        "identity.kubernetes.deleted_pod_ttl",
        "not a duration",
    );
}

#[test]
fn bad_selectors_are_named_with_their_line() {
    assert_problem(
        "selection:\n  include:\n    - comm=nginx\n    - nginx\n",
        4,
        "selection.include[1]",
        "KEY=PATTERN",
    );
    assert_problem(
        "selection:\n  exclude: [\"user=root\"]\n",
        2,
        "selection.exclude[0]",
        "`user` is not a selector key",
    );
    assert_problem(
        "selection:\n  include: [\"comm=\"]\n",
        2,
        "selection.include[0]",
        "empty",
    );
    assert_problem(
        "selection:\n  include: [\"comm=a-very-long-process-name\"]\n",
        2,
        "selection.include[0]",
        "15 bytes",
    );
}

#[test]
fn labels_are_checked() {
    assert_problem(
        "labels:\n  constant:\n    environment: prod\n    Bad-Name: x\n",
        4,
        "labels.constant",
        "`Bad-Name` is not a valid label name",
    );
    assert_problem(
        "labels:\n  constant:\n    namespace: x\n",
        3,
        "labels.constant",
        "set by the agent",
    );
    assert_problem(
        "labels:\n  constant:\n    environment: prod\n    environment: dev\n",
        4,
        "labels.constant.environment",
        "given twice",
    );
    assert_problem(
        "labels:\n  constant:\n    environment: \"\"\n",
        3,
        "labels.constant.environment",
        "empty",
    );
    assert_problem(
        "labels:\n  families:\n    monitor_build_info: [comm]\n",
        3,
        "labels.families",
        "not a workload metric family",
    );
    assert_problem(
        "labels:\n  families:\n    monitor_syscall_errors_total: [comm,\n      uid]\n",
        4,
        "labels.families.monitor_syscall_errors_total[1]",
        "`uid` is not an identity label",
    );
    assert_problem(
        "labels:\n  families:\n    monitor_syscall_errors_total: [comm, comm]\n",
        3,
        "labels.families.monitor_syscall_errors_total",
        "listed twice",
    );
    // Constant values may look like numbers or booleans: they are labels, i.e. text.
    let config = FileConfig::parse("labels:\n  constant:\n    version: 2\n").unwrap();
    assert_eq!(
        config.constant_labels,
        Some(vec![("version".into(), "2".into())])
    );
}

#[test]
fn every_workload_family_can_choose_its_labels() {
    for family in crate::series::families::family::ALL
        .iter()
        .filter(|f| f.workload)
    {
        let yaml = format!("labels:\n  families:\n    {}: []\n", family.name);
        let config = FileConfig::parse(&yaml).unwrap();
        assert_eq!(config.family_labels[family.name], []);
    }
}

#[test]
fn service_overrides_are_checked() {
    assert_problem(
        "service:\n  overrides:\n    - match: {}\n      service: x\n",
        3,
        "service.overrides[0].match",
        "at least one",
    );
    assert_problem(
        "service:\n  overrides:\n    - match: { comm: a }\n      service: \"\"\n",
        4,
        "service.overrides[0].service",
        "empty",
    );
    assert_problem(
        "service:\n  overrides:\n    - match: { comm: a }\n",
        3,
        "service.overrides[0].service",
        "missing",
    );
    assert_problem(
        "service:\n  overrides:\n    - service: a\n      match:\n        comm: a\n        comm: b\n",
        6,
        "service.overrides[0].match.comm",
        "given twice",
    );
    assert_problem(
        "service:\n  overrides:\n    - service: a\n      match:\n        namespace: shop\n        comm: this-is-far-too-long\n",
        6,
        "service.overrides[0].match.comm",
        "never matches",
    );
}

#[test]
fn kubernetes_values_are_checked() {
    assert_problem(
        "identity:\n  kubernetes:\n    api_url: 10.0.0.1:443\n",
        3,
        "identity.kubernetes.api_url",
        "https://",
    );
    assert_problem(
        "identity:\n  kubernetes:\n    node_name: \"\"\n",
        3,
        "identity.kubernetes.node_name",
        "empty",
    );
}

#[test]
fn yaml_syntax_errors_have_a_line() {
    let unclosed = problem("series:\n  ttl: [5m\n");
    assert!(unclosed.line.is_some(), "{unclosed:?}");
    let indented = problem("series:\n  ttl: 5m\n bad indent: 1\n");
    assert_eq!(indented.line, Some(3), "{indented:?}");
}

#[test]
fn load_names_the_file() {
    let path = std::env::temp_dir().join(format!("config-file-{}.yml", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let error = FileConfig::load(&path).unwrap_err().to_string();
    assert!(
        error.starts_with(&format!("config file {}: cannot read", path.display())),
        "{error}"
    );
    std::fs::write(&path, "series:\n  ttl: 5m\n  max: many\n").unwrap();
    let error = FileConfig::load(&path).unwrap_err().to_string();
    assert!(
        error.starts_with(&format!(
            "config file {}: line 3: series.max: ",
            path.display()
        )),
        "{error}"
    );
    std::fs::write(&path, FULL).unwrap();
    assert!(FileConfig::load(&path).is_ok());
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn key_lines_in_block_and_flow_style() {
    let text = "a:\n  b: 1\n  - c: 2\n  { d: 1, e: 2 }\n  bb: 3\n  b: 4\n";
    assert_eq!(key_line(text, "b", 1, 0), Some(2));
    assert_eq!(key_line(text, "b", 1, 1), Some(6));
    assert_eq!(key_line(text, "b", 3, 0), Some(6));
    assert_eq!(key_line(text, "c", 1, 0), Some(3));
    assert_eq!(key_line(text, "e", 1, 0), Some(4));
    assert_eq!(key_line(text, "z", 1, 0), None);
}
