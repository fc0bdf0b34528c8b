//! Scalar config values: how each is read from YAML and what a bad one is told.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde_yaml::Value;

use super::*;

/// A short description of a YAML value for "expected X, found Y" messages.
pub(super) fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing (null)".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("string {s:?}"),
        Value::Sequence(_) => "a sequence".to_string(),
        Value::Mapping(_) => "a mapping".to_string(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

/// A scalar config value.
pub(super) trait Leaf: Sized {
    fn from_value(v: &Value) -> Result<Self, String>;
}

impl Leaf for u64 {
    fn from_value(v: &Value) -> Result<u64, String> {
        v.as_u64()
            .ok_or_else(|| format!("expected a non-negative integer, found {}", describe(v)))
    }
}

impl Leaf for usize {
    fn from_value(v: &Value) -> Result<usize, String> {
        let n = u64::from_value(v)?;
        usize::try_from(n).map_err(|_| format!("{n} is too large"))
    }
}

impl Leaf for f64 {
    fn from_value(v: &Value) -> Result<f64, String> {
        match v {
            Value::Number(n) => n
                .as_f64()
                .ok_or_else(|| format!("expected a number, found {n}")),
            _ => Err(format!("expected a number, found {}", describe(v))),
        }
    }
}

impl Leaf for bool {
    fn from_value(v: &Value) -> Result<bool, String> {
        v.as_bool()
            .ok_or_else(|| format!("expected true or false, found {}", describe(v)))
    }
}

impl Leaf for String {
    fn from_value(v: &Value) -> Result<String, String> {
        match v {
            Value::String(s) => Ok(s.clone()),
            _ => Err(format!("expected a string, found {}", describe(v))),
        }
    }
}

impl Leaf for PathBuf {
    fn from_value(v: &Value) -> Result<PathBuf, String> {
        match v {
            Value::String(s) if s.is_empty() => Err("must not be empty".to_string()),
            Value::String(s) => Ok(PathBuf::from(s)),
            _ => Err(format!("expected a path, found {}", describe(v))),
        }
    }
}

impl Leaf for Duration {
    fn from_value(v: &Value) -> Result<Duration, String> {
        match v {
            Value::String(s) => s.parse().map_err(|e: ParseDurationError| e.to_string()),
            Value::Number(n) => Err(ParseDurationError(n.to_string()).to_string()),
            _ => Err(format!(
                "expected a duration such as 10s, found {}",
                describe(v)
            )),
        }
    }
}

impl Leaf for SocketAddr {
    fn from_value(v: &Value) -> Result<SocketAddr, String> {
        match v {
            Value::String(s) => s.parse().map_err(|_| {
                format!("invalid endpoint {s:?} (expected ip:port, e.g. 127.0.0.1:4317)")
            }),
            _ => Err(format!(
                "expected an endpoint ip:port, found {}",
                describe(v)
            )),
        }
    }
}

/// An `http://` or `https://` URL with a host (and, if any, a numeric port).
pub(super) struct HttpUrl(pub(super) String);

impl Leaf for HttpUrl {
    fn from_value(v: &Value) -> Result<HttpUrl, String> {
        let Value::String(s) = v else {
            return Err(format!("expected an http(s) URL, found {}", describe(v)));
        };
        let invalid =
            || format!("invalid URL {s:?} (expected http://host[:port][/path] or https://...)");
        let rest = s
            .strip_prefix("http://")
            .or_else(|| s.strip_prefix("https://"))
            .ok_or_else(invalid)?;
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host_port = authority.rsplit('@').next().unwrap_or("");
        let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
            // [ipv6]:port
            let (ip, after) = bracketed.split_once(']').ok_or_else(invalid)?;
            (ip, after.strip_prefix(':'))
        } else {
            match host_port.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (host_port, None),
            }
        };
        let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok());
        if host.is_empty() || !port_ok || s.chars().any(char::is_whitespace) {
            return Err(invalid());
        }
        Ok(HttpUrl(s.clone()))
    }
}

/// Reads one of a fixed set of names.
fn choice<T: Copy>(v: &Value, choices: &[(&str, T)]) -> Result<T, String> {
    if let Value::String(s) = v {
        if let Some((_, t)) = choices.iter().find(|(name, _)| name == s) {
            return Ok(*t);
        }
    }
    let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
    Err(format!(
        "must be one of {}; found {}",
        names.join(", "),
        describe(v)
    ))
}

impl Leaf for OperationSource {
    fn from_value(v: &Value) -> Result<Self, String> {
        choice(
            v,
            &[
                ("span_name", OperationSource::SpanName),
                ("http.route", OperationSource::HttpRoute),
            ],
        )
    }
}

impl Leaf for OtlpProtocol {
    fn from_value(v: &Value) -> Result<Self, String> {
        choice(
            v,
            &[("grpc", OtlpProtocol::Grpc), ("http", OtlpProtocol::Http)],
        )
    }
}

impl Leaf for Signal {
    fn from_value(v: &Value) -> Result<Self, String> {
        choice(
            v,
            &[
                ("traces", Signal::Traces),
                ("metrics", Signal::Metrics),
                ("logs", Signal::Logs),
            ],
        )
    }
}

impl Leaf for Compression {
    fn from_value(v: &Value) -> Result<Self, String> {
        choice(
            v,
            &[
                ("zstd", Compression::Zstd),
                ("snappy", Compression::Snappy),
                ("none", Compression::None),
            ],
        )
    }
}
