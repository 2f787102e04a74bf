//! The clause table of the crate docs (`src/clauses.rs`) names every scenario of the suite, and
//! only scenarios that exist.

use std::collections::BTreeSet;
use transport_conformance::{RunConfig, run_scenarios};
use transport_mem::conformance::MemBackend;

/// The scenario names in the last column of the table.
fn table_names() -> BTreeSet<String> {
    let src = include_str!("../src/clauses.rs");
    let mut names = BTreeSet::new();
    for row in src.lines().filter_map(|l| l.strip_prefix("//! | ")) {
        let Some(cell) = row.trim_end_matches('|').rsplit('|').next() else {
            continue;
        };
        for (k, part) in cell.split('`').enumerate() {
            if k % 2 == 1 {
                names.insert(part.to_string());
            }
        }
    }
    names
}

#[test]
fn clause_table_names_exactly_the_suite_scenarios() {
    let mut suite = BTreeSet::new();
    run_scenarios(MemBackend, &RunConfig::from_env(), |name| {
        suite.insert(name.to_string());
        false
    });
    let table = table_names();
    assert!(suite.len() > 30, "too few scenarios found: {suite:?}");
    let missing: Vec<_> = suite.difference(&table).collect();
    assert!(
        missing.is_empty(),
        "scenarios missing from the clause table: {missing:?}"
    );
    let unknown: Vec<_> = table.difference(&suite).collect();
    assert!(
        unknown.is_empty(),
        "the clause table names unknown scenarios: {unknown:?}"
    );
}
