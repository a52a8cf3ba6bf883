//! Prometheus names to OpenTelemetry ones: a family that has an OpenTelemetry
//! semantic-convention metric is pushed under that name (`http_server_request_duration_seconds`
//! is `http.server.request.duration`), every other family under its Prometheus name; labels
//! with a semantic-convention attribute are pushed under the attribute's name, the rest as
//! they are. One table each, so the README's mapping is this file.

/// Semantic-convention metrics (all durations, in seconds). A family maps to one when its
/// Prometheus name is the convention's with `.` as `_` and `_seconds` added, as
/// OpenTelemetry's own Prometheus exporter names them; families to come (database, DNS)
/// follow the same rule.
const METRICS: &[&str] = &[
    "http.server.request.duration",
    "http.client.request.duration",
    "rpc.server.call.duration",
    "rpc.client.call.duration",
    "db.client.operation.duration",
    "dns.lookup.duration",
];

/// Labels with a semantic-convention attribute: (label, attribute, the value is an int).
const ATTRIBUTES: &[(&str, &str, bool)] = &[
    ("http_request_method", "http.request.method", false),
    (
        "http_response_status_code",
        "http.response.status_code",
        true,
    ),
    ("http_route", "http.route", false),
    ("url_scheme", "url.scheme", false),
    (
        "network_protocol_version",
        "network.protocol.version",
        false,
    ),
    ("rpc_system_name", "rpc.system.name", false),
    ("rpc_method", "rpc.method", false),
    (
        "rpc_response_status_code",
        "rpc.response.status_code",
        false,
    ),
    ("server_address", "server.address", false),
    ("server_port", "server.port", true),
    ("db_system_name", "db.system.name", false),
    ("db_operation_name", "db.operation.name", false),
    ("db_collection_name", "db.collection.name", false),
    ("db_namespace", "db.namespace", false),
    ("dns_question_name", "dns.question.name", false),
    ("error_type", "error.type", false),
    // Who the process is.
    ("comm", "process.executable.name", false),
    ("pid", "process.pid", true),
    ("container", "container.name", false),
    ("pod", "k8s.pod.name", false),
    ("namespace", "k8s.namespace.name", false),
    ("service", "service.name", false),
];

/// The name a family is pushed under, and its unit (UCUM, as OTLP writes units).
pub fn metric(family: &str) -> (String, &'static str) {
    for convention in METRICS {
        let prometheus = format!("{}_seconds", convention.replace('.', "_"));
        if family == prometheus {
            return ((*convention).to_owned(), "s");
        }
    }
    (family.to_owned(), unit(family))
}

/// The unit a Prometheus name's suffix says.
fn unit(family: &str) -> &'static str {
    let base = family.strip_suffix("_total").unwrap_or(family);
    if base.ends_with("_seconds") {
        "s"
    } else if base.ends_with("_bytes") {
        "By"
    } else if base.ends_with("_ratio") {
        "1"
    } else {
        ""
    }
}

/// A data point attribute's value.
#[derive(Clone, Debug, PartialEq)]
pub enum AttributeValue {
    String(String),
    Int(i64),
}

/// The attribute a label is pushed as: its semantic-convention name and type where there is
/// one (a value that is not a number stays a string), else the label as it is.
pub fn attribute(label: &str, value: &str) -> (String, AttributeValue) {
    match ATTRIBUTES.iter().find(|(name, _, _)| *name == label) {
        Some(&(_, attribute, int)) => {
            let value = match (int, value.parse::<i64>()) {
                (true, Ok(number)) => AttributeValue::Int(number),
                _ => AttributeValue::String(value.to_owned()),
            };
            (attribute.to_owned(), value)
        }
        None => (label.to_owned(), AttributeValue::String(value.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conventions_have_their_names_and_others_keep_theirs() {
        assert_eq!(
            metric("http_server_request_duration_seconds"),
            ("http.server.request.duration".to_owned(), "s")
        );
        assert_eq!(
            metric("http_client_request_duration_seconds"),
            ("http.client.request.duration".to_owned(), "s")
        );
        assert_eq!(
            metric("db_client_operation_duration_seconds"),
            ("db.client.operation.duration".to_owned(), "s")
        );
        assert_eq!(
            metric("dns_lookup_duration_seconds"),
            ("dns.lookup.duration".to_owned(), "s")
        );
        assert_eq!(
            metric("monitor_syscall_errors_total"),
            ("monitor_syscall_errors_total".to_owned(), "")
        );
        assert_eq!(metric("monitor_cpu_seconds_total").1, "s");
        assert_eq!(metric("monitor_network_bytes_total").1, "By");
        assert_eq!(metric("monitor_fd_utilization_ratio").1, "1");
    }

    #[test]
    fn labels_with_a_convention_are_renamed_and_typed() {
        assert_eq!(
            attribute("http_response_status_code", "404"),
            (
                "http.response.status_code".to_owned(),
                AttributeValue::Int(404)
            )
        );
        assert_eq!(
            attribute("server_port", "other"),
            (
                "server.port".to_owned(),
                AttributeValue::String("other".into())
            )
        );
        assert_eq!(
            attribute("http_request_method", "GET"),
            (
                "http.request.method".to_owned(),
                AttributeValue::String("GET".into())
            )
        );
        assert_eq!(
            attribute("syscall", "openat"),
            (
                "syscall".to_owned(),
                AttributeValue::String("openat".into())
            )
        );
    }
}
