//! `--format ecs` against ECS's own field definitions: every field the corpus's events
//! carry, outside kcdscope's custom namespace, is an ECS field, with a value of the type
//! ECS gives it (tests/ecs/ecs_flat_fields.tsv: ECS's generated/ecs/ecs_flat.yml trimmed to
//! the fields we write, source URL in its header).

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::process::Command;

use kcd_tests::{captures, kcdscope_bin, repo_root};
use serde_json::Value;

fn flatten(v: &Value, prefix: &str, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let name = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(v, &name, out);
            }
        }
        _ => out.push((prefix.to_string(), v.clone())),
    }
}

fn of_type(ty: &str, v: &Value) -> bool {
    match ty {
        "keyword" | "wildcard" | "match_only_text" | "text" | "constant_keyword" => v.is_string(),
        "long" => v.is_i64() || v.is_u64(),
        "float" | "scaled_float" | "double" => v.is_number(),
        "boolean" => v.is_boolean(),
        "date" => v.as_str().is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok()),
        "ip" => v.as_str().is_some_and(|s| s.parse::<std::net::IpAddr>().is_ok()),
        _ => false,
    }
}

#[test]
fn every_ecs_field_written_has_the_type_ecs_defines() {
    let table = std::fs::read_to_string(repo_root().join("tests/ecs/ecs_flat_fields.tsv")).unwrap();
    let types: HashMap<&str, (&str, bool)> = table
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let mut f = l.split('\t');
            (f.next().unwrap(), (f.next().unwrap(), f.next() == Some("array")))
        })
        .collect();
    let out = Command::new(kcdscope_bin()).args(["replay", "-q", "--json", "--format", "ecs"]).args(captures("")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut checked = 0usize;
    let mut seen = std::collections::HashSet::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let mut fields = Vec::new();
        flatten(&serde_json::from_str(line).unwrap(), "", &mut fields);
        for (name, v) in fields {
            if name == "kcdscope" || name.starts_with("kcdscope.") {
                continue;
            }
            let Some((ty, array)) = types.get(name.as_str()) else { panic!("{name} is not an ECS field (or not in the trimmed copy): {line}") };
            match &v {
                Value::Array(items) => {
                    assert!(*array, "{name}: an array where ECS expects one {ty}");
                    assert!(items.iter().all(|i| of_type(ty, i)), "{name}: {v} is not an array of {ty}");
                }
                _ => assert!(of_type(ty, &v), "{name}: {v} is not of ECS type {ty}"),
            }
            checked += 1;
            seen.insert(name);
        }
    }
    assert!(seen.len() > 60 && checked > 1000, "{} fields, {checked} values", seen.len());
}
