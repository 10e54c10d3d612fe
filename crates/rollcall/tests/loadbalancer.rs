//! The load-balancer integration, for real: nginx (Debian's package) proxies to two backends
//! whose agents carry `group=web` and `addr=HOST:PORT` labels; `rollcall upstreams` keeps
//! nginx's upstream block current. Killing one backend's agent takes it out of the rendered
//! file and, after nginx's reload, out of rotation.

mod support;

use nix::sys::signal::Signal;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{Agent, Monitor, Sandbox, bin};

const NGINX: &str = "/usr/sbin/nginx";

/// A tiny HTTP backend answering every request with its name, on a thread.
fn backend(name: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut reader = BufReader::new(stream.try_clone().expect("clones"));
            let mut line = String::new();
            // Read the request head, then answer and close.
            while reader.read_line(&mut line).unwrap_or(0) > 2 {
                line.clear();
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{name}",
                name.len()
            );
        }
    });
    port
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One request through nginx: the name of the backend that answered.
fn through(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.starts_with("HTTP/1.1 200").then(|| answer.rsplit("\r\n\r\n").next().unwrap_or("").to_string())
}

fn nginx_config(dir: &Path, port: u16) -> String {
    let d = dir.display();
    // Root runs workers as "nobody" by default, who cannot enter a private temp dir.
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status.lines().any(|line| line.starts_with("Uid:") && line.split_whitespace().nth(2) == Some("0"))
    });
    let user = if root { "user root;" } else { "" };
    format!(
        "{user}\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/nginx-error.log;\nworker_processes 1;\nevents {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/t1; proxy_temp_path {d}/t2; fastcgi_temp_path {d}/t3; uwsgi_temp_path {d}/t4; scgi_temp_path {d}/t5;\n  include {d}/upstream.conf;\n  server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://web; proxy_next_upstream off; }} }}\n}}\n"
    )
}

/// A child stopped and reaped on drop. nginx's master must be asked (SIGTERM), not killed,
/// or its worker outlives it.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits up to 30 s until `done`.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let probe = || if done() { Ok(()) } else { Err("not yet".to_owned()) };
    support::wait_until(Duration::from_secs(30), what, probe, String::new);
}

#[test]
fn a_dead_backend_leaves_the_nginx_upstream() {
    assert!(
        Path::new(NGINX).exists(),
        "nginx is missing: `cargo xtask test` installs it (apt-get install nginx)"
    );
    let sandbox = Sandbox::new();
    let dir = sandbox.path().to_path_buf();
    let monitor =
        Monitor::start(&sandbox, "[phi]\nacceptable_pause = \"300ms\"\nmin_std_deviation = \"50ms\"\n");
    let (port_a, port_b) = (backend("backend-a"), backend("backend-b"));
    let addr = |port: u16| format!("127.0.0.1:{port}");
    let (addr_a, addr_b) = (addr(port_a), addr(port_b));
    let _agent_a = Agent::start(
        &sandbox,
        "a",
        monitor.udp,
        Duration::from_millis(200),
        &[("group", "web"), ("addr", &addr_a)],
    );
    let agent_b = Agent::start(
        &sandbox,
        "b",
        monitor.udp,
        Duration::from_millis(200),
        &[("group", "web"), ("addr", &addr_b)],
    );
    monitor.wait_for_state("a", "up");
    monitor.wait_for_state("b", "up");

    let api = format!("http://{}", monitor.http);
    let upstream = dir.join("upstream.conf");
    let once = Command::new(bin())
        .args(["upstreams", "--group", "web", "--format", "nginx", "--once", "--api", &api, "--output"])
        .arg(&upstream)
        .output()
        .expect("rollcall upstreams runs");
    assert!(once.status.success(), "{}", String::from_utf8_lossy(&once.stderr));
    let rendered = std::fs::read_to_string(&upstream).unwrap();
    assert!(rendered.contains(&addr_a) && rendered.contains(&addr_b), "{rendered}");

    let nginx_port = free_port();
    let config = dir.join("nginx.conf");
    std::fs::write(&config, nginx_config(&dir, nginx_port)).unwrap();
    let nginx = Reaped(
        Command::new(NGINX)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&config)
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts"),
    );
    wait_until("nginx to serve both backends", || {
        let seen: BTreeSet<String> = (0..10).filter_map(|_| through(nginx_port)).collect();
        seen.len() == 2
    });

    let reload = format!("{NGINX} -p {} -c {} -s reload", dir.display(), config.display());
    let _follow = Reaped(
        Command::new(bin())
            .args([
                "upstreams",
                "--group",
                "web",
                "--format",
                "nginx",
                "--api",
                &api,
                "--reload",
                &reload,
                "--output",
            ])
            .arg(&upstream)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rollcall upstreams follows"),
    );

    agent_b.signal(Signal::SIGKILL);
    monitor.wait_for_state("b", "down");
    wait_until("b to leave the rendered upstream", || {
        std::fs::read_to_string(&upstream).is_ok_and(|text| text.contains(&addr_a) && !text.contains(&addr_b))
    });
    wait_until("nginx to route to a only", || {
        (0..10).all(|_| through(nginx_port).as_deref() == Some("backend-a"))
    });
    drop(nginx);
}
