//! The outbox contract as tests generic over [`outbox::Store`], so every
//! store runs the same checks and a behaviour difference is a test failure.
//!
//! A store's test crate implements [`Harness`] (how to open a fresh, empty
//! store with a given clock) and expands [`conformance_tests!`], which
//! writes one `#[test]` per check of [`checks`]. A harness that cannot run
//! here (no database configured) returns `None` from the expression given
//! to the macro, after printing why: each test then prints that it was
//! skipped and passes; it never fails on a machine without the store.
//!
//! ```
//! use outbox::Outbox;
//! use outbox_conformance::{Harness, TestClock};
//!
//! struct Files(std::sync::Mutex<Vec<std::path::PathBuf>>);
//!
//! impl Harness for Files {
//!     type Store = Outbox;
//!     fn open(&self, clock: &TestClock) -> Outbox {
//!         let dir = std::env::temp_dir().join(format!("conformance-doc-{}", std::process::id()));
//!         let _ = std::fs::remove_dir_all(&dir);
//!         self.0.lock().unwrap().push(dir.clone());
//!         Outbox::open(&dir).unwrap().with_clock(clock.source())
//!     }
//! }
//!
//! let files = Files(Default::default());
//! outbox_conformance::checks::last_wins_per_child_by_commit_order(&files);
//! # for dir in files.0.lock().unwrap().iter() { let _ = std::fs::remove_dir_all(dir); }
//! ```
//!
//! The checks restate the file outbox's contract tests (`tests/it/semantics.rs`,
//! `hardening_semantics.rs`) without their file-system details, plus a
//! seeded random sequence of operations checked against a reference model
//! ([`model`], the rules of the simulation's model where they apply to one
//! process without crashes) and a multi-threaded delivery audit.

pub mod checks;
pub mod identity;
pub mod model;
pub mod order;
#[cfg(doctest)]
mod readme_doctests;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use outbox::Store;

/// Opens fresh, empty stores for the checks.
pub trait Harness {
    /// The store under test. `Sync`: the concurrency check shares it
    /// between threads.
    type Store: Store + Sync;

    /// A fresh, empty store (nothing committed, consumed or counted) whose
    /// "now" is `clock` ([`TestClock::source`]). Panics when it cannot: a
    /// harness that cannot run at all is skipped before this is called.
    fn open(&self, clock: &TestClock) -> Self::Store;
}

/// A settable clock for the checks, in Unix seconds; clones share it.
#[derive(Clone, Debug)]
pub struct TestClock(Arc<AtomicI64>);

/// 2033-05-18: the checks' usual "now".
pub const T0: i64 = 2_000_000_000;

impl Default for TestClock {
    fn default() -> Self {
        Self::at(T0)
    }
}

impl TestClock {
    /// A clock reading `secs` after the Unix epoch.
    pub fn at(secs: i64) -> Self {
        Self(Arc::new(AtomicI64::new(secs)))
    }

    /// Sets the time.
    pub fn set(&self, secs: i64) {
        self.0.store(secs, Ordering::SeqCst);
    }

    /// The time, in Unix seconds.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }

    /// The time as a [`SystemTime`].
    pub fn now(&self) -> SystemTime {
        let secs = self.get();
        if secs >= 0 {
            UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
        } else {
            UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
        }
    }

    /// A closure for a store's `with_clock`.
    pub fn source(&self) -> impl Fn() -> SystemTime + Send + Sync + 'static {
        let clock = self.clone();
        move || clock.now()
    }
}

/// Writes one `#[test]` per check of [`checks`] for the harness that
/// `$harness` (an expression of type `Option<impl Harness>`) opens; when it
/// is `None`, each test returns at once (the expression prints why it is
/// skipped).
///
/// ```text
/// outbox_conformance::conformance_tests!(pg_harness());
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($harness:expr) => {
        $crate::conformance_tests!(@each $harness;
            a_turn_is_delivered_once_and_a_new_turn_again,
            last_wins_per_child_by_commit_order,
            last_wins_by_commit_order_not_timestamps,
            commit_stamps_records_byte_for_byte_like_the_file_outbox,
            peek_and_has_pending_agree_with_drain_and_consume_nothing,
            drain_with_marks_nothing_when_delivery_fails,
            drain_with_max_leaves_the_rest_pending_and_delivers_it_first,
            parent_ids_follow_the_file_outbox_rules,
            oversized_fields_are_refused_and_change_nothing,
            nul_in_ids_is_refused_and_kept_in_text,
            sweeps_and_forgetting_a_child,
            the_ledger_forgets_turns_after_its_ttl,
            a_clock_corrected_forward_does_not_forget_consumed_turns,
            entries_stamped_in_the_far_future_expire,
            a_second_finished_turn_with_a_new_output_hash_is_delivered,
            reentrant_calls_from_a_callback_are_errors_not_deadlocks,
            the_stop_hook_blocks_three_times_then_waits,
            the_stop_hook_consumes_only_what_its_reason_shows,
            the_handover_state_round_trips,
            consume_turns_consumes_exactly_the_turns_given,
            confirmed_delivery_follows_the_session,
            parents_are_independent,
            concurrent_producers_and_drainers_deliver_each_record_once,
            random_operations_match_the_reference_model,
            a_recommit_during_delivery_starts_a_new_position,
            sweeps_keep_first_seen_order,
            sweeps_act_on_records_a_failed_delivery_left,
            sweep_stale_all_reaches_records_a_failed_delivery_left,
            child_ids_are_exact_bytes_and_never_padded
        );
    };
    (@each $harness:expr; $($check:ident),* $(,)?) => {
        $(
            #[test]
            fn $check() {
                if let Some(harness) = $harness {
                    $crate::checks::$check(&harness);
                }
            }
        )*
    };
}
