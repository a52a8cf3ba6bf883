use super::*;
use crate::identity::kubernetes::tests::{
    CHECKOUT_UID, WEB_RESTARTED_ID, WEB_UID, containers, listed, pod, watch_events,
};

#[test]
fn deleted_pods_stay_for_the_ttl_and_not_longer() {
    let ttl = Duration::from_secs(60);
    let store = PodStore::new(ttl);
    let t0 = Instant::now();
    store.apply_list(listed().pods, t0);
    assert_eq!(store.len(), 2);
    let mut events = watch_events().into_iter();
    store.apply_event(events.next().unwrap(), t0);
    let web = store.get(WEB_UID).unwrap();
    assert_eq!(web.containers, containers(&[(WEB_RESTARTED_ID, "nginx")]));

    let deleted_at = t0 + Duration::from_secs(5);
    store.apply_event(events.next().unwrap(), deleted_at);
    assert_eq!(store.prune(deleted_at + ttl - Duration::from_millis(1)), 0);
    assert!(
        store
            .get_at(WEB_UID, deleted_at + ttl - Duration::from_millis(1))
            .is_some()
    );
    assert_eq!(store.len(), 2);
    assert!(store.get_at(WEB_UID, deleted_at + ttl).is_none());
    assert_eq!(store.len(), 1);
    assert!(store.get(CHECKOUT_UID).is_some());

    // A second DELETED does not push the expiry back.
    let a = pod("a");
    store.apply_event(
        WatchEvent::Deleted {
            pod: a.clone(),
            resource_version: None,
        },
        t0,
    );
    store.apply_event(
        WatchEvent::Deleted {
            pod: a.clone(),
            resource_version: None,
        },
        t0 + Duration::from_secs(30),
    );
    assert_eq!(store.prune(t0 + ttl), 1);

    // MODIFIED after DELETED (same UID) brings the pod back for good.
    store.apply_event(
        WatchEvent::Deleted {
            pod: a.clone(),
            resource_version: None,
        },
        t0,
    );
    store.apply_event(
        WatchEvent::Modified {
            pod: a,
            resource_version: None,
        },
        t0,
    );
    assert_eq!(store.prune(t0 + ttl * 10), 0);
    assert!(store.get("a").is_some());
}

#[test]
fn a_list_marks_missing_pods_deleted() {
    let ttl = Duration::from_secs(60);
    let store = PodStore::new(ttl);
    let t0 = Instant::now();
    store.apply_list(vec![pod("a"), pod("b")], t0);
    let t1 = t0 + Duration::from_secs(1);
    assert_eq!(store.apply_list(vec![pod("b"), pod("c")], t1), 1);
    assert_eq!(store.len(), 3);
    assert!(
        store
            .get_at("a", t1 + ttl - Duration::from_millis(1))
            .is_some()
    );
    assert!(store.get_at("a", t1 + ttl).is_none());
    assert!(store.get_at("b", t1 + ttl).is_some());
    assert!(store.get_at("c", t1 + ttl).is_some());
}
