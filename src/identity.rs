//! Pair identity: which (service, environment) a piece of telemetry belongs to.
//!
//! Everything momentum derives is kept per *pair*: a service (`service.namespace` +
//! `service.name`) in one environment (`deployment.environment.name`, else the older
//! `deployment.environment`). Spans, metric points, log records and archived span rows all
//! resolve their pair here, by one set of rules (docs/configuration.md, "Pairs"):
//!
//! - the **last** occurrence of a repeated key wins, and only a string value counts (a
//!   repeated key whose last value is not a string reads as absent);
//! - `deployment.environment.name` when it is non-empty, else `deployment.environment`;
//! - every identity value is cut to `limits.max_value_bytes` bytes on a UTF-8 character
//!   boundary, so a long name is the same pair whichever signal carries it;
//! - the service name is `namespace/name` (just `name` without a namespace) and
//!   [`UNKNOWN_SERVICE`] when `service.name` is missing or empty;
//! - pairs beyond `limits.max_services` share one overflow pair named [`OVERFLOW`].
//!
//! The zero-copy span decoder folds attributes byte by byte for speed; it cuts with [`cut_len`]
//! and picks the environment as [`environment`] does, and `tests/identity.rs` checks it against
//! [`resource_identity`] through the running binary. This module imports nothing from the
//! rest of the crate: every layer may use it.

use std::hash::Hasher;

use opentelemetry_proto::tonic::common::v1::{any_value::Value, KeyValue};
use rustc_hash::FxHasher;

/// The service name used when a resource has no `service.name`.
pub const UNKNOWN_SERVICE: &str = "unknown_service";
/// The label value that absorbs keys beyond a limit (services, operations, pipelines).
pub const OVERFLOW: &str = "__overflow__";

/// The hash of a pair's identity as decoded: (namespace, name, environment). The router
/// and the shard use the same function, so the shard never re-hashes differently.
#[inline]
pub fn pair_hash(namespace: &[u8], name: &[u8], environment: &[u8]) -> u64 {
    let mut h = FxHasher::default();
    h.write(namespace);
    h.write_u8(0xff);
    h.write(name);
    h.write_u8(0xff);
    h.write(environment);
    h.finish()
}

/// The shard of a pair hash.
#[inline]
pub fn shard_of(hash: u64, shards: usize) -> usize {
    // High bits: FxHash's low bits are weak for short keys.
    ((hash >> 32) as usize) % shards.max(1)
}

/// The service name: `namespace/name`, [`UNKNOWN_SERVICE`] without a name.
pub fn service_name(ns: &[u8], name: &[u8]) -> String {
    let name = if name.is_empty() {
        UNKNOWN_SERVICE.to_string()
    } else {
        String::from_utf8_lossy(name).into_owned()
    };
    if ns.is_empty() {
        name
    } else {
        format!("{}/{}", String::from_utf8_lossy(ns), name)
    }
}

/// Whether `service` is the name [`service_name`] gives (`ns`, `name`), without building it.
pub fn is_service_name(service: &str, ns: &[u8], name: &[u8]) -> bool {
    let s = service.as_bytes();
    let name: &[u8] = if name.is_empty() {
        UNKNOWN_SERVICE.as_bytes()
    } else {
        name
    };
    if ns.is_empty() {
        s == name
    } else {
        s.len() == ns.len() + 1 + name.len()
            && &s[..ns.len()] == ns
            && s[ns.len()] == b'/'
            && &s[ns.len() + 1..] == name
    }
}

/// The length of valid UTF-8 `b` cut to at most `max` bytes on a character boundary.
#[inline]
pub fn cut_len(b: &[u8], max: usize) -> usize {
    if b.len() <= max {
        return b.len();
    }
    let mut n = max;
    // Back off continuation bytes (10xxxxxx) to the start of the char straddling `max`.
    while n > 0 && b[n] & 0xC0 == 0x80 {
        n -= 1;
    }
    n
}

/// `s` cut to at most `max` bytes on a character boundary.
pub fn cut(s: &str, max: usize) -> &str {
    &s[..cut_len(s.as_bytes(), max)]
}

/// The environment of a resource: `deployment.environment.name` when non-empty, else
/// `deployment.environment`.
#[inline]
pub fn environment<'a>(name: &'a str, legacy: &'a str) -> &'a str {
    if name.is_empty() {
        legacy
    } else {
        name
    }
}

/// The string value of the last occurrence of `key`; None when absent or not a string.
pub fn str_attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attrs.iter().rev().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        }
    })
}

/// A resource's (or a record's) identity attributes, resolved and cut.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Identity<'a> {
    /// `service.namespace`
    pub namespace: &'a str,
    /// `service.name` ("" when absent)
    pub name: &'a str,
    /// `deployment.environment.name`, else `deployment.environment`
    pub environment: &'a str,
    /// `service.version`
    pub version: &'a str,
}

impl Identity<'_> {
    /// The pair's service name (`namespace/name`).
    pub fn service(&self) -> String {
        service_name(self.namespace.as_bytes(), self.name.as_bytes())
    }

    /// The pair's hash ([`pair_hash`]).
    pub fn hash(&self) -> u64 {
        pair_hash(
            self.namespace.as_bytes(),
            self.name.as_bytes(),
            self.environment.as_bytes(),
        )
    }
}

/// The identity OTLP attributes name, by the rules of this module; values cut to `max`.
pub fn resource_identity(attrs: &[KeyValue], max: usize) -> Identity<'_> {
    let s = |k: &str| cut(str_attr(attrs, k).unwrap_or(""), max);
    Identity {
        namespace: s("service.namespace"),
        name: s("service.name"),
        environment: environment(
            s("deployment.environment.name"),
            s("deployment.environment"),
        ),
        version: s("service.version"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::AnyValue;

    fn kv(k: &str, v: Value) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }
    fn s(k: &str, v: &str) -> KeyValue {
        kv(k, Value::StringValue(v.into()))
    }

    #[test]
    fn the_last_string_occurrence_wins_and_a_non_string_last_reads_as_absent() {
        let a = [s("service.name", "a"), s("service.name", "b")];
        assert_eq!(resource_identity(&a, 256).name, "b");
        let a = [
            s("service.name", "a"),
            kv("service.name", Value::IntValue(3)),
        ];
        assert_eq!(resource_identity(&a, 256).name, "");
        assert_eq!(resource_identity(&a, 256).service(), UNKNOWN_SERVICE);
    }

    #[test]
    fn the_environment_name_wins_unless_empty() {
        let a = [
            s("deployment.environment", "legacy"),
            s("deployment.environment.name", "new"),
        ];
        assert_eq!(resource_identity(&a, 256).environment, "new");
        let a = [
            s("deployment.environment", "legacy"),
            s("deployment.environment.name", ""),
        ];
        assert_eq!(resource_identity(&a, 256).environment, "legacy");
        assert_eq!(resource_identity(&[], 256).environment, "");
    }

    #[test]
    fn values_are_cut_on_a_char_boundary() {
        // "é" is 2 bytes: a cut at 4 of "aaaé" (5 bytes) keeps "aaa".
        assert_eq!(cut("aaaé", 4), "aaa");
        assert_eq!(cut("aaaé", 5), "aaaé");
        assert_eq!(cut("abc", 0), "");
        let a = [
            s("service.namespace", "shop"),
            s("service.name", "checkout"),
        ];
        let id = resource_identity(&a, 4);
        assert_eq!((id.namespace, id.name), ("shop", "chec"));
        assert_eq!(id.service(), "shop/chec");
        assert_eq!(id.hash(), pair_hash(b"shop", b"chec", b""));
    }

    #[test]
    fn a_service_name_matches_what_service_name_builds() {
        for (ns, name) in [("", ""), ("", "a"), ("shop", "a"), ("shop", "")] {
            let built = service_name(ns.as_bytes(), name.as_bytes());
            assert!(is_service_name(&built, ns.as_bytes(), name.as_bytes()));
            assert!(!is_service_name(&built, b"x", name.as_bytes()));
        }
        assert!(!is_service_name("shopa", b"shop", b"a"));
    }
}
