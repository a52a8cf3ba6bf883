//! What ships in deploy/: Kubernetes manifests and the Helm chart (validated offline, and
//! rendering the same objects), the systemd unit (verified, its hardening scored, and its
//! identity and syscall filter shown to still load the probes), and every Prometheus rule
//! file (checked, and unit-tested with promtool on synthetic series).
use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::Duration,
};

use tests::{
    TempDir, agent_bin, eventually, free_port, http_get, require_program, run_as, unique_comm,
    workspace_root,
};

/// Kubernetes versions the manifests and the rendered chart must be valid for: the oldest
/// and newest schemas kubernetes-validate ships, and one between.
const KUBE_VERSIONS: [&str; 3] = ["1.25.0", "1.31.0", "1.37.0"];

fn deploy(path: &str) -> PathBuf {
    workspace_root().join("deploy").join(path)
}

fn run(command: &mut Command) -> Output {
    let shown = format!("{command:?}");
    command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|err| panic!("{shown}: {err}"))
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn python() -> PathBuf {
    require_program("python3", "python3")
}

fn kubernetes_validate(version: &str, files: &[&Path]) -> Output {
    run(Command::new(python())
        .args(["-m", "kubernetes_validate", "--strict", "-k", version])
        .args(files))
}

#[test]
fn kubernetes_manifests_pass_strict_schema_validation() {
    let manifests = deploy("kubernetes/monitor-agent.yaml");
    for version in KUBE_VERSIONS {
        let output = kubernetes_validate(version, &[&manifests]);
        let log = text(&output);
        assert!(
            output.status.success(),
            "kubernetes-validate -k {version}:\n{log}"
        );
        for object in [
            "namespace/monitor",
            "serviceaccount/monitor-agent",
            "clusterrole/monitor-agent",
            "clusterrolebinding/monitor-agent",
            "service/monitor-agent",
            "daemonset/monitor-agent",
        ] {
            assert!(
                log.contains(&format!("passed for resource {object}")),
                "{object} not validated:\n{log}"
            );
        }
    }
    // The validation is strict: an unknown field fails it.
    let dir = TempDir::new("deploy-kv");
    let broken = dir.path().join("broken.yaml");
    let original = std::fs::read_to_string(&manifests).unwrap();
    std::fs::write(
        &broken,
        original.replace("hostPID: true", "hostPID: true\n      hostPIDs: true"),
    )
    .unwrap();
    let output = kubernetes_validate("1.31.0", &[&broken]);
    assert!(
        !output.status.success(),
        "a misspelt field passed:\n{}",
        text(&output)
    );
}

/// Lints the chart, renders it (defaults; PodMonitor on; privileged) and compares the objects
/// with the plain manifests. Python, because the Helm library is helm-python-sdk.
const CHART_CHECK: &str = r#"
import json, sys, yaml, helm_python

chart_dir, manifests, podmonitor, scrape, out = sys.argv[1:6]
lint = helm_python.lint(chart_dir, strict=True)
bad = [m for m in lint["messages"] if m["severity"] >= 2] + list(lint["errors"])
assert not bad, f"helm lint: {bad}"

chart = helm_python.Chart.load(chart_dir)
def render(values):
    files = chart.render(values, name="monitor-agent", namespace="monitor")
    docs = []
    for name, text in sorted(files.items()):
        if name.endswith(".yaml"):
            docs += [d for d in yaml.safe_load_all(text) if d]
    return docs

HELM_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")
def normal(docs):
    by_key = {}
    for d in docs:
        labels = d["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/managed-by", "Helm") == "Helm", labels
        for key in HELM_LABELS:
            labels.pop(key, None)
        by_key[(d["kind"], d["metadata"]["name"])] = d
    return by_key

default = render({})
with open(out, "w") as f:
    yaml.safe_dump_all(default, f)
plain = [d for d in yaml.safe_load_all(open(manifests)) if d]
expected = normal([d for d in plain if d["kind"] != "Namespace"])
got = normal(default)
assert set(got) == set(expected), f"objects differ: chart {sorted(got)} vs manifests {sorted(expected)}"
for key in expected:
    assert got[key] == expected[key], f"{key} differs:\nchart:     {json.dumps(got[key], sort_keys=True)}\nmanifests: {json.dumps(expected[key], sort_keys=True)}"

with_pm = normal(render({"podMonitor": {"enabled": True}}))
pm = normal([yaml.safe_load(open(podmonitor))])
assert with_pm[("PodMonitor", "monitor-agent")] == pm[("PodMonitor", "monitor-agent")], "PodMonitor differs"

# The PodMonitor and the Service find the pods and their port.
ds = expected[("DaemonSet", "monitor-agent")]
pod = ds["spec"]["template"]
pod_labels = pod["metadata"]["labels"]
container = pod["spec"]["containers"][0]
ports = {p["name"]: p["containerPort"] for p in container["ports"]}
pm_spec = pm[("PodMonitor", "monitor-agent")]["spec"]
assert pm_spec["selector"]["matchLabels"].items() <= pod_labels.items()
assert all(e["port"] in ports for e in pm_spec["podMetricsEndpoints"])
# The workload's namespace and pod labels win over the agent pod's target labels, and the
# job is the plain name the shipped alerts expect.
assert all(e.get("honorLabels") is True for e in pm_spec["podMetricsEndpoints"]), pm_spec
assert pm_spec.get("jobLabel") == "app.kubernetes.io/name" and pod_labels["app.kubernetes.io/name"] == "monitor-agent", pm_spec
sd = yaml.safe_load(open(scrape))
assert len(sd) == 1 and sd[0]["honor_labels"] is True, sd
svc = expected[("Service", "monitor-agent")]["spec"]
assert svc["selector"].items() <= pod_labels.items() and ds["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
assert svc["ports"][0]["targetPort"] in ports

# What the issue asks of the DaemonSet, and what the container test verified.
spec = pod["spec"]
assert spec["hostPID"] is True
assert {"operator": "Exists"} in spec["tolerations"]
assert "volumes" not in spec and "volumeMounts" not in container, "no host mounts are needed"
sc = container["securityContext"]
assert sc["privileged"] is False and sc["capabilities"] == {"drop": ["ALL"], "add": ["BPF", "PERFMON"]}
assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
    assert container[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}, probe
assert set(container["resources"]) == {"requests", "limits"}
rbac = expected[("ClusterRole", "monitor-agent")]["rules"]
assert {"apiGroups": [""], "resources": ["pods", "namespaces"], "verbs": ["get", "list", "watch"]} in rbac

# Old kernels: privileged instead of capabilities.
priv = normal(render({"securityContext": {"privileged": True}}))[("DaemonSet", "monitor-agent")]
psc = priv["spec"]["template"]["spec"]["containers"][0]["securityContext"]
assert psc["privileged"] is True and "capabilities" not in psc and "allowPrivilegeEscalation" not in psc
print("chart ok:", len(default), "objects")
"#;

#[test]
fn helm_chart_lints_renders_the_manifests_and_validates() {
    let dir = TempDir::new("deploy-helm");
    let rendered = dir.path().join("rendered.yaml");
    let output = run(Command::new(python()).arg("-c").arg(CHART_CHECK).args([
        deploy("helm/monitor-agent"),
        deploy("kubernetes/monitor-agent.yaml"),
        deploy("kubernetes/podmonitor.yaml"),
        deploy("prometheus/kubernetes-scrape.yaml"),
        rendered.clone(),
    ]));
    assert!(
        output.status.success(),
        "chart check failed:\n{}",
        text(&output)
    );
    assert!(
        text(&output).contains("chart ok: 5 objects"),
        "{}",
        text(&output)
    );
    for version in KUBE_VERSIONS {
        let output = kubernetes_validate(version, &[&rendered]);
        let log = text(&output);
        assert!(
            output.status.success(),
            "rendered chart, -k {version}:\n{log}"
        );
        assert_eq!(log.matches(" passed for resource ").count(), 5, "{log}");
    }
}

/// The unit with ExecStart pointing at the agent under test (verify checks the binary).
fn unit_for_test(dir: &Path) -> PathBuf {
    let unit = std::fs::read_to_string(deploy("systemd/monitor-agent.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/monitor-agent "));
    let path = dir.join("monitor-agent.service");
    let agent = agent_bin().canonicalize().unwrap();
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/monitor-agent", agent.to_str().unwrap()),
    )
    .unwrap();
    path
}

#[test]
fn systemd_unit_verifies_and_scores_as_hardened() {
    let analyze = require_program("systemd-analyze", "systemd");
    let dir = TempDir::new("deploy-unit");
    let unit = unit_for_test(dir.path());
    let output = run(Command::new(&analyze).arg("verify").arg(&unit));
    assert!(
        output.status.success() && text(&output).trim().is_empty(),
        "verify:\n{}",
        text(&output)
    );
    // "exposure" 0 (locked down) … 10 (unprotected); 1.8 now. --threshold (tenths) fails above it.
    let output = run(Command::new(&analyze)
        .args(["security", "--offline=yes", "--threshold=25"])
        .arg(&unit));
    assert!(output.status.success(), "security:\n{}", text(&output));
    assert!(
        text(&output).contains("Overall exposure level for monitor-agent.service: 1."),
        "{}",
        text(&output)
    );
}

/// The syscalls the unit's SystemCallFilter= lines allow, expanded by systemd-analyze.
fn allowed_syscalls(analyze: &Path, unit: &str) -> BTreeSet<String> {
    let listing =
        String::from_utf8(run(Command::new(analyze).arg("syscall-filter")).stdout).unwrap();
    let mut groups: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let mut current = None;
    for line in listing.lines() {
        if line.starts_with('@') {
            current = Some(line.trim().to_owned());
            groups.insert(line.trim().to_owned(), Vec::new());
        } else if let (Some(group), word) = (&current, line.trim()) {
            if !word.is_empty() && !word.starts_with('#') {
                groups.get_mut(group).unwrap().push(word.to_owned());
            }
        }
    }
    fn expand(
        name: &str,
        groups: &std::collections::BTreeMap<String, Vec<String>>,
    ) -> BTreeSet<String> {
        match groups.get(name) {
            Some(members) => members.iter().flat_map(|m| expand(m, groups)).collect(),
            None => BTreeSet::from([name.to_owned()]),
        }
    }
    let mut allowed = BTreeSet::new();
    let mut lines = 0;
    for line in unit
        .lines()
        .filter_map(|l| l.strip_prefix("SystemCallFilter="))
    {
        lines += 1;
        let (deny, names) = match line.strip_prefix('~') {
            Some(rest) => (true, rest),
            None => (false, line),
        };
        assert!(
            lines > 1 || !deny,
            "the first SystemCallFilter= line must be an allow list"
        );
        for name in names.split_whitespace() {
            for syscall in expand(name, &groups) {
                if deny {
                    allowed.remove(&syscall)
                } else {
                    allowed.insert(syscall)
                };
            }
        }
    }
    assert!(lines >= 1, "no SystemCallFilter= in the unit");
    allowed
}

/// What the unit grants, reproduced without systemd: an unprivileged user, only CAP_BPF +
/// CAP_PERFMON (ambient), no_new_privs. The agent must load its probes and count a
/// workload exactly, and every syscall it makes (strace) must pass the unit's filter.
#[test]
fn systemd_unit_identity_and_syscall_filter_still_load_the_probes() {
    let analyze = require_program("systemd-analyze", "systemd");
    let strace = require_program("strace", "strace");
    let setpriv = require_program("setpriv", "util-linux");
    let unit = std::fs::read_to_string(deploy("systemd/monitor-agent.service")).unwrap();
    for line in [
        "DynamicUser=yes",
        "AmbientCapabilities=CAP_BPF CAP_PERFMON",
        "CapabilityBoundingSet=CAP_BPF CAP_PERFMON",
        "NoNewPrivileges=yes",
    ] {
        assert!(
            unit.lines().any(|l| l == line),
            "the unit no longer says {line}: update this test"
        );
    }
    let dir = TempDir::new("deploy-strace");
    let trace = dir.path().join("agent.strace");
    let agent_log = dir.path().join("agent.log");
    let address = format!("127.0.0.1:{}", free_port());
    let agent = agent_bin().canonicalize().unwrap();
    // strace shields itself from SIGTERM while its command runs: the agent and strace get
    // their own process group, signalled as a whole (and SIGKILLed if the test fails).
    let mut child = std::os::unix::process::CommandExt::process_group(&mut Command::new(strace), 0)
        .args(["-f", "-qq", "-o"])
        .arg(&trace)
        .arg(setpriv)
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--no-new-privs",
        ])
        .args([
            "--inh-caps=-all,+bpf,+perfmon",
            "--ambient-caps=-all,+bpf,+perfmon",
            "--bounding-set=-all,+bpf,+perfmon",
        ])
        .arg(&agent)
        .args(["--web.listen-address", &address])
        .stdout(Stdio::null())
        // A file, not a pipe nobody drains: a full pipe would block the agent's logging.
        .stderr(std::fs::File::create(&agent_log).unwrap())
        .spawn()
        .expect("strace");
    let group = ProcessGroup(child.id() as i32);
    let address = address.parse().unwrap();
    eventually(
        Duration::from_secs(30),
        "the unprivileged agent to be healthy",
        || {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(&agent_log).unwrap_or_default();
                panic!("agent exited ({status}):\n{log}");
            }
            matches!(http_get(address, "/healthz"), Ok((200, ref body)) if body.trim() == "ok")
                .then_some(())
        },
    );
    let comm = unique_comm("unitwl");
    run_as(
        &comm,
        env!("CARGO_BIN_EXE_gt-workload").as_ref(),
        &["7", "3", "0", "0"].map(String::from),
    );
    let errors = |body: &str, syscall: &str, errno: &str| {
        tests::Scrape::parse(body).value(
            "monitor_syscall_errors_total",
            &[("comm", &comm), ("syscall", syscall), ("errno", errno)],
        )
    };
    // Every syscall of the agent is traced, so a scrape is slow; allow it time, and say
    // what was seen if the count never shows.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let body = loop {
        std::thread::sleep(Duration::from_millis(100));
        let last = http_get(address, "/metrics").map(|(_, body)| body);
        if let Ok(body) = &last {
            if errors(body, "close", "EBADF") == Some(3.0) {
                break body.clone();
            }
        }
        if std::time::Instant::now() >= deadline {
            let seen = match &last {
                Ok(body) => format!(
                    "its series: {:#?}",
                    body.lines()
                        .filter(|l| l.contains(comm.as_str()))
                        .collect::<Vec<_>>()
                ),
                Err(err) => format!("the last scrape failed: {err}"),
            };
            let alive = matches!(child.try_wait(), Ok(None));
            let log = std::fs::read_to_string(&agent_log).unwrap_or_default();
            panic!("no 3 close(-1) EBADF for {comm} in 30 s; {seen}; agent alive: {alive}\n{log}");
        }
    };
    assert_eq!(errors(&body, "openat", "ENOENT"), Some(7.0));
    group.signal(libc::SIGTERM);
    let status =
        tests::wait_timeout(&mut child, Duration::from_secs(20)).expect("agent did not stop");
    assert!(status.success(), "agent under setpriv exited with {status}");
    drop(group);

    let trace = std::fs::read_to_string(&trace).unwrap();
    let agent_path = agent.to_str().unwrap();
    let start = trace
        .find(&format!("execve(\"{agent_path}\""))
        .expect("the agent's execve in the trace");
    let used: BTreeSet<String> = trace[start..]
        .lines()
        .filter_map(|line| {
            let call = line.split_once(' ')?.1.trim_start();
            let name: String = call
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            (!name.is_empty() && call[name.len()..].starts_with('(')).then_some(name)
        })
        .collect();
    assert!(used.contains("bpf"), "no bpf(2) in the trace: {used:?}");
    let allowed = allowed_syscalls(&analyze, &unit);
    let refused: Vec<&String> = used.iter().filter(|s| !allowed.contains(*s)).collect();
    assert!(
        refused.is_empty(),
        "the unit's SystemCallFilter would refuse {refused:?} (used: {used:?})"
    );
}

/// A process group of ours, SIGKILLed on drop.
struct ProcessGroup(i32);

impl ProcessGroup {
    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on a process group this test created.
        unsafe { libc::kill(-self.0, signal) };
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.signal(libc::SIGKILL);
    }
}

fn xtask_bin() -> PathBuf {
    // `cargo xtask test` builds xtask into the same profile directory as the agent.
    let bin = agent_bin().with_file_name("xtask");
    assert!(
        bin.exists(),
        "{} missing: run the tests with `cargo xtask test`",
        bin.display()
    );
    bin
}

#[test]
fn prometheus_rule_files_check_and_pass_their_unit_tests() {
    let promtool = require_program("promtool", "prometheus");
    // The shipped SLO rules are what the generator makes of the shipped SLO file.
    let dir = TempDir::new("deploy-rules");
    let generated = dir.path().join("slo-example.rules.yaml");
    let output = run(Command::new(xtask_bin())
        .current_dir(workspace_root())
        .args(["slo", "deploy/slo/example.yaml", "--output"])
        .arg(&generated));
    assert!(output.status.success(), "xtask slo:\n{}", text(&output));
    let shipped = std::fs::read_to_string(deploy("prometheus/slo-example.rules.yaml")).unwrap();
    assert!(
        std::fs::read_to_string(&generated).unwrap() == shipped,
        "deploy/prometheus/slo-example.rules.yaml is stale: run `cargo xtask slo deploy/slo/example.yaml --output deploy/prometheus/slo-example.rules.yaml`"
    );

    let mut rule_files: Vec<PathBuf> = std::fs::read_dir(deploy("prometheus"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_str().unwrap().ends_with(".rules.yaml"))
        .collect();
    rule_files.sort();
    assert!(rule_files.len() >= 2, "{rule_files:?}");
    rule_files.push(generated);
    for file in &rule_files {
        let output = run(Command::new(&promtool).args(["check", "rules"]).arg(file));
        assert!(
            output.status.success(),
            "promtool check rules {}:\n{}",
            file.display(),
            text(&output)
        );
    }
    let output = run(Command::new(&promtool)
        .args(["check", "config"])
        .arg(deploy("prometheus/prometheus.yml")));
    assert!(
        output.status.success(),
        "promtool check config:\n{}",
        text(&output)
    );

    let mut unit_tests: Vec<PathBuf> = std::fs::read_dir(deploy("prometheus/tests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    unit_tests.sort();
    assert_eq!(unit_tests.len(), 2, "{unit_tests:?}");
    for file in &unit_tests {
        let output = run(Command::new(&promtool).args(["test", "rules"]).arg(file));
        assert!(
            output.status.success() && text(&output).contains("SUCCESS"),
            "promtool test rules {}:\n{}",
            file.display(),
            text(&output)
        );
    }
}
