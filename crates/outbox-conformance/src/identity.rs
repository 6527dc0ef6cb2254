//! What a child id is, checked on every store alike: exact bytes, except
//! that a new commit may not give a child or parent id with leading or
//! trailing whitespace (agent-deck's turn fingerprint trims the child id,
//! so such ids would be one child to the ledger and two to the inbox).

use outbox::{Error, Store};

use crate::checks::{PARENT, finished};
use crate::model::children;
use crate::{Harness, TestClock};

fn drained<S: Store>(store: &S) -> Vec<String> {
    let records = store.drain(PARENT).unwrap().records;
    children(&records).into_iter().map(str::to_owned).collect()
}

/// Surrounding whitespace in a child or parent id is refused at commit,
/// naming the field, and changes nothing; case and Unicode normalisation
/// are not folded (`w1` and `W1`, NFC `é` and NFD `é`, are two children,
/// as their fingerprints are two); the longest id allowed commits and
/// drains once.
pub fn child_ids_are_exact_bytes_and_never_padded(h: &impl Harness) {
    let ob = h.open(&TestClock::default());
    for (parent, child, field) in [
        (PARENT, "w1 ", "child_session_id"),
        (PARENT, " w1", "child_session_id"),
        (PARENT, "w1\t", "child_session_id"),
        (PARENT, "w1\u{a0}", "child_session_id"),
        (" parent-A", "w1", "parent id"),
        ("parent-A\n", "w1", "parent id"),
    ] {
        let err = ob.commit(parent, finished(child, "ok")).unwrap_err();
        assert!(
            matches!(&err, Error::IdHasSurroundingWhitespace { field: f, .. } if *f == field),
            "{parent:?}/{child:?}: {err}"
        );
        assert!(err.to_string().contains(field), "{err}");
    }
    assert!(!ob.has_pending(PARENT).unwrap());
    assert!(!ob.has_pending(" parent-A").unwrap());

    // Case and normalisation: exact bytes, two children each.
    let nfc = "caf\u{e9}";
    let nfd = "cafe\u{301}";
    for child in ["w1", "W1", nfc, nfd] {
        ob.commit(PARENT, finished(child, "same words")).unwrap();
    }
    let mut got = drained(&ob);
    got.sort();
    let mut want = vec!["W1", "w1", nfc, nfd];
    want.sort();
    assert_eq!(got, want);
    assert!(drained(&ob).is_empty());

    // The longest child id allowed.
    let longest = "x".repeat(outbox::MAX_FIELD_BYTES);
    let committed = ob.commit(PARENT, finished(&longest, "ok")).unwrap();
    assert!(
        committed
            .record
            .turn_fingerprint
            .starts_with(&format!("{longest}@"))
    );
    assert_eq!(drained(&ob), std::slice::from_ref(&longest));
    let again = ob.commit(PARENT, finished(&longest, "ok")).unwrap();
    assert!(again.already_consumed);
    assert!(drained(&ob).is_empty());
}
