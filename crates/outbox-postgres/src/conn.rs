//! One connection to the server: a `tokio-postgres` client on a runtime of
//! its own (as the synchronous `postgres` crate does it), over a socket
//! this module opens, so that
//!
//! - every round trip has a client-side deadline ([`Conn::deadline`]): a
//!   connection that stalls without closing fails the operation with
//!   [`PgError::TimedOut`] instead of hanging it, and is closed (the server
//!   then rolls back and frees the parent's lock);
//! - the socket has TCP keepalives and a `TCP_USER_TIMEOUT`
//!   ([`Net::apply`]), and asks the server for the same on its side, so
//!   either end notices a dead peer in about a minute, not two hours;
//! - a pooled connection can be checked without a round trip before a
//!   statement is sent on it ([`Conn::is_alive`]: one non-blocking `peek`
//!   on the socket), so a statement is never sent on a connection already
//!   known dead, and a failure there is "nothing sent", `NotApplied`;
//! - TLS (`sslmode`) goes through [`crate::tls`].

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::runtime::Runtime;
use tokio_postgres::config::Host;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, Row, Statement};

/// A failure of one round trip (or of connecting).
#[derive(Debug)]
pub(crate) enum PgError {
    /// The driver's or the server's error.
    Db(tokio_postgres::Error),
    /// No answer within the client-side deadline; the connection is
    /// closed.
    TimedOut(Duration),
    /// The socket could not be opened or set up.
    Io(io::Error),
}

impl From<tokio_postgres::Error> for PgError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Db(e)
    }
}

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Db(e) => {
                // The driver's Display is only its kind: the reason is in
                // its sources.
                write!(f, "{e}")?;
                let mut source = std::error::Error::source(e);
                while let Some(s) = source {
                    write!(f, ": {s}")?;
                    source = s.source();
                }
                Ok(())
            }
            Self::TimedOut(d) => write!(
                f,
                "no answer from the server within {d:?} (the client-side deadline; the \
                 connection was closed)"
            ),
            Self::Io(e) => write!(f, "{e}"),
        }
    }
}

/// The client's network settings: the connect timeout and the TCP
/// keepalive and user timeout of each socket.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Net {
    pub connect_timeout: Duration,
    /// `keepalives=0` in the URL turns keepalives off.
    pub keepalives: bool,
    pub keepalive_idle: Duration,
    pub keepalive_interval: Duration,
    pub keepalive_retries: u32,
    pub user_timeout: Duration,
}

impl Net {
    /// Sets keepalives and `TCP_USER_TIMEOUT` on a TCP socket.
    fn apply(&self, socket: &TcpStream) -> io::Result<()> {
        let sock = socket2::SockRef::from(socket);
        if self.keepalives {
            sock.set_tcp_keepalive(
                &socket2::TcpKeepalive::new()
                    .with_time(self.keepalive_idle)
                    .with_interval(self.keepalive_interval)
                    .with_retries(self.keepalive_retries),
            )?;
        }
        sock.set_tcp_user_timeout(Some(self.user_timeout))?;
        socket.set_nodelay(true)
    }
}

/// Keepalive defaults when the URL sets none (libpq's are the kernel's,
/// about two hours): a dead peer is noticed after 30 s idle + 3 probes
/// 10 s apart.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 3;
/// How long written data may stay unacknowledged before the kernel gives
/// the connection up, when the URL sets no `tcp_user_timeout`.
const USER_TIMEOUT: Duration = Duration::from_secs(60);

/// The network settings for `config` (its own where it sets them, else
/// this module's defaults), and the same keepalives asked of the server
/// (its `tcp_keepalives_*` and `tcp_user_timeout` settings, through the
/// startup `options`, unless they name them already), so a server whose
/// client vanished ends the session, rolling back a drain and freeing the
/// parent's lock, in about a minute.
pub(crate) fn net_settings(config: &mut Config) -> Net {
    // tokio-postgres reports its own default (2 h) when the URL sets none.
    let idle = match config.get_keepalives_idle() {
        d if d == Duration::from_secs(2 * 3600) => KEEPALIVE_IDLE,
        d => d,
    };
    let net = Net {
        connect_timeout: config
            .get_connect_timeout()
            .copied()
            .unwrap_or(crate::DEFAULT_CONNECT_TIMEOUT),
        keepalives: config.get_keepalives(),
        keepalive_idle: idle,
        keepalive_interval: config
            .get_keepalives_interval()
            .unwrap_or(KEEPALIVE_INTERVAL),
        keepalive_retries: config.get_keepalives_retries().unwrap_or(KEEPALIVE_RETRIES),
        user_timeout: config
            .get_tcp_user_timeout()
            .copied()
            .unwrap_or(USER_TIMEOUT),
    };
    let mut options = config.get_options().unwrap_or_default().to_owned();
    let mut ask = |name: &str, value: u128| {
        if !options.contains(name) {
            options.push_str(&format!(" -c {name}={value}"));
        }
    };
    if net.keepalives {
        ask(
            "tcp_keepalives_idle",
            net.keepalive_idle.as_secs().max(1).into(),
        );
        ask(
            "tcp_keepalives_interval",
            net.keepalive_interval.as_secs().max(1).into(),
        );
        ask("tcp_keepalives_count", net.keepalive_retries.into());
    }
    ask("tcp_user_timeout", net.user_timeout.as_millis());
    config.options(options.trim());
    net
}

/// The socket under a connection: TCP or a Unix-domain socket.
pub(crate) enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_flush(cx),
            Self::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Self::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// A server session: its backend's pid and start time (together, never
/// reused).
#[derive(Clone, Debug)]
pub(crate) struct Session {
    pub pid: i32,
    pub started: String,
}

/// One connection and its prepared statements.
pub(crate) struct Conn {
    rt: Runtime,
    /// Always `Some` but in `drop`, which closes it first.
    client: Option<Client>,
    /// The task that drives the connection (reads and writes the socket).
    task: tokio::task::JoinHandle<()>,
    session: Session,
    /// A second handle on the socket, only ever peeked at.
    probe: socket2::Socket,
    /// The deadline of each round trip.
    deadline: Duration,
    pub(crate) statements: Vec<(&'static str, Statement)>,
    /// Taken from the idle list (it may have died since it was used).
    pub(crate) reused: bool,
    /// A round trip timed out: the connection is unusable.
    broken: bool,
}

/// `(host, port)` pairs to try, in the URL's order.
pub(crate) fn targets(config: &Config) -> Vec<(Host, u16)> {
    let ports = config.get_ports();
    let mut hosts: Vec<Host> = config.get_hosts().to_vec();
    if hosts.is_empty() {
        hosts.push(Host::Unix("/var/run/postgresql".into()));
    }
    hosts
        .into_iter()
        .enumerate()
        .map(|(i, h)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            (h, port)
        })
        .collect()
}

pub(crate) async fn open(
    host: &Host,
    port: u16,
    net: &Net,
) -> io::Result<(Socket, socket2::Socket)> {
    match host {
        Host::Tcp(name) => {
            let mut last =
                io::Error::new(io::ErrorKind::NotFound, format!("no address for {name}"));
            for addr in tokio::net::lookup_host((name.as_str(), port)).await? {
                match TcpStream::connect(addr).await {
                    Ok(s) => {
                        net.apply(&s)?;
                        let probe = socket2::SockRef::from(&s).try_clone()?;
                        return Ok((Socket::Tcp(s), probe));
                    }
                    Err(e) => last = e,
                }
            }
            Err(last)
        }
        Host::Unix(dir) => {
            let s = UnixStream::connect(dir.join(format!(".s.PGSQL.{port}"))).await?;
            let probe = socket2::SockRef::from(&s).try_clone()?;
            Ok((Socket::Unix(s), probe))
        }
    }
}

/// `config` with the password libpq would use for `host:port` when the URL
/// has none (see `pgpass.rs`); `None` when the URL has one or none is
/// found.
pub(crate) fn with_password(config: &Config, host: &Host, port: u16) -> Option<Config> {
    if config.get_password().is_some() {
        return None;
    }
    let user = config.get_user().unwrap_or_default();
    let target = crate::pgpass::Target {
        host,
        port,
        dbname: config.get_dbname().unwrap_or(user),
        user,
    };
    let password = crate::pgpass::password(target)?;
    let mut config = config.clone();
    config.password(password);
    Some(config)
}

impl Conn {
    /// Connects to the first of `config`'s hosts that answers, each
    /// attempt bounded by `net.connect_timeout`.
    pub(crate) fn connect(config: &Config, net: &Net) -> Result<Self, PgError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(PgError::Io)?;
        let mut last = PgError::Io(io::Error::new(io::ErrorKind::NotFound, "no host"));
        for (host, port) in targets(config) {
            let attempt = rt.block_on(async {
                tokio::time::timeout(net.connect_timeout, async {
                    let (socket, probe) = open(&host, port, net).await.map_err(PgError::Io)?;
                    let tls = crate::tls::connector(&host);
                    let with_password = with_password(config, &host, port);
                    let config = with_password.as_ref().unwrap_or(config);
                    let (client, connection) = config.connect_raw(socket, tls).await?;
                    let connection = tokio::spawn(async move {
                        let _ = connection.await;
                    });
                    // Who this session is, to end it from another
                    // connection if this one stalls (see `session`).
                    let row = client
                        .query_one(
                            "SELECT pg_backend_pid(), backend_start::text FROM pg_stat_activity \
                             WHERE pid = pg_backend_pid()",
                            &[],
                        )
                        .await;
                    match row {
                        Ok(row) => {
                            Ok::<_, PgError>((client, connection, row.get(0), row.get(1), probe))
                        }
                        Err(e) => {
                            connection.abort();
                            Err(e.into())
                        }
                    }
                })
                .await
            });
            match attempt {
                Ok(Ok((client, task, pid, started, probe))) => {
                    return Ok(Self {
                        rt,
                        client: Some(client),
                        task,
                        session: Session { pid, started },
                        probe,
                        deadline: crate::DEFAULT_TIMEOUT,
                        statements: Vec::new(),
                        reused: false,
                        broken: false,
                    });
                }
                Ok(Err(e)) => last = e,
                Err(_) => last = PgError::TimedOut(net.connect_timeout),
            }
        }
        Err(last)
    }

    /// Whether the connection can take a statement: not closed, and its
    /// socket neither at end of file, reset, nor holding bytes the server
    /// sent unasked (a `FATAL` before closing, such as
    /// `idle_session_timeout`'s). One non-blocking `peek`, no round trip.
    pub(crate) fn is_alive(&self) -> bool {
        if !self.reusable() {
            return false;
        }
        let peeked = self.probe.peek(&mut [std::mem::MaybeUninit::new(0u8); 1]);
        matches!(peeked, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Sets the deadline of each later round trip.
    pub(crate) fn set_deadline(&mut self, deadline: Duration) {
        self.deadline = deadline;
    }

    /// The server session behind this connection.
    pub(crate) fn session(&self) -> &Session {
        &self.session
    }

    /// Whether a round trip timed out: the connection is unusable and the
    /// server may still hold its session (and what it locked) open.
    pub(crate) fn timed_out(&self) -> bool {
        self.broken
    }

    /// Whether the connection may go back to the idle list.
    pub(crate) fn reusable(&self) -> bool {
        !self.broken && self.client.as_ref().is_some_and(|c| !c.is_closed())
    }

    /// Runs one round trip under the deadline; a timeout closes the
    /// connection.
    fn call<'a, T, F>(&'a mut self, f: impl FnOnce(&'a Client) -> F) -> Result<T, PgError>
    where
        F: Future<Output = Result<T, tokio_postgres::Error>> + 'a,
    {
        let (false, Some(client)) = (self.broken, &self.client) else {
            return Err(PgError::TimedOut(self.deadline));
        };
        let deadline = self.deadline;
        let round_trip = f(client);
        // The timer is made inside the runtime (it needs its time driver).
        match self
            .rt
            .block_on(async { tokio::time::timeout(deadline, round_trip).await })
        {
            Ok(result) => result.map_err(PgError::Db),
            Err(_) => {
                self.broken = true;
                Err(PgError::TimedOut(deadline))
            }
        }
    }

    pub(crate) fn prepare(&mut self, sql: &str) -> Result<Statement, PgError> {
        self.call(|c| c.prepare(sql))
    }

    pub(crate) fn query(
        &mut self,
        st: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, PgError> {
        self.call(|c| c.query(st, params))
    }

    pub(crate) fn query_one(
        &mut self,
        st: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, PgError> {
        self.call(|c| c.query_one(st, params))
    }

    pub(crate) fn query_opt(
        &mut self,
        st: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, PgError> {
        self.call(|c| c.query_opt(st, params))
    }

    /// A query given as text (prepared unnamed, one round trip more).
    pub(crate) fn query_one_sql(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, PgError> {
        self.call(|c| c.query_one(sql, params))
    }

    /// `query_opt` of a query given as text.
    pub(crate) fn query_opt_sql(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, PgError> {
        self.call(|c| c.query_opt(sql, params))
    }

    pub(crate) fn execute(
        &mut self,
        st: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, PgError> {
        self.call(|c| c.execute(st, params))
    }

    /// `execute` of a statement given as text.
    pub(crate) fn execute_sql(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, PgError> {
        self.call(|c| c.execute(sql, params))
    }

    pub(crate) fn batch_execute(&mut self, sql: &str) -> Result<(), PgError> {
        self.call(|c| c.batch_execute(sql))
    }
}

impl Drop for Conn {
    /// Closes the connection as a client should (a `Terminate` message),
    /// waiting a moment for it to be written, so the server logs a clean
    /// end rather than a lost client. A connection that stalled is just
    /// dropped.
    fn drop(&mut self) {
        drop(self.client.take());
        if self.broken {
            return;
        }
        let task = &mut self.task;
        let _ = self
            .rt
            .block_on(async { tokio::time::timeout(Duration::from_millis(200), task).await });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalives_default_on_both_ends_unless_the_url_sets_them() {
        let mut config: Config = "postgres://u@h/db".parse().unwrap();
        let net = net_settings(&mut config);
        assert_eq!(net.keepalive_idle, KEEPALIVE_IDLE);
        assert_eq!(net.user_timeout, USER_TIMEOUT);
        let options = config.get_options().unwrap();
        for asked in [
            "-c tcp_keepalives_idle=30",
            "-c tcp_keepalives_interval=10",
            "-c tcp_keepalives_count=3",
            "-c tcp_user_timeout=60000",
        ] {
            assert!(options.contains(asked), "{options}");
        }

        let mut config: Config = "postgres://u@h/db?keepalives_idle=5\
             &options=-c%20tcp_keepalives_idle%3D9%20-c%20statement_timeout%3D1s"
            .parse()
            .unwrap();
        // (connect_schema reads the URL's tcp_user_timeout, in ms, as libpq.)
        config.tcp_user_timeout(Duration::from_millis(7000));
        let net = net_settings(&mut config);
        assert_eq!(net.keepalive_idle, Duration::from_secs(5));
        assert_eq!(net.user_timeout, Duration::from_secs(7));
        let options = config.get_options().unwrap();
        assert_eq!(
            options.matches("tcp_keepalives_idle").count(),
            1,
            "{options}"
        );
        assert!(options.contains("statement_timeout=1s"), "{options}");
        assert!(options.contains("-c tcp_user_timeout=7000"), "{options}");

        let mut config: Config = "postgres://u@h/db?keepalives=0".parse().unwrap();
        let net = net_settings(&mut config);
        assert!(!net.keepalives);
        assert!(!config.get_options().unwrap().contains("keepalives"));
    }
}
