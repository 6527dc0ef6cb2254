//! A fault-injecting TCP proxy between the store and the test database, in
//! the test process, on loopback only: Jepsen's nemesis in miniature.
//!
//! It declines TLS itself (the client goes on in plain text) and reads the
//! PostgreSQL wire protocol from the client (startup, then
//! typed messages) and remembers each prepared statement's SQL, so a
//! [`Fault`] names the statement it fires on by a piece of its SQL (a
//! simple query's text, or a `Bind` of a statement whose `Parse` held it).
//! What a fault does ([`Action`]): cut the connection before forwarding the
//! statement (the server never sees it), forward it and drop the server's
//! answer (the server acts, the client never hears: the lost `COMMIT`
//! answer), or forward it and then stall both directions, sockets open,
//! until the proxy is dropped or [`Proxy::release`] cuts them.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// What a fault does to the connection that sent the statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Close both sides before forwarding any byte of the statement.
    CutBefore,
    /// Forward the statement, discard the server's answer up to its
    /// `ReadyForQuery`, then close both sides.
    DropAnswer,
    /// A partition: close the client's side before forwarding the
    /// statement, and keep the server's side open and silent (the server
    /// does not learn that the client is gone) until [`Proxy::release`].
    Partition,
    /// Forward the statement, then forward nothing more either way; the
    /// sockets stay open until [`Proxy::release`] or the proxy's drop.
    Stall,
}

/// A fault armed on the proxy: fires once, on the `skip + 1`-th statement
/// (over all connections) whose SQL starts with `sql` (or contains it,
/// with `anywhere`).
#[derive(Clone, Debug)]
pub struct Fault {
    /// The start of the statement's SQL, or a piece of it.
    pub sql: String,
    /// Match `sql` anywhere in the statement, not only at its start.
    pub anywhere: bool,
    /// How many matching statements pass first.
    pub skip: usize,
    /// What happens.
    pub action: Action,
}

impl Fault {
    /// `action` on the first statement starting with `sql`.
    pub fn on(sql: &str, action: Action) -> Self {
        Self {
            sql: sql.to_owned(),
            anywhere: false,
            skip: 0,
            action,
        }
    }

    /// `action` on the first statement containing `sql`.
    pub fn containing(sql: &str, action: Action) -> Self {
        Self {
            anywhere: true,
            ..Self::on(sql, action)
        }
    }

    fn matches(&self, statement: &str) -> bool {
        let statement = statement.trim_start();
        if self.anywhere {
            statement.contains(&self.sql)
        } else {
            statement.starts_with(&self.sql)
        }
    }
}

#[derive(Default)]
struct Shared {
    faults: Mutex<Vec<Fault>>,
    fired: AtomicUsize,
    stopping: AtomicBool,
    /// Every live connection's two sockets, to cut them all.
    sockets: Mutex<Vec<(TcpStream, TcpStream)>>,
    stall: (Mutex<u64>, Condvar),
}

/// The proxy: listens on 127.0.0.1, forwards to `upstream`.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    /// A proxy to the server of `url` (a `postgres://host:port/...` URL).
    pub fn start(url: &str) -> Self {
        let config: postgres::Config = url.parse().expect("a test database URL");
        let host = match &config.get_hosts()[0] {
            postgres::config::Host::Tcp(h) => h.clone(),
            postgres::config::Host::Unix(_) => panic!("the proxy needs a TCP test database"),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let upstream = (host.as_str(), port)
            .to_socket_addrs()
            .expect("resolve the test database")
            .next()
            .expect("an address");
        assert!(upstream.ip().is_loopback(), "the proxy stays on loopback");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let accept = {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || accept_loop(&listener, upstream, &shared))
        };
        Self {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// `url` with its host and port replaced by the proxy's.
    pub fn url(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("a postgres:// URL");
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let user = authority.rsplit_once('@').map(|(u, _)| format!("{u}@"));
        format!(
            "{scheme}://{}127.0.0.1:{}/{path}",
            user.unwrap_or_default(),
            self.addr.port()
        )
    }

    /// Arms `fault`.
    pub fn arm(&self, fault: Fault) {
        self.shared.faults.lock().unwrap().push(fault);
    }

    /// How many faults have fired.
    pub fn fired(&self) -> usize {
        self.shared.fired.load(Ordering::SeqCst)
    }

    /// Cuts every live connection (a network drop), stalled ones included.
    pub fn release(&self) {
        for (a, b) in self.shared.sockets.lock().unwrap().drain(..) {
            let _ = a.shutdown(Shutdown::Both);
            let _ = b.shutdown(Shutdown::Both);
        }
        let (lock, cv) = &self.shared.stall;
        *lock.lock().unwrap() += 1;
        cv.notify_all();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.release();
        // Wake the accept loop.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, upstream: SocketAddr, shared: &Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        let Ok(server) = TcpStream::connect(upstream) else {
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
            continue;
        };
        shared.sockets.lock().unwrap().push((c2, s2));
        let conn = Arc::new(ConnState::default());
        let (c_read, s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        {
            let shared = Arc::clone(shared);
            let conn = Arc::clone(&conn);
            let (client, server) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = client_to_server(c_read, s_write, &shared, &conn);
                cut(&client, &server);
            });
        }
        {
            let shared = Arc::clone(shared);
            std::thread::spawn(move || {
                let _ = server_to_client(&server, &client, &shared, &conn);
                cut(&client, &server);
            });
        }
    }
}

fn cut(a: &TcpStream, b: &TcpStream) {
    let _ = a.shutdown(Shutdown::Both);
    let _ = b.shutdown(Shutdown::Both);
}

/// What one connection's two pumps share.
#[derive(Default)]
struct ConnState {
    /// Set when a fault fired on this connection.
    action: Mutex<Option<Action>>,
    /// Requests answered by one ReadyForQuery (a Sync or a simple Query)
    /// forwarded to the server and not yet answered, and, once a
    /// `DropAnswer` fired, how many of them came before the faulted
    /// statement: their answers still pass (the client may pipeline a
    /// request before the faulted one; dropping its answer instead would
    /// cut the connection before the faulted statement ran). One lock with
    /// `action`'s writer and reader, so no answer is counted twice.
    answers: Mutex<Answers>,
}

#[derive(Default)]
struct Answers {
    unanswered: usize,
    before_fault: usize,
}

fn read_exact_or_eof(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut at = 0;
    while at < buf.len() {
        match r.read(&mut buf[at..])? {
            0 if at == 0 => return Ok(false),
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => at += n,
        }
    }
    Ok(true)
}

fn wait_for_release(shared: &Shared) {
    let (lock, cv) = &shared.stall;
    let mut generation = lock.lock().unwrap();
    let start = *generation;
    while *generation == start && !shared.stopping.load(Ordering::SeqCst) {
        generation = cv.wait(generation).unwrap();
    }
}

/// The fault `sql` fires, if any (consumed).
fn fire(shared: &Shared, sql: &str) -> Option<Action> {
    let mut faults = shared.faults.lock().unwrap();
    let i = faults.iter().position(|f| f.matches(sql))?;
    if faults[i].skip > 0 {
        faults[i].skip -= 1;
        return None;
    }
    let fault = faults.remove(i);
    shared.fired.fetch_add(1, Ordering::SeqCst);
    Some(fault.action)
}

fn client_to_server(
    mut client: TcpStream,
    mut server: TcpStream,
    shared: &Shared,
    conn: &ConnState,
) -> io::Result<()> {
    // Untyped messages first: an SSL request, then the startup message.
    loop {
        let mut len = [0u8; 4];
        if !read_exact_or_eof(&mut client, &mut len)? {
            return Ok(());
        }
        let n = u32::from_be_bytes(len) as usize;
        let mut body = vec![0u8; n.saturating_sub(4)];
        read_exact_or_eof(&mut client, &mut body)?;
        let code = body
            .get(..4)
            .map(|c| u32::from_be_bytes(c.try_into().unwrap()));
        // SSLRequest or GSSENCRequest: the proxy declines itself ('N'), so
        // it can read what follows; the startup message comes next.
        if code == Some(80_877_103) || code == Some(80_877_104) {
            client.write_all(b"N")?;
            continue;
        }
        server.write_all(&len)?;
        server.write_all(&body)?;
        break;
    }
    let mut statements: HashMap<String, String> = HashMap::new();
    loop {
        let mut head = [0u8; 5];
        if !read_exact_or_eof(&mut client, &mut head)? {
            return Ok(());
        }
        let n = u32::from_be_bytes(head[1..5].try_into().unwrap()) as usize;
        let mut body = vec![0u8; n.saturating_sub(4)];
        read_exact_or_eof(&mut client, &mut body)?;
        let sql = match head[0] {
            b'Q' => Some(cstr(&body, 0).0),
            b'P' => {
                let (name, next) = cstr(&body, 0);
                let (query, _) = cstr(&body, next);
                statements.insert(name, query);
                None
            }
            b'B' => {
                let (_, next) = cstr(&body, 0);
                let (statement, _) = cstr(&body, next);
                statements.get(&statement).cloned()
            }
            _ => None,
        };
        let action = sql.and_then(|sql| fire(shared, &sql));
        if action == Some(Action::CutBefore) {
            return Ok(());
        }
        if action == Some(Action::Partition) {
            let _ = client.shutdown(Shutdown::Both);
            wait_for_release(shared);
            return Ok(());
        }
        if let Some(action) = action {
            let mut answers = conn.answers.lock().unwrap();
            answers.before_fault = answers.unanswered;
            *conn.action.lock().unwrap() = Some(action);
        }
        if head[0] == b'Q' || head[0] == b'S' {
            conn.answers.lock().unwrap().unanswered += 1;
        }
        server.write_all(&head)?;
        server.write_all(&body)?;
        if *conn.action.lock().unwrap() == Some(Action::Stall) {
            // Forward what completes the statement (Execute, Sync), then
            // nothing.
            if head[0] == b'Q' || head[0] == b'S' {
                wait_for_release(shared);
                return Ok(());
            }
        }
    }
}

/// The NUL-terminated string at `at`, and the index after it.
fn cstr(body: &[u8], at: usize) -> (String, usize) {
    let rest = body.get(at..).unwrap_or_default();
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    (
        String::from_utf8_lossy(&rest[..end]).into_owned(),
        at + end + 1,
    )
}

fn server_to_client(
    mut server: &TcpStream,
    mut client: &TcpStream,
    shared: &Shared,
    conn: &ConnState,
) -> io::Result<()> {
    loop {
        let mut head = [0u8; 5];
        if !read_exact_or_eof(&mut server, &mut head)? {
            return Ok(());
        }
        let n = u32::from_be_bytes(head[1..5].try_into().unwrap()) as usize;
        let mut body = vec![0u8; n.saturating_sub(4)];
        read_exact_or_eof(&mut server, &mut body)?;
        let mut answers = conn.answers.lock().unwrap();
        let action = *conn.action.lock().unwrap();
        let earlier = answers.before_fault > 0;
        if head[0] == b'Z' {
            answers.unanswered = answers.unanswered.saturating_sub(1);
            if earlier {
                answers.before_fault -= 1;
            }
        }
        drop(answers);
        match action {
            Some(Action::DropAnswer) if !earlier => {
                if head[0] == b'Z' {
                    return Ok(());
                }
                continue;
            }
            Some(Action::Stall) => {
                wait_for_release(shared);
                return Ok(());
            }
            _ => {}
        }
        client.write_all(&head)?;
        client.write_all(&body)?;
    }
}
