//! The labelled scenario corpus (tests/scenarios/kerberos.txt): for each scenario, the
//! findings kcdscope reports must be exactly the expected set. The expectations come from
//! what each lab case did (its CHECKS.txt, verified from client traces and KDC logs), not
//! from kcdscope's output.

use std::collections::BTreeSet;

use kcd_decode::Config;
use kcd_tests::{captures, rel, replay_diagnosed, repo_root};

struct Expect {
    id: String,
    kind: String,
    name: String,
    causes: Option<Vec<String>>,
}

struct Scenario {
    name: String,
    files: Vec<String>,
    expect: Vec<Expect>,
    healthy: bool,
}

fn parse(text: &str) -> Vec<Scenario> {
    let mut out: Vec<Scenario> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            out.push(Scenario { name: name.into(), files: vec![], expect: vec![], healthy: false });
            continue;
        }
        let s = out.last_mut().unwrap_or_else(|| panic!("line {}: outside a scenario", n + 1));
        if let Some(f) = line.strip_prefix("files:") {
            s.files = f.split_whitespace().map(String::from).collect();
        } else if line.starts_with("why:") {
        } else if let Some(e) = line.strip_prefix("expect:") {
            let w: Vec<&str> = e.split_whitespace().collect();
            match w.as_slice() {
                ["none"] => s.healthy = true,
                [id, kind, name, rest @ ..] => s.expect.push(Expect {
                    id: id.to_string(),
                    kind: kind.to_string(),
                    // Names may contain spaces (CA names): the words up to causes=.
                    name: std::iter::once(*name)
                        .chain(rest.iter().copied().take_while(|r| !r.starts_with("causes=")))
                        .collect::<Vec<_>>()
                        .join(" "),
                    causes: rest
                        .iter()
                        .find_map(|r| r.strip_prefix("causes="))
                        .map(|c| c.split(',').map(String::from).collect()),
                }),
                _ => panic!("line {}: bad expect: {line}", n + 1),
            }
        } else {
            panic!("line {}: unknown key: {line}", n + 1);
        }
    }
    out
}

#[test]
fn every_scenario_gives_exactly_its_expected_findings() {
    check_corpus("tests/scenarios/kerberos.txt", "captures/krb5", 40);
}

#[test]
fn every_device_scenario_gives_exactly_its_expected_findings() {
    check_corpus("tests/scenarios/devices.txt", "captures", 4);
}

/// A subject pattern: exact, or a prefix ending in '*'.
fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(p) => name.starts_with(p),
        None => pattern == name,
    }
}

fn check_corpus(corpus: &str, base: &str, at_least: usize) {
    let text = std::fs::read_to_string(repo_root().join(corpus)).expect("corpus");
    let scenarios = parse(&text);
    assert!(scenarios.len() >= at_least, "{} scenarios", scenarios.len());
    let mut failures = Vec::new();
    let (mut expected_total, mut found_total) = (0, 0);
    for s in &scenarios {
        assert!(!s.files.is_empty(), "{}: no files", s.name);
        assert!(s.healthy == s.expect.is_empty(), "{}: 'none' or findings, not both", s.name);
        let files: Vec<_> = s.files.iter().map(|f| repo_root().join(base).join(f)).collect();
        let (_, findings) = replay_diagnosed(&files, Config::default(), Default::default());
        let got: BTreeSet<(String, String, String)> = findings
            .iter()
            .map(|f| {
                let kind = serde_json::to_value(f.subject.kind).expect("kind");
                (f.id.clone(), kind.as_str().unwrap_or("?").to_string(), f.subject.name.clone())
            })
            .collect();
        // Patterns take the name they match, so that the sets compare.
        let want: BTreeSet<(String, String, String)> = s
            .expect
            .iter()
            .map(|e| {
                let name = got
                    .iter()
                    .find(|g| g.0 == e.id && g.1 == e.kind && matches(&e.name, &g.2))
                    .map_or(e.name.clone(), |g| g.2.clone());
                (e.id.clone(), e.kind.clone(), name)
            })
            .collect();
        expected_total += want.len();
        found_total += got.len();
        if got != want {
            failures.push(format!(
                "{}:\n  missing: {:?}\n  extra:   {:?}",
                s.name,
                want.difference(&got).collect::<Vec<_>>(),
                got.difference(&want).collect::<Vec<_>>()
            ));
            continue;
        }
        for e in &s.expect {
            let Some(causes) = &e.causes else { continue };
            let f = findings.iter().find(|f| f.id == e.id && matches(&e.name, &f.subject.name)).expect("found above");
            let have: Vec<String> = f.facts["possible_causes"]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
                .unwrap_or_default();
            if &have != causes {
                failures.push(format!("{}: {} causes {have:?}, expected {causes:?}", s.name, e.id));
            }
        }
        // Every finding explains itself and cites packets.
        for f in &findings {
            assert!(!f.explanation.is_empty() && !f.fix.is_empty(), "{}: {}", s.name, f.id);
            assert!(!f.evidence.is_empty(), "{}: {} without evidence", s.name, f.id);
            // An administrator copies commands from the fix: no unfilled placeholder.
            assert!(!f.fix.contains('{') && !f.fix.contains('}'), "{}: {} fix keeps a placeholder: {}", s.name, f.id, f.fix);
        }
    }
    assert!(failures.is_empty(), "{} of {} scenarios differ:\n{}", failures.len(), scenarios.len(), failures.join("\n"));
    println!("{} scenarios, {expected_total} expected findings, {found_total} found", scenarios.len());
}

#[test]
fn every_kerberos_capture_is_in_a_scenario() {
    let text = std::fs::read_to_string(repo_root().join("tests/scenarios/kerberos.txt")).expect("corpus");
    let named: BTreeSet<String> = parse(&text).into_iter().flat_map(|s| s.files).collect();
    let missing: Vec<String> = captures("krb5")
        .iter()
        .map(|p| rel(p).trim_start_matches("captures/krb5/").to_string())
        .filter(|p| !named.contains(p))
        .collect();
    assert!(missing.is_empty(), "captures without a scenario: {missing:?}");
}

/// On two cores the command line hands events to the correlator in batches on another
/// thread: what the correlator concludes must not depend on that. Every capture, one after
/// the other, fed directly and through batches of an awkward size.
#[test]
fn batched_events_give_the_same_diagnosis_as_direct_ones() {
    use kcd_correlate::Correlator;
    use kcd_export::report::{render, Style};
    use kcd_schema::EventBatch;

    let files = captures("krb5");
    assert!(files.len() >= 20, "{} captures", files.len());
    let mut decoder = kcd_decode::Decoder::new(Config::default());
    let mut direct = Correlator::new(Default::default());
    let mut batched = Correlator::new(Default::default());
    let mut batch = EventBatch::default();
    let mut pushed = 0;
    {
        let mut sink = |e: &kcd_schema::Event<'_>| {
            direct.event(e);
            batch.push(e);
            pushed += 1;
            if batch.len() == 7 {
                batch.iter().for_each(|e| batched.event(&e));
                batch.clear();
            }
        };
        for f in &files {
            kcd_capture::replay_file(f, &rel(f), &mut decoder, &mut sink).expect("replay");
        }
        decoder.finish(&mut sink);
    }
    batch.iter().for_each(|e| batched.event(&e));
    direct.finish();
    batched.finish();
    assert!(pushed > 400, "{pushed} events");
    let (a, b) = (direct.findings(), batched.findings());
    assert!(a.len() >= 20, "{} findings", a.len());
    let json = |f: &[kcd_schema::Finding]| serde_json::to_string(f).expect("json");
    assert_eq!(json(&a), json(&b));
    let style = Style { colour: false };
    assert_eq!(
        render(&direct, &a, decoder.stats(), style),
        render(&batched, &b, decoder.stats(), style)
    );
}
