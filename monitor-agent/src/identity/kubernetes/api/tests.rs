use super::*;
use crate::identity::kubernetes::tests::{
    CHECKOUT_ID, CHECKOUT_UID, MIGRATE_ID, SIDECAR_ID, WEB_ID, WEB_RESTARTED_ID, WEB_UID,
    containers, listed, watch_events,
};

#[test]
fn parses_the_recorded_list() {
    let list = listed();
    assert_eq!(list.resource_version, "48213");
    let mut pods = list.pods;
    pods.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(
        pods,
        vec![
            PodMeta {
                uid: CHECKOUT_UID.into(),
                name: "checkout-svc-0".into(),
                namespace: "shop".into(),
                // The label wins over the StatefulSet's name.
                service: Some("checkout".into()),
                containers: containers(&[
                    (CHECKOUT_ID, "checkout"),
                    (SIDECAR_ID, "metrics-sidecar"),
                    (MIGRATE_ID, "migrate"),
                ]),
            },
            PodMeta {
                uid: WEB_UID.into(),
                name: "web-7d4b9c8f6d-x2k9p".into(),
                namespace: "default".into(),
                service: Some("web".into()),
                containers: containers(&[(WEB_ID, "nginx")]),
            },
        ]
    );
}

#[test]
fn parses_the_recorded_watch_events() {
    let events = watch_events();
    assert_eq!(events.len(), 2);
    let WatchEvent::Modified {
        pod,
        resource_version,
    } = &events[0]
    else {
        panic!("not MODIFIED: {:?}", events[0]);
    };
    assert_eq!(resource_version.as_deref(), Some("48255"));
    assert_eq!(pod.uid, WEB_UID);
    assert_eq!(pod.service.as_deref(), Some("web"));
    assert_eq!(pod.containers, containers(&[(WEB_RESTARTED_ID, "nginx")]));
    let WatchEvent::Deleted { pod, .. } = &events[1] else {
        panic!("not DELETED: {:?}", events[1]);
    };
    assert_eq!(pod.uid, WEB_UID);
    assert_eq!(events[1].resource_version(), Some("48301"));
}

#[test]
fn parses_bookmarks_errors_and_unknown_types() {
    let bookmark = br#"{"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1","metadata":{"resourceVersion":"50000","annotations":{"k8s.io/initial-events-end":"true"}},"spec":{"containers":null},"status":{}}}"#;
    assert_eq!(
        parse_watch_event(bookmark).unwrap(),
        WatchEvent::Bookmark {
            resource_version: Some("50000".into())
        }
    );
    let gone = br#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 48213 (48900)","reason":"Expired","code":410}}"#;
    let WatchEvent::Error(status) = parse_watch_event(gone).unwrap() else {
        panic!("not an error");
    };
    assert!(status.is_gone());
    assert_eq!(
        status.to_string(),
        "410 Expired: too old resource version: 48213 (48900)"
    );
    let other = br#"{"type":"ERROR","object":{"kind":"Status","code":500,"message":"boom"}}"#;
    let WatchEvent::Error(status) = parse_watch_event(other).unwrap() else {
        panic!("not an error");
    };
    assert!(!status.is_gone());
    assert_eq!(
        parse_watch_event(br#"{"type":"SOMETHING","object":{}}"#).unwrap(),
        WatchEvent::Unknown("SOMETHING".into())
    );
    assert!(parse_watch_event(b"{\"type\":\"ADDED\",").is_err());
    let no_uid = br#"{"type":"ADDED","object":{"metadata":{"name":"x","namespace":"y"}}}"#;
    let err = parse_watch_event(no_uid).unwrap_err();
    assert!(
        format!("{err:#}").contains("y/x has no metadata.uid"),
        "{err:#}"
    );
}

#[test]
fn rejects_what_is_not_a_pod_list() {
    let err = parse_pod_list(br#"{"kind":"Status","code":403}"#).unwrap_err();
    assert!(err.to_string().contains("got a Status"), "{err}");
    let err = parse_pod_list(br#"{"kind":"PodList","items":[]}"#).unwrap_err();
    assert!(err.to_string().contains("resourceVersion"), "{err}");
    let empty = parse_pod_list(
        br#"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"7"},"items":null}"#,
    )
    .unwrap();
    assert!(empty.pods.is_empty());
}

#[test]
fn container_ids_lose_their_runtime_prefix() {
    let id = "AbCd".repeat(16);
    for raw in [
        format!("containerd://{id}"),
        format!("docker://{id}"),
        format!("cri-o://{id}"),
        id.clone(),
    ] {
        assert_eq!(container_id(&raw), Some(id.to_ascii_lowercase()), "{raw}");
    }
    assert_eq!(container_id(""), None);
    assert_eq!(container_id("containerd://"), None);
}

#[test]
fn service_comes_from_the_label_then_the_owner() {
    let owner = |kind: &str, name: &str| OwnerReference {
        kind: kind.into(),
        name: name.into(),
        controller: Some(true),
    };
    let none = HashMap::new();
    let hash: HashMap<String, String> =
        [("pod-template-hash".to_string(), "7d4b9c8f6d".to_string())].into();
    let cases = [
        (
            &hash,
            owner("ReplicaSet", "web-api-7d4b9c8f6d"),
            Some("web-api"),
        ),
        (
            &none,
            owner("ReplicaSet", "web-api-7d4b9c8f6d"),
            Some("web-api"),
        ),
        // The label names the hash even when it does not look like one.
        (&hash, owner("ReplicaSet", "odd-7d4b9c8f6d"), Some("odd")),
        (&none, owner("ReplicaSet", "plain"), Some("plain")),
        (&none, owner("StatefulSet", "db-main"), Some("db-main")),
        (
            &none,
            owner("DaemonSet", "node-exporter"),
            Some("node-exporter"),
        ),
        (
            &none,
            owner("Job", "backup-28391234"),
            Some("backup-28391234"),
        ),
        (&none, owner("Node", "worker-1"), None),
    ];
    for (labels, owner, want) in cases {
        let got = service_name(labels, std::slice::from_ref(&owner));
        assert_eq!(got.as_deref(), want, "{} {}", owner.kind, owner.name);
    }
    assert_eq!(service_name(&none, &[]), None);
    let labelled: HashMap<String, String> = [(NAME_LABEL.to_string(), "shop".into())].into();
    assert_eq!(
        service_name(&labelled, &[owner("ReplicaSet", "web-1")]).as_deref(),
        Some("shop")
    );
    // The controlling owner, not the first one.
    let owners = [
        OwnerReference {
            kind: "ConfigMap".into(),
            name: "cm".into(),
            controller: None,
        },
        owner("DaemonSet", "agent"),
    ];
    assert_eq!(service_name(&none, &owners).as_deref(), Some("agent"));
}
