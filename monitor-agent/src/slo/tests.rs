//! The generator on small SLO files: rules, burn rates, bounds, labels, and what it refuses.
use super::{
    Args, Error,
    bounds::bucket_at_or_above,
    rules::{PAGE, TICKET, WINDOWS, budget, burn_factor, generate, window_hours},
    run,
};

const ONE: &str = "slos:\n  - name: api\n    objective: 99.9\n    sli:\n      kind: http-availability\n      selector: 'comm=\"nginx\"'\n";

#[test]
fn workbook_burn_rates_for_thirty_days() {
    let factors: Vec<f64> = PAGE
        .iter()
        .chain(&TICKET)
        .map(|w| burn_factor(w, 720))
        .collect();
    assert_eq!(factors, [14.4, 6.0, 3.0, 1.0]);
    assert_eq!(burn_factor(&PAGE[0], 28 * 24), 13.44);
    assert_eq!(budget(99.9), 0.001);
    assert_eq!(budget(99.95), 0.0005);
}

#[test]
fn generates_records_and_both_alerts() {
    let rules = generate(ONE, "x.yaml").unwrap().rules;
    for window in WINDOWS.iter().chain(&["30d"]) {
        assert!(
            rules.contains(&format!("record: slo:sli_error:ratio_rate{window}\n")),
            "{window}"
        );
    }
    assert!(
        rules.contains("slo:sli_error:ratio_rate1h{slo=\"api\"} > (14.4 * 0.001)"),
        "{rules}"
    );
    assert!(rules.contains("slo:sli_error:ratio_rate5m{slo=\"api\"} > (14.4 * 0.001)"));
    assert!(rules.contains("slo:sli_error:ratio_rate3d{slo=\"api\"} > (1 * 0.001)"));
    assert!(
        rules.contains("http_response_status_code=~\\\"5..\\\"")
            || rules.contains("http_response_status_code=~\"5..\"")
    );
    assert_eq!(rules.matches("alert: SLOErrorBudgetBurn").count(), 2);
    assert!(rules.contains("severity: page") && rules.contains("severity: ticket"));
}

#[test]
fn thresholds_snap_up_to_the_agents_bucket_bounds() {
    let label = |t: f64| bucket_at_or_above(t).map(|b| b.label);
    assert_eq!(label(0.016777216).unwrap(), "0.016777216");
    assert_eq!(label(0.000000256).unwrap(), "0.000000256");
    assert_eq!(label(17.179869184).unwrap(), "17.179869184");
    assert_eq!(label(0.25).unwrap(), "0.268435456");
    assert_eq!(label(0.02).unwrap(), "0.033554432");
    assert_eq!(label(0.0000001).unwrap(), "0.000000256");
    assert!(format!("{:#}", label(18.0).unwrap_err()).contains("17.179869184"));
    assert!(format!("{:#}", label(0.0).unwrap_err()).contains("positive"));
}

/// Every latency SLI selects a bucket the agent exposes, never the threshold as written.
#[test]
fn latency_slis_select_buckets_that_exist() {
    for kind in ["http-latency", "syscall-latency"] {
        let file = ONE.replace("http-availability", kind).replace(
            "'comm=\"nginx\"'",
            "'comm=\"nginx\"'\n      threshold: 0.25",
        );
        let rules = generate(&file, "x").unwrap().rules;
        assert!(!rules.contains("0.25\\\""), "{kind}: {rules}");
        assert!(!rules.contains("le=\"0.25\""), "{kind}: {rules}");
        assert!(
            rules.contains("le=\\\"0.268435456\\\"") || rules.contains("le=\"0.268435456\""),
            "{kind}: {rules}"
        );
    }
}

/// TCP outcomes, not every connect(2) (UDP and Unix sockets included).
#[test]
fn connect_sli_counts_tcp_outcomes() {
    let file = ONE.replace("http-availability", "connect-availability");
    let rules = generate(&file, "x").unwrap().rules;
    assert!(
        rules.contains("monitor_tcp_connect_duration_seconds_count")
            && rules.contains("monitor_tcp_connect_errors_total")
    );
    assert!(!rules.contains("syscall="), "{rules}");
}

#[test]
fn sloth_labels_on_every_rule() {
    let rules = generate(&ONE.replace("    sli:", "    service: shop\n    sli:"), "x")
        .unwrap()
        .rules;
    let file: serde_norway::Value = serde_norway::from_str(&rules).unwrap();
    let rules = file["groups"][0]["rules"].as_sequence().unwrap();
    assert_eq!(rules.len(), 13);
    for rule in rules {
        let labels = &rule["labels"];
        assert_eq!(labels["sloth_service"].as_str(), Some("shop"), "{rule:?}");
        assert_eq!(labels["sloth_slo"].as_str(), Some("api"), "{rule:?}");
        assert_eq!(labels["sloth_id"].as_str(), Some("shop-api"), "{rule:?}");
    }
    let unnamed = generate(ONE, "x").unwrap().rules;
    assert!(unnamed.contains("sloth_service: api"), "{unnamed}");
}

#[test]
fn rejects_what_would_make_wrong_rules() {
    let bad = |from: &str, to: &str| generate(&ONE.replace(from, to), "x").unwrap_err();
    assert!(format!("{:#}", bad("99.9", "100")).contains("strictly between"));
    assert!(format!("{:#}", bad("name: api", "name: API")).contains("lower-case"));
    assert!(
        format!("{:#}", bad("http-availability", "http-availabilty")).contains("unknown variant")
    );
    assert!(format!("{:#}", bad("    objective", "    objectiv")).contains("unknown field"));
    assert!(format!("{:#}", bad("    sli:", "    window: 2d\n    sli:")).contains("shorter"));
    assert!(format!("{:#}", bad("'comm=\"nginx\"'", "'{comm=\"nginx\"}'")).contains("braces"));
    assert!(
        format!(
            "{:#}",
            bad("    sli:", "    labels: {sloth_slo: x}\n    sli:")
        )
        .contains("set by the generator")
    );
    let twice = format!("{ONE}{}", &ONE["slos:\n".len()..]);
    assert!(format!("{:#}", generate(&twice, "x").unwrap_err()).contains("twice"));
}

#[test]
fn window_in_weeks_and_days() {
    assert_eq!(window_hours("4w").unwrap(), 672);
    assert_eq!(window_hours("30d").unwrap(), 720);
    assert!(window_hours("30").is_err() && window_hours("1h").is_err());
}

/// Each bound the generator can pick is an `le` the exporter writes: the golden exposition
/// (the exporter's own pinned output) has every one of them, and nothing else is finite.
#[test]
fn bound_labels_are_the_exporters() {
    let golden = include_str!("../../tests/golden/metrics.prom");
    let mut exposed: Vec<&str> = golden
        .split("le=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|le| *le != "+Inf")
        .collect();
    exposed.sort_by(|a, b| a.parse::<f64>().unwrap().total_cmp(&b.parse().unwrap()));
    exposed.dedup();
    let mut picked = Vec::new();
    let mut threshold = 1e-9;
    while let Ok(bound) = bucket_at_or_above(threshold) {
        if picked.last() != Some(&bound.label) {
            picked.push(bound.label);
        }
        threshold = picked.last().unwrap().parse::<f64>().unwrap() * 1.5;
    }
    assert_eq!(picked, exposed);
}

#[test]
fn snapped_thresholds_are_noted_and_exact_ones_are_not() {
    let latency = |threshold: &str| {
        ONE.replace("http-availability", "http-latency").replace(
            "'comm=\"nginx\"'",
            &format!("'comm=\"nginx\"'\n      threshold: {threshold}"),
        )
    };
    let snapped = generate(&latency("0.25"), "x").unwrap();
    assert_eq!(
        snapped.notes,
        [
            "SLO api: threshold 0.25 s is not a histogram bound; using the next bound up, \
          0.268435456 s"
        ]
    );
    assert!(
        generate(&latency("0.268435456"), "x")
            .unwrap()
            .notes
            .is_empty()
    );
    assert!(generate(ONE, "x").unwrap().notes.is_empty());
}

/// A bad SLO file is bad input (exit 2 in main); a rule file that cannot be written is a
/// failed run (exit 1). An existing rule file is replaced whole, with nothing left beside it.
#[test]
fn run_reads_checks_and_replaces() {
    let dir = std::env::temp_dir().join(format!("monitor-slo-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let slos = dir.join("slos.yaml");
    let out = dir.join("slo.rules.yaml");
    std::fs::write(&out, "old rules, longer than nothing\n".repeat(1000)).unwrap();
    std::fs::write(&slos, ONE).unwrap();
    let args = |file: &std::path::Path, output: &std::path::Path| Args {
        file: file.to_owned(),
        output: Some(output.to_owned()),
    };
    let mut notes = Vec::new();
    run(&args(&slos, &out), &mut |note| notes.push(note.to_owned())).unwrap();
    let rules = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        rules,
        generate(ONE, &slos.display().to_string()).unwrap().rules
    );
    assert!(
        rules.starts_with(&format!(
            "# Generated by `monitor-agent slo {}`",
            slos.display()
        )),
        "{rules}"
    );
    assert!(notes.is_empty());
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(left.len(), 2, "{left:?}");

    std::fs::write(&slos, ONE.replace("99.9", "100")).unwrap();
    let err = run(&args(&slos, &out), &mut |_| {}).unwrap_err();
    let Error::Input(err) = err else {
        panic!("{err:?}")
    };
    let text = format!("{err:#}");
    assert!(
        text.starts_with(&format!(
            "SLO file {}: SLO api: objective 100",
            slos.display()
        )),
        "{text}"
    );
    assert!(!text.contains('\n'), "{text}");
    let missing = dir.join("missing.yaml");
    assert!(matches!(
        run(&args(&missing, &out), &mut |_| {}),
        Err(Error::Input(_))
    ));

    std::fs::write(&slos, ONE).unwrap();
    let unwritable = dir.join("no-such-dir").join("slo.rules.yaml");
    let err = run(&args(&slos, &unwritable), &mut |_| {}).unwrap_err();
    assert!(
        matches!(&err, Error::Output(err) if format!("{err:#}").contains("cannot write")),
        "{err:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
