//! The password file (`PGPASSFILE`, `~/.pgpass`) end to end: the local
//! test server trusts every connection and never asks for a password, so a
//! fake server in the test process asks for one (cleartext) and records
//! what it got. The store runs in a child process (this test binary run
//! again on one test) whose environment names the password file: the
//! environment is the child's own, never changed in this process.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

const CHILD: &str = "OUTBOX_PGPASS_CHILD_URL";

/// Accepts one connection, asks for a cleartext password, returns it.
fn fake_server(listener: &TcpListener) -> String {
    let (mut s, _) = listener.accept().unwrap();
    let read_message = |s: &mut std::net::TcpStream, typed: bool| -> (u8, Vec<u8>) {
        let mut tag = [0u8; 1];
        if typed {
            s.read_exact(&mut tag).unwrap();
        }
        let mut len = [0u8; 4];
        s.read_exact(&mut len).unwrap();
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize - 4];
        s.read_exact(&mut body).unwrap();
        (tag[0], body)
    };
    let (_, first) = read_message(&mut s, false);
    if first[..4] == 80_877_103u32.to_be_bytes() {
        s.write_all(b"N").unwrap(); // no TLS here
        read_message(&mut s, false); // the startup message
    }
    // AuthenticationCleartextPassword.
    s.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3]).unwrap();
    let (tag, body) = read_message(&mut s, true);
    assert_eq!(tag, b'p');
    let password = String::from_utf8(body[..body.len() - 1].to_vec()).unwrap();
    let fields = b"SFATAL\0C28P01\0Mfake server: password recorded\0\0";
    let mut error = vec![b'E'];
    error.extend(u32::try_from(fields.len() + 4).unwrap().to_be_bytes());
    error.extend(fields);
    s.write_all(&error).unwrap();
    password
}

/// The child's half: connect to the URL it was given (and fail: the fake
/// server refuses after reading the password). Does nothing in a normal run.
#[test]
fn pgpass_child() {
    if let Ok(url) = std::env::var(CHILD) {
        let e = outbox_postgres::PgOutbox::connect(&url).unwrap_err();
        assert!(e.to_string().contains("password recorded"), "{e}");
    }
}

fn run_child(url: &str, envs: &[(&str, &std::ffi::OsStr)]) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "password_file::pgpass_child", "--test-threads=1"])
        .env_clear()
        .env(CHILD, url);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A URL without a password takes the password file's (PGPASSFILE, then
/// ~/.pgpass), matched by host, port, database and user; PGPASSWORD comes
/// first (issue 20, item 17).
#[test]
fn the_password_comes_from_pgpassfile_pgpass_or_pgpassword() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let url = format!("postgres://alice@127.0.0.1:{port}/app?connect_timeout=10");
    let file = dir.path().join("passfile");
    std::fs::write(
        &file,
        format!("127.0.0.1:{port}:other:alice:wrong\n127.0.0.1:{port}:app:alice:s3cr\\:et\n"),
    )
    .unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();

    let server = std::thread::scope(|scope| {
        let server = scope.spawn(|| fake_server(&listener));
        run_child(&url, &[("PGPASSFILE", file.as_os_str())]);
        server.join().unwrap()
    });
    assert_eq!(server, "s3cr:et", "PGPASSFILE");

    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let pgpass = home.join(".pgpass");
    std::fs::write(&pgpass, format!("*:{port}:*:alice:from-home\n")).unwrap();
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let server = std::thread::scope(|scope| {
        let server = scope.spawn(|| fake_server(&listener));
        run_child(&url, &[("HOME", home.as_os_str())]);
        server.join().unwrap()
    });
    assert_eq!(server, "from-home", "~/.pgpass");

    let server = std::thread::scope(|scope| {
        let server = scope.spawn(|| fake_server(&listener));
        run_child(
            &url,
            &[
                ("HOME", home.as_os_str()),
                ("PGPASSWORD", std::ffi::OsStr::new("from-env")),
            ],
        );
        server.join().unwrap()
    });
    assert_eq!(server, "from-env", "PGPASSWORD first");
}
