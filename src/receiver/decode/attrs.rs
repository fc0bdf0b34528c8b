//! Attribute extraction: which keys matter and how their values fold into a record.

use crate::model::{flags, kind, rpc_code, status, Ext, Str};

/// The top-level value of an attribute's `AnyValue`, as far as the decoder cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Val {
    /// no value (no `AnyValue`, or one with no field of its oneof set)
    None,
    /// `string_value`, as a byte range (validated only when used)
    Str(usize, usize),
    /// `int_value`
    Int(i64),
    /// bool, double, array, kvlist, bytes, string index
    Other,
}

/// The attribute keys the decoder extracts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Key {
    Other,
    Route,
    HttpStatus,
    HttpStatusLegacy,
    GrpcStatus,
    RpcStatus,
    ServiceName,
    ServiceNamespace,
    EnvName,
    EnvLegacy,
    Version,
    PipelineName,
    PipelineResult,
    RunId,
    Task,
    Revision,
    DeploymentId,
    DeploymentStatus,
    ErrorType,
}

#[inline(always)]
pub(super) fn classify(key: &[u8]) -> Key {
    // Length first: most keys are none of these and differ in length from all of them.
    let k = match key.len() {
        10 if key == b"http.route" => Key::Route,
        10 if key == b"error.type" => Key::ErrorType,
        12 if key == b"service.name" => Key::ServiceName,
        13 if key == b"deployment.id" => Key::DeploymentId,
        15 if key == b"rpc.status_code" => Key::RpcStatus,
        15 if key == b"service.version" => Key::Version,
        16 if key == b"http.status_code" => Key::HttpStatusLegacy,
        17 if key == b"service.namespace" => Key::ServiceNamespace,
        17 if key == b"deployment.status" => Key::DeploymentStatus,
        18 if key == b"cicd.pipeline.name" => Key::PipelineName,
        20 if key == b"rpc.grpc.status_code" => Key::GrpcStatus,
        20 if key == b"cicd.pipeline.result" => Key::PipelineResult,
        20 if key == b"cicd.pipeline.run.id" => Key::RunId,
        21 if key == b"vcs.ref.head.revision" => Key::Revision,
        22 if key == b"deployment.environment" => Key::EnvLegacy,
        25 if key == b"http.response.status_code" => Key::HttpStatus,
        27 if key == b"deployment.environment.name" => Key::EnvName,
        _ => Key::Other,
    };
    if k == Key::Other && key.len() >= 19 && key.starts_with(b"cicd.pipeline.task.") {
        return Key::Task;
    }
    k
}

/// Attributes of one resource or span, folded as they come (last occurrence wins).
#[derive(Clone, Copy)]
pub(super) struct Attrs {
    /// any rare (`Ext`) key seen
    pub(super) rare: bool,
    pub(super) flags: u16,
    pub(super) service: Str,
    pub(super) namespace: Str,
    pub(super) env_name: Str,
    pub(super) env_legacy: Str,
    pub(super) version: Str,
    pub(super) route: Str,
    pub(super) http: u16,
    pub(super) http_legacy: u16,
    pub(super) grpc: u8,
    pub(super) rpc: u8,
    pub(super) pipeline_name: Str,
    pub(super) pipeline_result: Str,
    pub(super) run_id: Str,
    pub(super) run_id_int: Option<i64>,
    pub(super) revision: Str,
    pub(super) deployment_id: Str,
    pub(super) deployment_status: Str,
}

impl Attrs {
    pub(super) const NEW: Attrs = Attrs {
        rare: false,
        flags: 0,
        service: Str::EMPTY,
        namespace: Str::EMPTY,
        env_name: Str::EMPTY,
        env_legacy: Str::EMPTY,
        version: Str::EMPTY,
        route: Str::EMPTY,
        http: 0,
        http_legacy: 0,
        grpc: u8::MAX,
        rpc: rpc_code::ABSENT,
        pipeline_name: Str::EMPTY,
        pipeline_result: Str::EMPTY,
        run_id: Str::EMPTY,
        run_id_int: None,
        revision: Str::EMPTY,
        deployment_id: Str::EMPTY,
        deployment_status: Str::EMPTY,
    };

    #[inline(always)]
    pub(super) fn apply(&mut self, buf: &[u8], key: Key, v: Val) {
        let s = match v {
            Val::Str(a, b) => str_of(a, b),
            _ => Str::EMPTY,
        };
        match key {
            Key::Other => {}
            Key::Route => self.route = s,
            Key::HttpStatus => self.http = http_code(buf, v),
            Key::HttpStatusLegacy => self.http_legacy = http_code(buf, v),
            Key::GrpcStatus => {
                self.grpc = match v {
                    Val::Int(i @ 0..=16) => i as u8,
                    _ => u8::MAX,
                }
            }
            Key::RpcStatus => {
                self.rpc = match v {
                    Val::Str(..) => rpc_status(s.bytes(buf)),
                    _ => rpc_code::OTHER,
                }
            }
            Key::ServiceNamespace => self.namespace = s,
            Key::ServiceName => {
                self.rare = true;
                self.flags |= flags::RECORD_SERVICE;
                self.service = s;
            }
            Key::EnvName => {
                self.rare = true;
                self.env_name = s;
            }
            Key::EnvLegacy => {
                self.rare = true;
                self.env_legacy = s;
            }
            Key::Version => {
                self.rare = true;
                self.version = s;
            }
            Key::PipelineName => {
                self.rare = true;
                self.flags |= flags::CICD_PIPELINE;
                self.pipeline_name = s;
            }
            Key::PipelineResult => {
                self.rare = true;
                self.flags |= flags::CICD_RESULT;
                self.pipeline_result = s;
            }
            Key::RunId => {
                self.rare = true;
                self.run_id = s;
                self.run_id_int = match v {
                    Val::Int(i) => Some(i),
                    _ => None,
                };
            }
            Key::Task => {
                self.rare = true;
                self.flags |= flags::CICD_TASK;
            }
            Key::Revision => {
                self.rare = true;
                self.revision = s;
            }
            Key::DeploymentId => {
                self.rare = true;
                self.flags |= flags::DEPLOYMENT;
                self.deployment_id = s;
            }
            Key::DeploymentStatus => {
                self.rare = true;
                self.flags |= flags::DEPLOYMENT;
                self.deployment_status = s;
            }
            Key::ErrorType => {
                self.rare = true;
                self.flags |= flags::ERROR_TYPE;
            }
        }
    }

    /// The rule of [`crate::identity::environment`], on byte ranges.
    pub(super) fn environment(&self) -> Str {
        if self.env_name.is_empty() {
            self.env_legacy
        } else {
            self.env_name
        }
    }

    /// The rare attributes; the record-level identity (`service`, `environment`,
    /// `version`, `RECORD_SERVICE`) only when `record` (a span, not a resource).
    pub(super) fn ext(&self, buf: &[u8], max: usize, record: bool) -> Ext {
        let mut e = Ext {
            flags: self.flags,
            pipeline_name: self.pipeline_name,
            pipeline_result: self.pipeline_result,
            run_id: self.run_id,
            run_id_int: self.run_id_int,
            revision: self.revision,
            deployment_id: self.deployment_id,
            deployment_status: self.deployment_status,
            ..Ext::default()
        };
        if record {
            e.service = cut(buf, self.service, max);
            e.namespace = cut(buf, self.namespace, max);
            e.environment = cut(buf, self.environment(), max);
            e.version = cut(buf, self.version, max);
        } else {
            e.flags &= !flags::RECORD_SERVICE;
        }
        e
    }
}

#[inline]
pub(super) fn str_of(s: usize, e: usize) -> Str {
    // Offsets fit: decode_traces refuses buffers over u32::MAX bytes.
    Str {
        off: s as u32,
        len: (e - s) as u32,
    }
}

/// `s` cut to at most `max` bytes on a char boundary (`s` is valid UTF-8).
pub(super) fn cut(buf: &[u8], s: Str, max: usize) -> Str {
    if s.len as usize <= max {
        return s;
    }
    Str {
        off: s.off,
        len: crate::identity::cut_len(s.bytes(buf), max) as u32,
    }
}

fn http_code(buf: &[u8], v: Val) -> u16 {
    let n = match v {
        Val::Int(i) => i,
        Val::Str(a, b) => match buf
            .get(a..b)
            .and_then(|s| std::str::from_utf8(s).ok())
            .and_then(|s| s.parse::<i64>().ok())
        {
            Some(i) => i,
            None => return 0,
        },
        _ => return 0,
    };
    if (100..=999).contains(&n) {
        n as u16
    } else {
        0
    }
}

fn rpc_status(s: &[u8]) -> u8 {
    match s {
        b"UNKNOWN" => rpc_code::UNKNOWN,
        b"DEADLINE_EXCEEDED" => rpc_code::DEADLINE_EXCEEDED,
        b"UNIMPLEMENTED" => rpc_code::UNIMPLEMENTED,
        b"INTERNAL" => rpc_code::INTERNAL,
        b"UNAVAILABLE" => rpc_code::UNAVAILABLE,
        b"DATA_LOSS" => rpc_code::DATA_LOSS,
        _ => rpc_code::OTHER,
    }
}

pub(super) fn kind_of(raw: i32) -> u8 {
    match raw {
        0..=5 => raw as u8,
        _ => kind::UNSPECIFIED,
    }
}

pub(super) fn status_of(raw: i32) -> u8 {
    match raw {
        0..=2 => raw as u8,
        _ => status::UNSET,
    }
}
