//! The conformance suite (`outbox-conformance`) on PostgreSQL: the same
//! checks the file outbox runs, one test each, each on its own schema.

use crate::util::Pg;

outbox_conformance::conformance_tests!(Pg::from_env("conformance"));
