//! The official JMESPath compliance suite (`tests/data/jmespath`, 15 files, origin in its README) run through
//! `switchboard::pipeline::expr`: each case must give the same result, or fail with the same kind
//! of error at compile or evaluation time. A case that cannot pass is listed in [`KNOWN_FAILURES`]
//! with the reason; a listed case that passes, or a listing that names no case, fails the test too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value as Json;
use switchboard::pipeline::expr::{CompiledExpr, Value, to_value};

const SUITE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/jmespath");

const FILES: [&str; 15] = [
    "basic.json",
    "boolean.json",
    "current.json",
    "escape.json",
    "filters.json",
    "functions.json",
    "identifiers.json",
    "indices.json",
    "literal.json",
    "multiselect.json",
    "pipe.json",
    "slice.json",
    "syntax.json",
    "unicode.json",
    "wildcard.json",
];

/// Cases that cannot pass: (file, expression, reason). An entry covers every case of the file with
/// that expression. Empty: all 892 cases pass (jmespath 0.5's `avg([])` and `to_number` strays
/// are corrected by the runtime's own versions of those two functions).
const KNOWN_FAILURES: &[(&str, &str, &str)] = &[];

#[test]
fn the_suite_is_exactly_the_listed_files() {
    let mut found: Vec<String> = std::fs::read_dir(SUITE_DIR)
        .unwrap_or_else(|err| panic!("cannot list {SUITE_DIR}: {err}"))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".json"))
        .collect();
    found.sort();
    assert_eq!(
        found, FILES,
        "a suite file was added or removed: update FILES"
    );
}

#[test]
fn every_compliance_case_passes_or_is_listed() {
    let mut passed = 0;
    let mut failures = Vec::new();
    let mut known_hit = vec![false; KNOWN_FAILURES.len()];
    for file in FILES {
        for (expression, outcome) in run_file(file) {
            let known = KNOWN_FAILURES
                .iter()
                .position(|&(f, e, _)| f == file && e == expression);
            match (outcome, known) {
                (Ok(()), None) => passed += 1,
                (Ok(()), Some(_)) => failures.push(format!(
                    "{file}: `{expression}` passes but is listed in KNOWN_FAILURES"
                )),
                (Err(_), Some(index)) => known_hit[index] = true,
                (Err(why), None) => failures.push(format!("{file}: `{expression}`: {why}")),
            }
        }
    }
    for (index, hit) in known_hit.iter().enumerate() {
        if !hit {
            let (file, expression, _) = KNOWN_FAILURES[index];
            failures.push(format!(
                "KNOWN_FAILURES names no failing case: {file}: `{expression}`"
            ));
        }
    }
    let mut report = String::new();
    for failure in &failures {
        writeln!(report, "  {failure}").unwrap();
    }
    assert!(passed > 0, "no compliance case ran");
    assert!(
        failures.is_empty(),
        "{} unexpected compliance failure(s) ({passed} passed):\n{report}",
        failures.len()
    );
    eprintln!(
        "JMESPath compliance: {passed} passed, {} known failures",
        KNOWN_FAILURES.len()
    );
}

/// Every case of one file with its outcome.
fn run_file(file: &str) -> Vec<(String, Result<(), String>)> {
    let path = Path::new(SUITE_DIR).join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    let suites: Vec<Json> = serde_json::from_str(&text).unwrap();
    let mut outcomes = Vec::new();
    for suite in &suites {
        let given = to_value(&suite["given"]);
        for case in suite["cases"].as_array().unwrap() {
            let expression = case["expression"].as_str().unwrap().to_owned();
            let outcome = run_case(&expression, case, &given);
            outcomes.push((expression, outcome));
        }
    }
    outcomes
}

fn run_case(expression: &str, case: &Json, given: &Value) -> Result<(), String> {
    let evaluated = CompiledExpr::compile(expression).and_then(|expr| expr.search(given));
    match (case.get("error"), evaluated) {
        (Some(expected), Err(err)) if Some(err.kind.as_str()) == expected.as_str() => Ok(()),
        (Some(expected), Err(err)) => Err(format!(
            "expected error {expected}, got {} error: {err}",
            err.kind
        )),
        (Some(expected), Ok(result)) => {
            Err(format!("expected error {expected}, got result {result}"))
        }
        (None, Err(err)) => Err(format!("{} error: {err}", err.kind)),
        (None, Ok(result)) => {
            let expected = case
                .get("result")
                .ok_or("case has neither result nor error")?;
            // jmespath's own equality: numbers compare as f64 (1 == 1.0).
            if *result == *to_value(expected) {
                Ok(())
            } else {
                Err(format!("expected {expected}, got {result}"))
            }
        }
    }
}
