//! [`Listener`]: wake when a record is committed, without polling.
//!
//! Every commit's statement calls `pg_notify` on the schema's channel
//! (`outbox_` and the MD5 of the quoted schema name: at most 39 bytes,
//! under PostgreSQL's 63-byte limit for any schema name) with the parent
//! id as payload; PostgreSQL delivers it when the commit commits. A
//! listener holds a connection of its own (opened as every connection of
//! this crate is: the same hosts, TLS, password file and TCP keepalives,
//! so a dead server is noticed), on which it ran `LISTEN`, driven by a
//! thread of its own that forwards each notification.
//!
//! Its cost, measured with `examples/latency.rs` (debug build, loopback,
//! the shared 2-core VM, 2026-12-07, two runs each, before this crate moved
//! to tokio-postgres): one commit with `synchronous_commit=off` took 0.192
//! and 0.193 ms with the `pg_notify`, 0.192 and 0.195 ms without it; with
//! `synchronous_commit=on` both are dominated by the WAL fsync (3–6 ms).
//! Not measured: many concurrent committers, where PostgreSQL serialises
//! the commits of notifying transactions on its notification queue.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use outbox::{Outcome, Result, StoreErrorKind};
use tokio_postgres::AsyncMessage;

use crate::conn::{self, Net};
use crate::{PgOutbox, store_error};

/// What the listening thread reports.
enum Heard {
    /// `LISTEN` is in effect.
    Ready,
    /// A commit of this parent committed.
    Commit(String),
    /// The connection failed or closed; the thread has ended.
    Lost(String),
}

/// A connection listening for the commits of one schema.
pub struct Listener {
    rx: Receiver<Heard>,
    describe: String,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("store", &self.describe)
            .finish_non_exhaustive()
    }
}

impl PgOutbox {
    /// Opens a connection of its own and listens on this schema's channel.
    /// Commits made after this returns wake [`Listener::wait`]; those made
    /// before do not (ask [`has_pending`](outbox::Store::has_pending) after
    /// listening, not before, to miss none).
    pub fn listen(&self) -> Result<Listener> {
        let (tx, rx) = mpsc::channel();
        let config = self.inner.config.clone();
        let net = self.inner.net;
        let quoted = self.inner.quoted.clone();
        std::thread::Builder::new()
            .name("outbox-listen".into())
            .spawn(move || listen(&config, &net, &quoted, &tx))
            .map_err(|e| self.listen_error("start the listening thread", e.to_string()))?;
        match rx.recv() {
            Ok(Heard::Ready) => Ok(Listener {
                rx,
                describe: self.inner.describe.clone(),
            }),
            Ok(Heard::Lost(why)) => Err(self.listen_error("listen", why)),
            Ok(Heard::Commit(_)) | Err(_) => Err(self.listen_error(
                "listen",
                "the listening thread ended before LISTEN took effect".to_owned(),
            )),
        }
    }

    fn listen_error(&self, op: &'static str, why: String) -> outbox::Error {
        store_error(
            op,
            self.inner.describe.clone(),
            StoreErrorKind::Connect,
            Outcome::NotApplied,
            why,
        )
    }
}

/// The listening thread: connect to the first host that answers, `LISTEN`,
/// say [`Heard::Ready`], then forward every notification until the
/// connection ends (said as [`Heard::Lost`]) or nobody listens any more.
fn listen(config: &tokio_postgres::Config, net: &Net, quoted: &str, tx: &Sender<Heard>) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = tx.send(Heard::Lost(e.to_string()));
            return;
        }
    };
    let why = rt.block_on(async {
        let mut last = "no host to connect to".to_owned();
        for (host, port) in conn::targets(config) {
            let attempt = tokio::time::timeout(net.connect_timeout, async {
                let (socket, _probe) = conn::open(&host, port, net)
                    .await
                    .map_err(|e| e.to_string())?;
                let tls = crate::tls::connector(&host);
                let with_password = conn::with_password(config, &host, port);
                let config = with_password.as_ref().unwrap_or(config);
                config
                    .connect_raw(socket, tls)
                    .await
                    .map_err(|e| conn::PgError::Db(e).to_string())
            })
            .await;
            let (client, mut connection) = match attempt {
                Ok(Ok(pair)) => pair,
                Ok(Err(e)) => {
                    last = e;
                    continue;
                }
                Err(_) => {
                    last = format!("no answer within {:?}", net.connect_timeout);
                    continue;
                }
            };
            let forward = tx.clone();
            let driver = tokio::spawn(async move {
                loop {
                    let message = std::future::poll_fn(|cx| connection.poll_message(cx)).await;
                    let heard = match message {
                        Some(Ok(AsyncMessage::Notification(n))) => {
                            Heard::Commit(n.payload().to_owned())
                        }
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => Heard::Lost(conn::PgError::Db(e).to_string()),
                        None => Heard::Lost("the connection closed".to_owned()),
                    };
                    let lost = matches!(heard, Heard::Lost(_));
                    if forward.send(heard).is_err() || lost {
                        return;
                    }
                }
            });
            let channel = client
                .query_one("SELECT 'outbox_' || md5($1)", &[&quoted])
                .await
                .map(|row| row.get::<_, String>(0));
            // The channel is `outbox_` and 32 hex digits: no quoting needed.
            let listening = match channel {
                Ok(channel) => client.batch_execute(&format!("LISTEN {channel}")).await,
                Err(e) => Err(e),
            };
            if let Err(e) = listening {
                driver.abort();
                return conn::PgError::Db(e).to_string();
            }
            if tx.send(Heard::Ready).is_err() {
                return String::new();
            }
            // The client stays alive (its connection with it) as long as
            // the driver runs.
            let _ = driver.await;
            drop(client);
            return String::new();
        }
        last
    });
    if !why.is_empty() {
        let _ = tx.send(Heard::Lost(why));
    }
}

impl Listener {
    /// Waits for the next commit (at most `timeout`, or without limit for
    /// `None`) and returns its parent id; `Ok(None)` when the time ran out.
    /// An error means the connection is lost: listen again, then ask what is
    /// pending (commits in between woke nobody).
    pub fn wait(&mut self, timeout: Option<Duration>) -> Result<Option<String>> {
        let heard = match timeout {
            Some(timeout) => match self.rx.recv_timeout(timeout) {
                Ok(heard) => heard,
                Err(RecvTimeoutError::Timeout) => return Ok(None),
                Err(RecvTimeoutError::Disconnected) => {
                    Heard::Lost("the listening thread ended".to_owned())
                }
            },
            None => self
                .rx
                .recv()
                .unwrap_or_else(|_| Heard::Lost("the listening thread ended".to_owned())),
        };
        match heard {
            Heard::Commit(parent) => Ok(Some(parent)),
            Heard::Ready => Ok(None),
            Heard::Lost(why) => Err(store_error(
                "listen: wait for a commit",
                self.describe.clone(),
                StoreErrorKind::Connect,
                Outcome::NotApplied,
                why,
            )),
        }
    }
}
