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

/// Lints the chart (strict) and renders it with each set of values the chart offers:
/// defaults, compared object by object with the plain manifests; PodMonitor on; privileged;
/// a configuration file; web TLS with its certificate mounted; image coordinates; the
/// PrometheusRule; the dashboards; the NetworkPolicy; everything at once. Each rendering is
/// written to OUT/NAME.yaml for kubernetes-validate, and the PrometheusRule's groups to
/// OUT/prometheusrule-groups.yaml for promtool. Python, because the Helm library is
/// helm-python-sdk.
const CHART_CHECK: &str = r#"
import copy, json, os, sys, yaml, helm_python

chart_dir, manifests, podmonitor, scrape, rules_file, dashboard_file, out = sys.argv[1:8]
chart = helm_python.Chart.load(chart_dir)
renderings = {}
def render(name, values):
    lint = helm_python.lint(chart_dir, values, strict=True, namespace="monitor")
    bad = [m for m in lint["messages"] if m["severity"] >= 2] + list(lint["errors"])
    assert not bad, f"helm lint --strict with {name} values: {bad}"
    name = f"{name}-{sum(1 for n in renderings if n.startswith(name + '-'))}"
    files = chart.render(values, name="monitor-agent", namespace="monitor")
    docs = []
    for file, text in sorted(files.items()):
        if file.endswith(".yaml"):
            docs += [d for d in yaml.safe_load_all(text) if d]
    with open(os.path.join(out, name + ".yaml"), "w") as f:
        yaml.safe_dump_all(docs, f)
    renderings[name] = sorted(d["kind"] for d in docs)
    return docs

HELM_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")
def normal(docs):
    by_key = {}
    for d in copy.deepcopy(docs):
        labels = d["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/managed-by", "Helm") == "Helm", labels
        for key in HELM_LABELS:
            labels.pop(key, None)
        by_key[(d["kind"], d["metadata"]["name"])] = d
    return by_key

def daemonset(docs):
    return normal(docs)[("DaemonSet", "monitor-agent")]

def container_of(ds):
    return ds["spec"]["template"]["spec"]["containers"][0]

default = render("default", {})
plain = [d for d in yaml.safe_load_all(open(manifests)) if d]
expected = normal([d for d in plain if d["kind"] != "Namespace"])
got = normal(default)
assert set(got) == set(expected), f"objects differ: chart {sorted(got)} vs manifests {sorted(expected)}"
for key in expected:
    assert got[key] == expected[key], f"{key} differs:\nchart:     {json.dumps(got[key], sort_keys=True)}\nmanifests: {json.dumps(expected[key], sort_keys=True)}"

with_pm = normal(render("podmonitor", {"podMonitor": {"enabled": True}}))
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

# What the issue asks of the DaemonSet, and what the container and privilege tests verified.
spec = pod["spec"]
assert spec["hostPID"] is True
assert spec["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}, spec.get("securityContext")
namespace = [d for d in plain if d["kind"] == "Namespace"][0]
assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged", "hostPID needs the privileged Pod Security level"
assert {"operator": "Exists"} in spec["tolerations"]
assert "volumes" not in spec and "volumeMounts" not in container, "no host mounts are needed"
sc = container["securityContext"]
assert sc["privileged"] is False and sc["capabilities"] == {"drop": ["ALL"], "add": ["BPF", "PERFMON", "SYS_PTRACE", "DAC_READ_SEARCH"]}, sc
assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
    assert container[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}, probe
assert set(container["resources"]) == {"requests", "limits"}
assert container["image"] == "monitor-agent:0.1.0", container["image"]
# Only pods are read (a field-selected list and watch): no other resource is granted.
rbac = expected[("ClusterRole", "monitor-agent")]["rules"]
assert rbac == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}], rbac
assert "annotations" not in pod["metadata"], "no checksum without a configuration"

# Old kernels: privileged instead of capabilities.
priv = daemonset(render("privileged", {"securityContext": {"privileged": True}}))
psc = container_of(priv)["securityContext"]
assert psc["privileged"] is True and "capabilities" not in psc and "allowPrivilegeEscalation" not in psc

# A configuration file: a ConfigMap holding it, mounted where --config.file points, and a
# checksum that rolls the pods when (and only when) the configuration changes.
config = {"series": {"max": 20000}, "selection": {"exclude": ["comm=kworker*"]}}
def with_config(config):
    docs = normal(render("config", {"config": config}))
    cm = docs[("ConfigMap", "monitor-agent")]
    ds = docs[("DaemonSet", "monitor-agent")]
    return cm, ds, ds["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
cm, cds, checksum = with_config(config)
assert yaml.safe_load(cm["data"]["config.yaml"]) == config, cm
c = container_of(cds)
assert "--config.file=/etc/monitor-agent/config.yaml" in c["args"], c["args"]
mount = [m for m in c["volumeMounts"] if m["mountPath"] == "/etc/monitor-agent/config.yaml"]
assert len(mount) == 1 and mount[0]["subPath"] == "config.yaml", c["volumeMounts"]
volume = [v for v in cds["spec"]["template"]["spec"]["volumes"] if v["name"] == mount[0]["name"]]
assert volume == [{"name": mount[0]["name"], "configMap": {"name": "monitor-agent"}}], volume
assert with_config(copy.deepcopy(config))[2] == checksum, "same configuration, same checksum"
changed = copy.deepcopy(config); changed["series"]["max"] = 30000
assert with_config(changed)[2] != checksum, "a changed configuration must change the checksum"

# Web TLS: the web configuration in a Secret, the certificate from extra volumes, an extra
# environment variable, and probes (and the PodMonitor) speaking HTTPS.
tls = {
    "webConfig": {"tls_server_config": {"cert_file": "/etc/monitor-agent/tls/tls.crt", "key_file": "/etc/monitor-agent/tls/tls.key"}},
    "volumes": [{"name": "tls", "secret": {"secretName": "monitor-agent-tls"}}],
    "volumeMounts": [{"name": "tls", "mountPath": "/etc/monitor-agent/tls", "readOnly": True}],
    "env": [{"name": "MONITOR_LOG_LEVEL", "value": "debug"}],
    "podMonitor": {"enabled": True, "tlsConfig": {"serverName": "monitor-agent", "ca": {"secret": {"name": "monitor-agent-tls", "key": "ca.crt"}}}},
}
tdocs = normal(render("tls", tls))
tds = tdocs[("DaemonSet", "monitor-agent")]
c = container_of(tds)
for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
    assert c[probe]["httpGet"] == {"path": "/healthz", "port": "metrics", "scheme": "HTTPS"}, (probe, c[probe])
assert "--web.config.file=/etc/monitor-agent/web/web.yml" in c["args"], c["args"]
secret = tdocs[("Secret", "monitor-agent-web")]
assert yaml.safe_load(secret["stringData"]["web.yml"]) == tls["webConfig"], secret
volumes = {v["name"]: v for v in tds["spec"]["template"]["spec"]["volumes"]}
mounts = {m["name"]: m for m in c["volumeMounts"]}
assert volumes["web-config"]["secret"]["secretName"] == "monitor-agent-web" and mounts["web-config"]["mountPath"] == "/etc/monitor-agent/web"
assert volumes["tls"] == tls["volumes"][0] and mounts["tls"] == tls["volumeMounts"][0]
assert c["env"][-1] == tls["env"][0] and c["env"][0]["name"] == "MONITOR_KUBERNETES_NODE_NAME", c["env"]
assert "checksum/web-config" in tds["spec"]["template"]["metadata"]["annotations"]
endpoint = tdocs[("PodMonitor", "monitor-agent")]["spec"]["podMetricsEndpoints"][0]
assert endpoint["scheme"] == "https" and endpoint["tlsConfig"] == tls["podMonitor"]["tlsConfig"], endpoint
# Basic auth alone keeps plain HTTP probes (/healthz needs no credentials).
auth = container_of(daemonset(render("basic-auth", {"webConfig": {"basic_auth_users": {"prometheus": "$2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG"}}})))
assert auth["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}, auth["livenessProbe"]

# Image coordinates.
def image(values):
    return container_of(daemonset(render("image", {"image": values})))["image"]
assert image({"registry": "registry.example.com/team", "tag": "1.2.3"}) == "registry.example.com/team/monitor-agent:1.2.3"
digest = "sha256:" + "0123456789abcdef" * 4
assert image({"registry": "registry.example.com", "repository": "obs/agent", "digest": digest}) == f"registry.example.com/obs/agent:0.1.0@{digest}"
assert image({"repository": "agent", "tag": "2.0", "digest": digest}) == f"agent:2.0@{digest}"

# The PrometheusRule carries the shipped rule file's groups, exactly.
rule = normal(render("prometheusrule", {"prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}}}))[("PrometheusRule", "monitor-agent")]
shipped_rules = yaml.safe_load(open(rules_file))
assert rule["spec"]["groups"] == shipped_rules["groups"], "PrometheusRule groups differ from deploy/prometheus/golden-signals.rules.yaml"
assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
with open(os.path.join(out, "prometheusrule-groups.yaml"), "w") as f:
    yaml.safe_dump({"groups": rule["spec"]["groups"]}, f)

# The dashboard, labelled for the Grafana sidecar.
board = normal(render("dashboards", {"dashboards": {"enabled": True}}))[("ConfigMap", "monitor-agent-dashboards")]
assert board["metadata"]["labels"]["grafana_dashboard"] == "1", board["metadata"]["labels"]
assert list(board["data"]) == ["golden-signals.json"]
assert json.loads(board["data"]["golden-signals.json"]) == json.load(open(dashboard_file)), "dashboard differs from deploy/grafana/golden-signals.json"

# The NetworkPolicy: the agent's pods, ingress on the metrics port only.
def policy(values):
    return normal(render("networkpolicy", {"networkPolicy": values}))[("NetworkPolicy", "monitor-agent")]["spec"]
np = policy({"enabled": True})
assert np["podSelector"]["matchLabels"] == ds["spec"]["selector"]["matchLabels"] and np["podSelector"]["matchLabels"].items() <= pod_labels.items(), np
assert np["policyTypes"] == ["Ingress"] and "egress" not in np, np
assert np["ingress"] == [{"ports": [{"port": "metrics", "protocol": "TCP"}]}], np["ingress"]
assert "metrics" in ports
peers = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
assert policy({"enabled": True, "from": peers})["ingress"] == [{"ports": [{"port": "metrics", "protocol": "TCP"}], "from": peers}]

# Everything at once.
everything = copy.deepcopy(tls)
everything.update({"config": config, "image": {"registry": "registry.example.com", "digest": digest},
                   "prometheusRule": {"enabled": True}, "dashboards": {"enabled": True},
                   "networkPolicy": {"enabled": True, "from": peers}})
render("everything", everything)
assert os.path.exists(os.path.join(out, "everything-0.yaml"))
print("chart ok:", len(default), "objects")
print("renderings:", json.dumps(renderings, sort_keys=True))
"#;

/// Objects kubernetes-validate has no schema for (it warns and passes them).
const CUSTOM_KINDS: [&str; 2] = ["PodMonitor", "PrometheusRule"];

#[test]
fn helm_chart_lints_renders_the_manifests_and_validates() {
    let dir = TempDir::new("deploy-helm");
    let output = run(Command::new(python()).arg("-c").arg(CHART_CHECK).args([
        deploy("helm/monitor-agent"),
        deploy("kubernetes/monitor-agent.yaml"),
        deploy("kubernetes/podmonitor.yaml"),
        deploy("prometheus/kubernetes-scrape.yaml"),
        deploy("prometheus/golden-signals.rules.yaml"),
        deploy("grafana/golden-signals.json"),
        dir.path().to_owned(),
    ]));
    let log = text(&output);
    assert!(output.status.success(), "chart check failed:\n{log}");
    assert!(log.contains("chart ok: 5 objects"), "{log}");
    let renderings: std::collections::BTreeMap<String, Vec<String>> = serde_json::from_str(
        log.lines()
            .find_map(|line| line.strip_prefix("renderings: "))
            .expect("the renderings' list"),
    )
    .unwrap();
    // Each set of values, some in several variants (three configurations, three images, …).
    let names: BTreeSet<&str> = renderings
        .keys()
        .map(|name| name.rsplit_once('-').unwrap().0)
        .collect();
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        [
            "basic-auth",
            "config",
            "dashboards",
            "default",
            "everything",
            "image",
            "networkpolicy",
            "podmonitor",
            "privileged",
            "prometheusrule",
            "tls"
        ]
    );
    assert_eq!(renderings.len(), 16, "{renderings:?}");
    assert_eq!(
        renderings["everything-0"],
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "ConfigMap",
            "DaemonSet",
            "NetworkPolicy",
            "PodMonitor",
            "PrometheusRule",
            "Secret",
            "Service",
            "ServiceAccount"
        ]
    );
    // Every rendering, strictly, for every Kubernetes version: each object with a schema
    // passes, and only the Prometheus Operator's own kinds go unchecked here.
    for (name, kinds) in &renderings {
        let file = dir.path().join(format!("{name}.yaml"));
        let checked = kinds
            .iter()
            .filter(|kind| !CUSTOM_KINDS.contains(&kind.as_str()))
            .count();
        for version in KUBE_VERSIONS {
            let output = kubernetes_validate(version, &[&file]);
            let log = text(&output);
            assert!(
                output.status.success(),
                "rendering {name}, -k {version}:\n{log}"
            );
            assert_eq!(
                log.matches(" passed for resource ").count(),
                checked,
                "rendering {name}, -k {version}:\n{log}"
            );
            assert_eq!(
                log.matches("Couldn't find schema for kind").count(),
                kinds.len() - checked,
                "rendering {name}, -k {version}:\n{log}"
            );
        }
    }
    // The PrometheusRule's rules are valid rules.
    let promtool = require_program("promtool", "prometheus");
    let output = run(Command::new(&promtool)
        .args(["check", "rules"])
        .arg(dir.path().join("prometheusrule-groups.yaml")));
    assert!(
        output.status.success(),
        "promtool check rules (PrometheusRule):\n{}",
        text(&output)
    );
}

/// The chart's files/ are links to the shipped rule file and dashboard, so they cannot drift.
#[test]
fn chart_files_link_to_the_shipped_rules_and_dashboard() {
    for (link, target) in [
        (
            "helm/monitor-agent/files/golden-signals.rules.yaml",
            "prometheus/golden-signals.rules.yaml",
        ),
        (
            "helm/monitor-agent/files/golden-signals.json",
            "grafana/golden-signals.json",
        ),
    ] {
        let link = deploy(link);
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink(),
            "{} is not a link",
            link.display()
        );
        assert_eq!(
            link.canonicalize().unwrap(),
            deploy(target).canonicalize().unwrap()
        );
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
    // "exposure" 0 (locked down) … 10 (unprotected); 2.2 now (1.8 before CAP_SYS_PTRACE and
    // CAP_DAC_READ_SEARCH, which /proc of other users' processes needs). --threshold (tenths)
    // fails above it.
    let output = run(Command::new(&analyze)
        .args(["security", "--offline=yes", "--threshold=25"])
        .arg(&unit));
    assert!(output.status.success(), "security:\n{}", text(&output));
    assert!(
        text(&output).contains("Overall exposure level for monitor-agent.service: 2."),
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

/// What the unit grants, reproduced without systemd: an unprivileged user, only the unit's
/// capabilities (ambient), no_new_privs. The agent must load its probes and count a
/// workload exactly, and every syscall it makes (strace) must pass the unit's filter.
#[test]
fn systemd_unit_identity_and_syscall_filter_still_load_the_probes() {
    let analyze = require_program("systemd-analyze", "systemd");
    let strace = require_program("strace", "strace");
    let setpriv = require_program("setpriv", "util-linux");
    let unit = std::fs::read_to_string(deploy("systemd/monitor-agent.service")).unwrap();
    for line in ["DynamicUser=yes", "NoNewPrivileges=yes"] {
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
        .args(
            ["--inh-caps", "--ambient-caps", "--bounding-set"].map(|option| {
                format!(
                    "{option}={}",
                    tests::shipped::setpriv_set(&tests::shipped::unit_capabilities())
                )
            }),
        )
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

#[test]
fn prometheus_rule_files_check_and_pass_their_unit_tests() {
    let promtool = require_program("promtool", "prometheus");
    // The shipped SLO rules are what the agent's generator makes of the shipped SLO file
    // (byte for byte, as an unprivileged user: cli.rs); they are checked here with the rest.
    let dir = TempDir::new("deploy-rules");
    let generated = dir.path().join("slo-example.rules.yaml");
    let output = run(Command::new(agent_bin())
        .current_dir(workspace_root())
        .args(["slo", "deploy/slo/example.yaml", "--output"])
        .arg(&generated));
    assert!(
        output.status.success(),
        "monitor-agent slo:\n{}",
        text(&output)
    );
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
