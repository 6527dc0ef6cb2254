//! The test database: its URL from [`URL_VAR`], a fresh schema per store
//! opened (so tests run in parallel), dropped when the harness goes.

use std::io::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use outbox_conformance::{Harness, TestClock};
use outbox_postgres::PgOutbox;

/// The variable naming the test database.
pub const URL_VAR: &str = "OUTBOX_TEST_DATABASE_URL";

/// The test database's URL, or `None` after printing that the calling
/// test is skipped and why.
pub fn url(test: &str) -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            let test = std::thread::current()
                .name()
                .map_or(test.to_owned(), str::to_owned);
            // Straight to stderr, past libtest's capture: a skip must show
            // even when the test passes.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: {URL_VAR} is not set, so there is no PostgreSQL to test against \
                 (set it, e.g. {URL_VAR}=postgres://postgres@127.0.0.1:5432/test; .ci/run does \
                 when PostgreSQL is installed)"
            );
            None
        }
    }
}

/// `url` with one more connection parameter (`key=value`, URL-encoded).
pub fn with_param(url: &str, param: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{param}")
}

/// Opens stores on fresh schemas of the test database and drops those
/// schemas when it goes.
pub struct Pg {
    /// The test database.
    pub url: String,
    schemas: Mutex<Vec<String>>,
}

impl Pg {
    /// The harness, or `None` (printed) without a test database.
    pub fn from_env(test: &str) -> Option<Self> {
        Some(Self {
            url: url(test)?,
            schemas: Mutex::new(Vec::new()),
        })
    }

    /// A schema name no other test uses, dropped with the harness.
    pub fn fresh_schema(&self) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "t_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        self.schemas.lock().unwrap().push(name.clone());
        name
    }

    /// A raw client on the test database, for inspecting and for breaking
    /// things.
    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).expect("connect to the test database")
    }
}

impl Harness for Pg {
    type Store = PgOutbox;

    fn open(&self, clock: &TestClock) -> PgOutbox {
        let schema = self.fresh_schema();
        PgOutbox::connect_schema(&self.url, &schema)
            .unwrap_or_else(|e| panic!("open the store in schema {schema}: {e}"))
            .with_clock(clock.source())
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let schemas = std::mem::take(&mut *self.schemas.lock().unwrap_or_else(|p| p.into_inner()));
        if schemas.is_empty() {
            return;
        }
        if let Ok(mut client) = postgres::Client::connect(&self.url, postgres::NoTls) {
            for s in schemas {
                let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{s}\" CASCADE"));
            }
        }
    }
}
