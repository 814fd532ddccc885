//! Building and verifying packs: the good pack passes, and each way of
//! cooking the figures or the evidence fails on the check meant to catch it.

mod common;

use common::*;
use mandate_core::audit::EventKind;
use mandate_core::outcome::{Amount, Classification};
use mandate_core::time::Timestamp;
use mandate_evidence::pack::{FILES, KeysFile, MANIFEST_HEADER, repack, unpack};
use mandate_evidence::verify::CHECKS;
use mandate_evidence::{ProvenEntry, build, verify};

#[test]
fn a_good_pack_verifies_with_the_pinned_key() {
    let s = Scenario::new();
    let v = verify(&s.pack(), Some(&pinned()));
    assert!(v.passed(), "{:#?}", failures(&v));
    assert_eq!(v.checks.iter().map(|c| c.name).collect::<Vec<_>>(), CHECKS);
    let key = v.check("log key").unwrap();
    assert!(key.detail.contains("pinned key"), "{}", key.detail);
    assert!(!key.detail.contains("NOT PINNED"));

    let sum = v.summary.clone().unwrap();
    assert_eq!(sum.workflow.as_str(), "invoices");
    assert_eq!(sum.period, period());
    assert_eq!(sum.transactions, 3);
    assert_eq!(sum.counted, 1);
    assert_eq!(sum.excluded[&Classification::Duplicate], 1);
    assert_eq!(sum.excluded[&Classification::Phantom], 1);
    assert_eq!(sum.excluded[&Classification::Unattributed], 0);
    assert_eq!(sum.log_key, Some(signer().verifier().to_vkey()));
    assert!(sum.pinned);
    let dup = v.check("duplicates").unwrap();
    assert!(
        dup.detail
            .starts_with("1 duplicate(s) name their first report in the pack")
    );
}

#[test]
fn without_a_pinned_key_it_verifies_but_says_the_key_was_not_pinned() {
    let v = verify(&Scenario::new().pack(), None);
    assert!(v.passed(), "{:#?}", failures(&v));
    let key = v.check("log key").unwrap();
    let vkey = signer().verifier().to_vkey();
    assert!(key.detail.starts_with("NOT PINNED"), "{}", key.detail);
    assert!(key.detail.contains(&vkey), "{}", key.detail);
    let sum = v.summary.unwrap();
    assert!(!sum.pinned);
    assert_eq!(sum.log_key, Some(vkey));
}

#[test]
fn the_pack_has_the_documented_layout_and_is_deterministic() {
    let s = Scenario::new();
    let zip = s.pack();
    assert_eq!(zip, s.pack(), "same input, same bytes");
    // Input order does not matter: transactions go in log order.
    let mut shuffled = s.input.clone();
    shuffled.transactions.reverse();
    assert_eq!(build(&shuffled, &s.log.signer).unwrap(), zip);

    let files = unpack(&zip).unwrap();
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, FILES);
    let text = |name: &str| {
        let (_, d) = files.iter().find(|(n, _)| n == name).unwrap();
        String::from_utf8(d.clone()).unwrap()
    };

    let readme = text("README.txt");
    assert!(readme.contains("mandate evidence verify pack.zip --key <vkey>"));
    for c in Classification::ALL {
        assert!(readme.contains(c.definition()), "{c:?}");
    }
    let defs: serde_json::Value = serde_json::from_str(&text("definitions.json")).unwrap();
    assert_eq!(defs["classifications"].as_array().unwrap().len(), 6);
    assert_eq!(defs["classifications"][1]["kind"], "duplicate");
    assert_eq!(defs["classifications"][1]["adds_cost"], false);

    let lines: Vec<serde_json::Value> = text("transactions.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["leaf_index"], s.outcomes[0].0);
    assert_eq!(lines[0]["entry"], s.log.entries[s.outcomes[0].0 as usize]);
    assert_eq!(lines[0]["proof"].as_array().unwrap().len(), 4); // leaf 3 of 9
    assert_eq!(lines[0]["proof"][0].as_str().unwrap().len(), 64);

    assert_eq!(text("checkpoint.txt"), s.input.checkpoint.note);
    let keys: KeysFile = serde_json::from_str(&text("keys.json")).unwrap();
    assert_eq!(keys.log, signer().verifier().to_vkey());

    let manifest = text("manifest.txt");
    let (body, _) = mandate_core::audit::checkpoint::verify_note(&manifest, &[pinned()]).unwrap();
    let mlines: Vec<&str> = body.lines().collect();
    assert_eq!(mlines[0], MANIFEST_HEADER);
    assert_eq!(mlines.len(), 8);
    for (line, name) in mlines[1..].iter().zip(&FILES[..7]) {
        let (hash, n) = line.split_once("  ").unwrap();
        assert_eq!(n, *name);
        assert_eq!(hash.len(), 64);
    }
}

#[test]
fn a_removed_transaction_fails_on_totals() {
    let mut s = Scenario::new();
    s.input.transactions.remove(2); // the phantom; figures still count it
    let v = verify(&s.pack(), Some(&pinned()));
    assert_fails_on(&v, &["totals"]);
    let d = &v.check("totals").unwrap().detail;
    assert!(
        d.contains("report.json: totals.reported is 3 but the listed transactions give 2"),
        "{d}"
    );
}

#[test]
fn edited_totals_fail_on_recompute_even_when_signed_by_the_right_key() {
    let mut s = Scenario::new();
    s.input.figures.totals.counted += 1;
    let v = verify(&s.pack(), Some(&pinned()));
    assert_fails_on(&v, &["totals"]);
    assert_eq!(
        v.check("totals").unwrap().detail,
        "report.json: totals.counted is 2 but the listed transactions give 1"
    );

    let mut s = Scenario::new();
    s.input.figures.totals.value = Amount::from_whole(1_000_000);
    let v = verify(&s.pack(), Some(&pinned()));
    assert_fails_on(&v, &["totals"]);
    assert!(
        v.check("totals")
            .unwrap()
            .detail
            .contains("totals.value is 1000000.00 but")
    );

    // A breakdown that does not add up is caught as well.
    let mut s = Scenario::new();
    let agent = s.input.figures.by_agent.values_mut().next().unwrap();
    agent.cost = Amount::ZERO;
    let v = verify(&s.pack(), Some(&pinned()));
    assert_fails_on(&v, &["totals"]);
    assert!(
        v.check("totals").unwrap().detail.contains("by_agent["),
        "{v:#?}"
    );
}

#[test]
fn a_pack_signed_by_another_key_fails_when_the_real_key_is_pinned() {
    let s = Scenario::with(forger(), |_| {});
    let zip = s.pack();
    let v = verify(&zip, Some(&pinned()));
    assert_fails_on(&v, &["log key", "manifest", "checkpoint"]);
    assert_eq!(
        v.check("log key").unwrap().detail,
        format!(
            "the pack is signed by key {}, not the pinned key {}",
            forger().verifier().to_vkey(),
            signer().verifier().to_vkey()
        )
    );
    // Unpinned, the forgery is self-consistent: only the key tells it apart,
    // which is why the report prints it and says it was not pinned.
    let v = verify(&zip, None);
    assert!(v.passed());
    assert_eq!(
        v.summary.unwrap().log_key,
        Some(forger().verifier().to_vkey())
    );
}

#[test]
fn a_proof_for_another_index_fails() {
    let mut s = Scenario::new();
    let other = s.log.proven(s.outcomes[2].0);
    s.input.transactions[0].proof = other.proof;
    let v = verify(&s.pack(), Some(&pinned()));
    assert_fails_on(&v, &["transactions"]);
    let d = &v.check("transactions").unwrap().detail;
    assert!(
        d.starts_with(
            "transactions.jsonl line 1: inclusion proof does not match the checkpoint root"
        ),
        "{d}"
    );

    // The right entry and proof under the wrong leaf index.
    let mut s = Scenario::new();
    s.input.transactions[1].leaf_index += 1;
    let v = verify(&s.pack(), Some(&pinned()));
    assert_fails_on(&v, &["transactions"]);
    let d = &v.check("transactions").unwrap().detail;
    assert!(d.contains("line 2: inclusion proof"), "{d}");
    assert!(d.contains("line 2: the entry says index"), "{d}");
}

#[test]
fn an_outcome_of_another_workflow_fails() {
    let mut s = Scenario::new();
    let mut r = record(9, Classification::Counted, "kyc-1", 50, None);
    r.workflow = mandate_core::outcome::WorkflowName::parse("kyc-refresh").unwrap();
    s.add_outcome(&r);
    s.refresh();
    let v = verify(&s.pack(), Some(&pinned()));
    assert_fails_on(&v, &["transactions"]);
    let d = &v.check("transactions").unwrap().detail;
    assert!(
        d.contains("line 4: outcome 00000000-0000-0000-0000-000000000009 belongs to workflow kyc-refresh, not invoices"),
        "{d}"
    );
}

#[test]
fn an_outcome_outside_the_period_fails() {
    for minutes in [-1, (FEB - JAN) / 60_000] {
        let mut s = Scenario::new();
        s.add_outcome(&record(9, Classification::Counted, "inv-9", minutes, None));
        s.refresh();
        let v = verify(&s.pack(), Some(&pinned()));
        assert_fails_on(&v, &["transactions"]);
        let d = &v.check("transactions").unwrap().detail;
        assert!(d.contains("outside the period"), "{d}");
    }
}

#[test]
fn a_tampered_entry_fails_even_with_its_proof_kept() {
    let mut s = Scenario::new();
    let t = &mut s.input.transactions[0];
    // One field changed: the reported value.
    let before = t.entry.clone();
    t.entry = t
        .entry
        .replacen("\"value\":\"12.00\"", "\"value\":\"13.00\"", 1);
    assert_ne!(t.entry, before);
    let v = verify(&s.pack(), Some(&pinned()));
    // The entry no longer hashes into the log; the figures (12.00) no longer
    // follow from it either.
    assert_fails_on(&v, &["transactions", "totals"]);
    let d = &v.check("transactions").unwrap().detail;
    assert_eq!(
        d,
        "transactions.jsonl line 1: inclusion proof does not match the checkpoint root"
    );

    // The same with the figures adjusted to the tampered value: still caught.
    let mut s2 = Scenario::new();
    s2.input.transactions[0].entry = s.input.transactions[0].entry.clone();
    s2.input.figures.totals.value = Amount::from_whole(13);
    s2.input.figures.totals.net =
        Amount::from_units(13_0000 - s2.input.figures.totals.cost.units());
    let v = verify(&s2.pack(), Some(&pinned()));
    assert!(!v.passed());
    assert!(!v.check("transactions").unwrap().ok);
}

#[test]
fn an_entry_that_is_not_an_outcome_fails() {
    let mut s = Scenario::new();
    // A real, proven log entry, but a decision, not an outcome.
    s.input.transactions[0] = s.log.proven(2);
    let v = verify(&s.pack(), Some(&pinned()));
    assert!(!v.passed());
    let d = &v.check("transactions").unwrap().detail;
    assert!(
        d.contains("line 1: the entry is a decision.made event, not outcome.reported"),
        "{d}"
    );
}

#[test]
fn the_same_transaction_twice_fails() {
    let mut s = Scenario::new();
    let again = s.input.transactions[0].clone();
    s.input.transactions.push(again);
    let v = verify(&s.pack(), Some(&pinned()));
    let d = &v.check("transactions").unwrap().detail;
    assert!(d.contains("line 2: leaf index"), "{d}");
    assert!(d.contains("is already on line 1"), "{d}");
    assert!(!v.passed());
}

#[test]
fn an_agent_outside_the_control_boundary_fails() {
    let mut s = Scenario::new();
    let mut r = record(9, Classification::Counted, "inv-9", 50, None);
    r.agent = stranger_agent();
    s.add_outcome(&r);
    s.refresh();
    let v = verify(&s.pack(), Some(&pinned()));
    assert_fails_on(&v, &["transactions"]);
    let d = &v.check("transactions").unwrap().detail;
    assert!(
        d.contains("agent 00000000-0000-0000-0000-000000000bad"),
        "{d}"
    );
    assert!(d.contains("is not in the control boundary"), "{d}");

    // A policy whose text does not match its hash is caught too.
    let mut s = Scenario::new();
    s.input.boundary.policies[0]
        .text
        .push_str("forbid (principal, action, resource);\n");
    let v = verify(&s.pack(), Some(&pinned()));
    assert_fails_on(&v, &["control boundary"]);
}

#[test]
fn a_duplicate_of_an_outcome_before_the_period_passes_with_a_note() {
    let mut s = Scenario::with(signer(), |_| {});
    // A retry of a transaction first reported in December.
    s.add_outcome(&record(
        9,
        Classification::Duplicate,
        "inv-dec",
        55,
        Some(0xdec),
    ));
    s.refresh();
    let v = verify(&s.pack(), Some(&pinned()));
    assert!(v.passed(), "{:#?}", failures(&v));
    let d = &v.check("duplicates").unwrap().detail;
    assert!(
        d.contains("note: 1 duplicate(s) retry a transaction first reported outside the period"),
        "{d}"
    );
    assert!(d.contains("00000000-0000-0000-0000-000000000dec"), "{d}");
}

#[test]
fn a_duplicate_naming_the_wrong_first_report_fails() {
    // Names an outcome outside the pack although the key's first report is in it.
    let mut s = Scenario::new();
    s.add_outcome(&record(
        9,
        Classification::Duplicate,
        "inv-2",
        55,
        Some(0x77),
    ));
    s.refresh();
    let v = verify(&s.pack(), Some(&pinned()));
    assert_fails_on(&v, &["duplicates"]);
    let d = &v.check("duplicates").unwrap().detail;
    assert!(
        d.contains("the first report of its key in the pack is outcome"),
        "{d}"
    );

    // Two first reports of one key: one transaction counted twice.
    let mut s = Scenario::new();
    s.add_outcome(&record(9, Classification::Counted, "inv-1", 55, None));
    s.refresh();
    let v = verify(&s.pack(), Some(&pinned()));
    assert_fails_on(&v, &["duplicates"]);
    let d = &v.check("duplicates").unwrap().detail;
    assert!(
        d.contains("second first report of idempotency key \"inv-1\""),
        "{d}"
    );
}

#[test]
fn a_file_changed_and_rezipped_canonically_fails_on_the_manifest() {
    let zip = Scenario::new().pack();
    let files = unpack(&zip).unwrap();
    for target in &FILES[..7] {
        let changed: Vec<(String, Vec<u8>)> = files
            .iter()
            .map(|(n, d)| {
                let mut d = d.clone();
                if n == target {
                    d.push(b'\n');
                }
                (n.clone(), d)
            })
            .collect();
        let list: Vec<(&str, &[u8])> = changed
            .iter()
            .map(|(n, d)| (n.as_str(), d.as_slice()))
            .collect();
        let v = verify(&repack(&list).unwrap(), Some(&pinned()));
        assert!(!v.passed(), "{target}");
        assert!(v.check("byte-exact").unwrap().ok, "{target}");
        let m = v.check("manifest").unwrap();
        assert!(!m.ok, "{target}");
        assert!(
            m.detail.starts_with(&format!("{target} has SHA-256")),
            "{}",
            m.detail
        );
    }
}

#[test]
fn missing_extra_and_reordered_files_fail() {
    let zip = Scenario::new().pack();
    let files = unpack(&zip).unwrap();
    let list: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();

    let mut extra = list.clone();
    extra.push(("notes.txt", b"trust me"));
    let v = verify(&repack(&extra).unwrap(), None);
    assert_eq!(v.checks.len(), CHECKS.len());
    assert_eq!(v.checks[0].detail, "unexpected file \"notes.txt\"");
    assert!(
        v.checks[1..]
            .iter()
            .all(|c| !c.ok && c.detail.starts_with("not checked"))
    );
    assert!(v.summary.is_none());

    let v = verify(&repack(&list[1..]).unwrap(), None);
    assert_eq!(v.checks[0].detail, "README.txt is missing");

    let mut swapped = list.clone();
    swapped.swap(0, 1);
    let v = verify(&repack(&swapped).unwrap(), None);
    assert!(
        v.checks[0]
            .detail
            .starts_with("the files are in the order definitions.json, README.txt")
    );

    let mut twice = list.clone();
    twice.insert(1, list[0]);
    let v = verify(&repack(&twice).unwrap_or_default(), None);
    assert!(!v.passed());
}

#[test]
fn garbage_fails_every_check() {
    for input in [&b""[..], b"PK", b"not a zip at all", &[0u8; 4096]] {
        let v = verify(input, Some(&pinned()));
        assert!(!v.passed());
        assert_eq!(v.checks.len(), CHECKS.len());
        assert!(v.checks.iter().all(|c| !c.ok));
        assert!(
            v.checks[0].detail.starts_with("not a readable zip"),
            "{v:#?}"
        );
    }
}

#[test]
fn build_refuses_inconsistent_inputs() {
    let s = Scenario::new();
    // A checkpoint the pack's key did not sign.
    assert!(matches!(
        build(&s.input, &forger()),
        Err(mandate_evidence::PackError::CheckpointKey { .. })
    ));
    let mut input = s.input.clone();
    input.figures.period.to = Timestamp::from_millis(FEB + 1);
    assert!(matches!(
        build(&input, &s.log.signer),
        Err(mandate_evidence::PackError::PeriodMismatch { .. })
    ));
}

#[test]
fn an_empty_period_verifies() {
    let mut s = Scenario::new();
    s.outcomes.clear();
    s.refresh();
    assert!(s.input.transactions.is_empty());
    let v = verify(&s.pack(), Some(&pinned()));
    assert!(v.passed(), "{:#?}", failures(&v));
    assert_eq!(v.summary.unwrap().counted, 0);
}

#[test]
fn entries_logged_after_an_older_checkpoint_fail() {
    // The checkpoint predates the last outcome: its proof cannot verify.
    let mut s = Scenario::new();
    let old = s.log.checkpoint();
    let r = record(9, Classification::Counted, "inv-9", 55, None);
    s.add_outcome(&r);
    s.log.noise(EventKind::TaskCompleted, 56);
    s.refresh();
    s.input.checkpoint = old;
    let v = verify(&s.pack(), Some(&pinned()));
    let d = &v.check("transactions").unwrap().detail;
    assert!(d.contains("outside the checkpoint's tree"), "{d}");
    // ProvenEntry is plain data the server fills in.
    let _: &ProvenEntry = &s.input.transactions[0];
}
