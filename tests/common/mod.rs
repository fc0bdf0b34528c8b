//! Shared helpers of the integration tests: start the real binary on OS-chosen ports,
//! talk to it over real sockets, stop it with a signal.
#![allow(dead_code)]

pub mod certs;
pub mod sinks;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `momentum` process.
pub struct Proc {
    pub child: Child,
    pub grpc: String,
    pub http: String,
    pub admin: String,
    pub dir: tempfile::TempDir,
    /// the rest of its stdout (kept open: a closed pipe would fail its next line)
    pub stdout: BufReader<std::process::ChildStdout>,
}

/// The config every test starts from: all ports OS-chosen; `extra` is appended.
pub fn config_yaml(extra: &str) -> String {
    format!(
        "receivers:\n  otlp:\n    grpc: {{ endpoint: 127.0.0.1:0 }}\n    http: {{ endpoint: 127.0.0.1:0 }}\nadmin: {{ endpoint: 127.0.0.1:0 }}\n{extra}"
    )
}

impl Proc {
    /// Starts the binary with `yaml` as its config and waits for its ready line.
    pub fn start(yaml: &str) -> Proc {
        Self::start_with_env(yaml, &[])
    }

    /// As [`Proc::start`], with extra environment variables (the test hooks).
    pub fn start_with_env(yaml: &str, env: &[(&str, &str)]) -> Proc {
        Self::start_command("run", yaml, env)
    }

    /// `momentum <command> --config <yaml>` (run, demo), with extra environment variables.
    pub fn start_command(command: &str, yaml: &str, env: &[(&str, &str)]) -> Proc {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("momentum.yaml");
        std::fs::write(&cfg, yaml).expect("write config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_momentum"))
            .args([command, "--config"])
            .arg(&cfg)
            .envs(env.iter().copied())
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn momentum");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        let mut stdout = BufReader::new(stdout);
        stdout.read_line(&mut line).expect("read ready line");
        let field = |k: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{k}=")))
                .unwrap_or_else(|| panic!("no {k}= in ready line {line:?}"))
                .to_string()
        };
        Proc {
            grpc: field("grpc"),
            http: field("http"),
            admin: field("admin"),
            child,
            dir,
            stdout,
        }
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        signal(&self.child, "TERM");
        wait_exit(&mut self.child, Duration::from_secs(30))
    }

    /// GET on the admin endpoint.
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        let (s, _, b) = http_request(&self.admin, "GET", path, &[], &[]);
        (s, String::from_utf8_lossy(&b).into_owned())
    }

    /// The /metrics text.
    pub fn metrics(&self) -> String {
        let (s, body) = self.admin_get("/metrics");
        assert_eq!(s, 200, "GET /metrics");
        body
    }

    /// Polls /metrics until `f` accepts it; panics, with the last text, after `secs`
    /// seconds (a wait never ends silently).
    pub fn wait_metrics(&self, secs: u64, f: impl Fn(&str) -> bool) -> String {
        poll(secs, "/metrics to satisfy the test's condition", |last| {
            let m = self.metrics();
            if f(&m) {
                return Some(m);
            }
            *last = format!("last /metrics:\n{m}");
            None
        })
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn signal(child: &Child, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status();
}

pub fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A minimal HTTP/1.1 request over a fresh connection: (status, headers, body).
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    // The server may answer (413) and close before reading an oversize body: a failed
    // write is not the test's failure, the answer is.
    let _ = s.write_all(req.as_bytes()).and_then(|_| s.write_all(body));
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status");
    let hdrs: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    if hdrs
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    (status, hdrs, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
    out
}

/// The value of the sample `name{labels}` where every `(k, v)` of `labels` matches
/// (other labels may be present), summed over all matching samples; None when absent.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut sum = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = match line.rsplit_once(' ') {
            Some(x) => x,
            None => continue,
        };
        let (n, l) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        if n != name {
            continue;
        }
        let ok = labels
            .iter()
            .all(|(k, v)| l.split(',').any(|kv| kv == format!("{k}=\"{v}\"")));
        if ok {
            let v: f64 = value.parse().expect("sample value");
            sum = Some(sum.unwrap_or(0.0) + v);
        }
    }
    sum
}

/// The Python interpreter of the test venv (set up by ./test.sh).
pub fn python() -> Option<PathBuf> {
    std::env::var_os("MOMENTUM_PYTHON").map(PathBuf::from)
}

/// Runs a script under tests/py with the venv's Python and returns its JSON line.
pub fn run_py(script: &str, args: &[&str]) -> serde_json::Value {
    let py = python().expect("MOMENTUM_PYTHON is not set: run the suite through ./test.sh");
    let out = Command::new(py)
        .arg(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/py")
                .join(script),
        )
        .args(args)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("JSON line")
}

/// Like [`run_py`], but kills the script and fails the test after `secs` seconds.
pub fn run_py_bounded(script: &str, args: &[&str], secs: u64) -> serde_json::Value {
    let py = python().expect("MOMENTUM_PYTHON is not set: run the suite through ./test.sh");
    let mut child = Command::new(py)
        .arg(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/py")
                .join(script),
        )
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = wait_exit(&mut child, Duration::from_secs(secs));
    let stdout = out_t.join().unwrap_or_default();
    let stderr = err_t.join().unwrap_or_default();
    assert!(
        status.success(),
        "{script} failed: {status}\nstdout: {stdout}\nstderr: {stderr}"
    );
    serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{script}: no JSON line ({e}): {stdout}\nstderr: {stderr}"))
}

/// Sends every request over one OTLP/gRPC connection to `grpc` (host:port), each after
/// the previous one answered; panics on a refusal or a partial success.
pub fn grpc_export(
    grpc: &str,
    requests: Vec<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest>,
) {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut client = TraceServiceClient::connect(format!("http://{grpc}"))
            .await
            .expect("connect to the gRPC receiver");
        for r in requests {
            let answer = client.export(r).await.expect("export admitted");
            assert!(
                answer.get_ref().partial_success.is_none(),
                "partial success: {answer:?}"
            );
        }
    });
}

/// A string attribute.
pub fn kv(k: &str, v: &str) -> opentelemetry_proto::tonic::common::v1::KeyValue {
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

/// Polls `f` every 50 ms until it gives a value; panics (saying `what` and the last
/// state `f` reported through `last`) after `secs` seconds: a wait that fails loudly.
pub fn poll<T>(secs: u64, what: &str, mut f: impl FnMut(&mut String) -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut last = String::new();
    loop {
        if let Some(v) = f(&mut last) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what} within {secs} s: {last}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The protobuf bytes of an `AnyValue` nesting `depth` kvlists around a string, built
/// outside in without prost (whose encoder recurses): for hostile-input tests.
pub fn deep_kvlist(depth: usize) -> Vec<u8> {
    let vl = |x: usize| (usize::BITS - (x | 1).leading_zeros()).div_ceil(7) as usize;
    // lengths, inside out: AnyValue, KeyValue, KeyValueList of each level
    let (mut av, mut kv, mut kvl) = (vec![3usize], vec![0], vec![0]);
    for i in 1..depth {
        kv.push(3 + 1 + vl(av[i - 1]) + av[i - 1]);
        kvl.push(1 + vl(kv[i]) + kv[i]);
        av.push(1 + vl(kvl[i]) + kvl[i]);
    }
    let put = |b: &mut Vec<u8>, x: usize| prost::encoding::encode_varint(x as u64, b);
    let mut value = Vec::with_capacity(av[depth - 1]);
    for i in (1..depth).rev() {
        value.push(0x32); // kvlist_value
        put(&mut value, kvl[i]);
        value.push(0x0a); // values
        put(&mut value, kv[i]);
        value.extend_from_slice(&[0x0a, 0x01, b'k', 0x12]); // key "k", value
        put(&mut value, av[i - 1]);
    }
    value.extend_from_slice(&[0x0a, 0x01, b'x']);
    assert_eq!(value.len(), av[depth - 1]);
    value
}

/// `body` as a length-delimited field with the one-byte key `tag`, appended to `out`.
pub fn field(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    out.push(tag);
    prost::encoding::encode_varint(body.len() as u64, out);
    out.extend_from_slice(body);
}

/// An HTTP/2 connection (prior knowledge) to `addr`, driven on the current runtime: its
/// request sender.
pub async fn h2_connect<B>(addr: &str) -> hyper::client::conn::http2::SendRequest<B>
where
    B: http_body::Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("HTTP/2 handshake");
    tokio::spawn(conn);
    send
}

/// Sum of every sample of family `name` (`name{...} v` or `name v` lines) whose line
/// contains `with` (`k="v"`), or all when `with` is empty.
#[allow(dead_code)]
pub fn family_sum(text: &str, name: &str, with: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
                && l.contains(with)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Debian's chromium (`MOMENTUM_CHROMIUM`, else the first on PATH), headless, with a
/// throw-away profile in `profile` and the flags a sandboxless CI needs.
#[allow(dead_code)]
pub fn chromium(profile: &std::path::Path) -> Command {
    let bin = std::env::var_os("MOMENTUM_CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| {
            ["chromium", "chromium-browser"].iter().find_map(|c| {
                let o = Command::new("sh")
                    .args(["-c", &format!("command -v {c}")])
                    .output()
                    .ok()?;
                let p = String::from_utf8_lossy(&o.stdout).trim().to_string();
                (o.status.success() && !p.is_empty()).then(|| PathBuf::from(p))
            })
        })
        .expect("chromium is not installed: run the suite through ./test.sh (it installs Debian's chromium)");
    let mut c = Command::new(bin);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    c
}
