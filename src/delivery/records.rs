//! Explicit deployment records (the README's Delivery signals) and where they count.
//!
//! A span or log record carrying `deployment.id` and/or `deployment.status` is an explicit
//! deployment record. [`DeployAttrs`] holds the attributes that decide one, read either
//! from the zero-copy span decoder's [`Ext`]/[`ResourceRec`] or from OTLP `KeyValue`s (log
//! records), and [`DeployAttrs::record`] applies the one precedence rule both use.
//!
//! Records that must travel on their own to a pair's shard — every log deployment record,
//! and a deployment span whose record-level `service.name` names another pair than its
//! resource — are grouped per pair as owned [`PairRecords`]. Ordinary log records and
//! ordinary spans never get here: for logs, a key scan of the record's attributes; for
//! spans, one pass over the batch's rare-attribute records ([`TraceBatch::ext`]).

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;

use crate::identity::{pair_hash, resource_identity, str_attr};
use crate::model::{flags, Ext, ResourceRec, TraceBatch};

/// One explicit deployment record, owned (it crosses to another shard).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeployRecord {
    /// event time: span end, or log record time (else observed time); 0 when unknown
    pub time_ns: u64,
    /// `deployment.id`
    pub id: Option<String>,
    /// `deployment.status`
    pub status: Option<String>,
    /// the version deployed ("" when the record names none)
    pub version: String,
    /// `vcs.ref.head.revision`
    pub revision: Option<String>,
}

/// The deployment records of one pair.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PairRecords {
    /// service.namespace
    pub namespace: String,
    /// service.name
    pub name: String,
    /// environment
    pub environment: String,
    /// pair hash (as the router computes it)
    pub hash: u64,
    /// the records, in request order
    pub records: Vec<DeployRecord>,
}

/// The attributes of a record or of a resource that decide a deployment record
/// ("" = absent or not a string).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeployAttrs<'a> {
    /// service.name
    pub service: &'a str,
    /// service.namespace
    pub namespace: &'a str,
    /// deployment.environment.name, else deployment.environment
    pub environment: &'a str,
    /// service.version
    pub version: &'a str,
    /// deployment.id
    pub id: &'a str,
    /// deployment.status
    pub status: &'a str,
    /// vcs.ref.head.revision
    pub revision: &'a str,
}

/// A record resolved against its resource: what `Delivery::explicit` takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resolved<'a> {
    /// deployment.id
    pub id: Option<&'a str>,
    /// deployment.status
    pub status: Option<&'a str>,
    /// the version deployed
    pub version: &'a str,
    /// revision for lead time
    pub revision: Option<&'a str>,
}

impl Resolved<'_> {
    /// The owned record at `time_ns`.
    pub fn to_record(&self, time_ns: u64) -> DeployRecord {
        DeployRecord {
            time_ns,
            id: self.id.map(str::to_string),
            status: self.status.map(str::to_string),
            version: self.version.to_string(),
            revision: self.revision.map(str::to_string),
        }
    }
}

fn nonempty(s: &str) -> Option<&str> {
    Some(s).filter(|x| !x.is_empty())
}

impl<'a> DeployAttrs<'a> {
    /// A span's record-level attributes (its [`Ext`]).
    pub fn of_ext(buf: &'a [u8], e: &Ext) -> Self {
        DeployAttrs {
            service: e.service.as_str(buf),
            namespace: e.namespace.as_str(buf),
            environment: e.environment.as_str(buf),
            version: e.version.as_str(buf),
            id: e.deployment_id.as_str(buf),
            status: e.deployment_status.as_str(buf),
            revision: e.revision.as_str(buf),
        }
    }

    /// A trace resource's attributes.
    pub fn of_resource(buf: &'a [u8], r: &ResourceRec) -> Self {
        DeployAttrs {
            service: r.service.as_str(buf),
            namespace: r.namespace.as_str(buf),
            environment: r.environment.as_str(buf),
            version: r.version.as_str(buf),
            id: r.ext.deployment_id.as_str(buf),
            status: r.ext.deployment_status.as_str(buf),
            revision: r.ext.revision.as_str(buf),
        }
    }

    /// OTLP attributes (a log record's or a resource's), with the span decoder's rules
    /// ([`crate::identity`]): the last occurrence of a key wins, only string values count,
    /// identity values are cut to `max` bytes on a char boundary.
    pub fn of_attrs(attrs: &'a [KeyValue], max: usize) -> Self {
        let s = |k: &str| str_attr(attrs, k).unwrap_or("");
        let id = resource_identity(attrs, max);
        DeployAttrs {
            service: id.name,
            namespace: id.namespace,
            environment: id.environment,
            version: id.version,
            id: s("deployment.id"),
            status: s("deployment.status"),
            revision: s("vcs.ref.head.revision"),
        }
    }

    /// The pair a record names with its own `service.name`: (namespace, name,
    /// environment), the environment falling back to the resource's. None when the
    /// record carries no `service.name` (it counts for its resource's pair).
    pub fn named_pair(&self, resource: &DeployAttrs<'a>) -> Option<(&'a str, &'a str, &'a str)> {
        if self.service.is_empty() {
            return None;
        }
        let env = nonempty(self.environment).unwrap_or(resource.environment);
        Some((self.namespace, self.service, env))
    }

    /// The resource's own pair: (namespace, name, environment).
    pub fn pair(&self) -> (&'a str, &'a str, &'a str) {
        (self.namespace, self.service, self.environment)
    }

    /// The deployment this record describes: a record attribute wins over the
    /// resource's; the version falls back to the resource's `service.version` only when
    /// the record counts for its resource's pair (`own`) — a record naming another
    /// service does not deploy its sender's version.
    pub fn record(&self, resource: &DeployAttrs<'a>, own: bool) -> Resolved<'a> {
        let pick = |a: &'a str, b: &'a str| nonempty(a).or_else(|| nonempty(b));
        Resolved {
            id: pick(self.id, resource.id),
            status: pick(self.status, resource.status),
            version: nonempty(self.version)
                .or_else(|| own.then_some(resource.version))
                .unwrap_or(""),
            revision: pick(self.revision, resource.revision),
        }
    }
}

/// Adds `rec` to the records of pair (ns, name, env).
fn push(out: &mut Vec<PairRecords>, (ns, name, env): (&str, &str, &str), rec: DeployRecord) {
    let hash = pair_hash(ns.as_bytes(), name.as_bytes(), env.as_bytes());
    match out
        .iter_mut()
        .find(|p| p.hash == hash && p.name == name && p.namespace == ns && p.environment == env)
    {
        Some(p) => p.records.push(rec),
        None => out.push(PairRecords {
            namespace: ns.to_string(),
            name: name.to_string(),
            environment: env.to_string(),
            hash,
            records: vec![rec],
        }),
    }
}

/// The deployment records of a logs request, per pair, and how many log records
/// were deployment records. A log record is one when its own attributes carry
/// `deployment.id` or `deployment.status` (any value); its resource fills in what it
/// lacks (see [`DeployAttrs::record`]). Event time = `time_unix_nano`, else
/// `observed_time_unix_nano`.
pub fn from_logs(req: &ExportLogsServiceRequest, max: usize) -> (Vec<PairRecords>, u64) {
    let mut out = Vec::new();
    let mut n = 0u64;
    for rl in &req.resource_logs {
        let rattrs = rl
            .resource
            .as_ref()
            .map(|r| &r.attributes[..])
            .unwrap_or(&[]);
        let mut resource: Option<DeployAttrs<'_>> = None;
        for lr in rl.scope_logs.iter().flat_map(|s| &s.log_records) {
            if !lr
                .attributes
                .iter()
                .any(|kv| kv.key == "deployment.id" || kv.key == "deployment.status")
            {
                continue;
            }
            n += 1;
            let res = *resource.get_or_insert_with(|| DeployAttrs::of_attrs(rattrs, max));
            let rec = DeployAttrs::of_attrs(&lr.attributes, max);
            let (pair, own) = match rec.named_pair(&res) {
                Some(p) if p != res.pair() => (p, false),
                _ => (res.pair(), true),
            };
            let time = if lr.time_unix_nano != 0 {
                lr.time_unix_nano
            } else {
                lr.observed_time_unix_nano
            };
            push(&mut out, pair, rec.record(&res, own).to_record(time));
        }
    }
    (out, n)
}

/// Takes out of a (validated) trace batch the deployment spans whose record-level
/// `service.name` names another pair than their resource: each becomes a record of that
/// pair and is flagged [`flags::ROUTED`], so its resource's shard still aggregates the
/// span but does not count the deployment. Costs nothing per ordinary span: the batch's
/// rare-attribute records are looked at first, and spans only when one carries a
/// `service.name`.
pub fn split_span_records(batch: &mut TraceBatch) -> Vec<PairRecords> {
    if !batch
        .ext
        .iter()
        .any(|e| e.flags & flags::RECORD_SERVICE != 0)
    {
        return Vec::new();
    }
    let mut out = Vec::new();
    let buf = batch.buf.clone();
    let TraceBatch {
        resources,
        spans,
        ext,
        ..
    } = batch;
    for r in resources.iter() {
        let res = DeployAttrs::of_resource(&buf, r);
        let a = r.first_span as usize;
        let Some(range) = spans.get_mut(a..a + r.span_count as usize) else {
            continue;
        };
        for s in range {
            if s.flags & flags::RECORD_SERVICE == 0
                || s.flags & flags::INVALID != 0
                || (s.flags | r.ext.flags) & flags::DEPLOYMENT == 0
            {
                continue;
            }
            let Some(e) = ext.get(s.ext as usize) else {
                continue;
            };
            let rec = DeployAttrs::of_ext(&buf, e);
            let Some(pair) = rec.named_pair(&res).filter(|p| *p != res.pair()) else {
                continue;
            };
            s.flags |= flags::ROUTED;
            push(&mut out, pair, rec.record(&res, false).to_record(s.end_ns));
        }
    }
    out
}

/// The attributes of a CI/CD pipeline run span: a SERVER span carrying
/// `cicd.pipeline.result` (on the span or its resource) and no `cicd.pipeline.task.*`
/// attribute. A span attribute wins over its resource's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAttrs<'a> {
    /// cicd.pipeline.name ("" when absent)
    pub name: &'a str,
    /// cicd.pipeline.result
    pub result: &'a str,
    /// cicd.pipeline.run.id (string, or an int rendered)
    pub run_id: Option<String>,
    /// vcs.ref.head.revision
    pub revision: Option<&'a str>,
}

/// The run a span is, if it is one (valid spans only). The shard counts it; admission
/// notes its revision in the process-wide revision index.
pub fn pipeline_run<'a>(
    batch: &'a TraceBatch,
    r: &ResourceRec,
    s: &crate::model::SpanRec,
) -> Option<RunAttrs<'a>> {
    let flags_all = s.flags | r.ext.flags;
    if flags_all & flags::CICD_RESULT == 0
        || flags_all & flags::CICD_TASK != 0
        || s.flags & flags::INVALID != 0
        || s.kind != crate::model::kind::SERVER
    {
        return None;
    }
    let buf = &batch.buf[..];
    let ext = batch.ext_of(s);
    let pick = |f: fn(&Ext) -> crate::model::Str| -> &'a str {
        ext.map(f)
            .filter(|x| !x.is_empty())
            .unwrap_or_else(|| f(&r.ext))
            .as_str(buf)
    };
    let run_id_int = ext
        .and_then(|e| e.run_id_int)
        .or(r.ext.run_id_int)
        .map(|i| i.to_string());
    Some(RunAttrs {
        name: pick(|e| e.pipeline_name),
        result: pick(|e| e.pipeline_result),
        run_id: nonempty(pick(|e| e.run_id))
            .map(str::to_string)
            .or(run_id_int),
        revision: nonempty(pick(|e| e.revision)),
    })
}

/// Notes the revision of every pipeline run in an admitted batch in the revision index,
/// visible to lookups at event times after `floor` (the batch's fleet floor). Runs are
/// rare: this looks only at spans with rare attributes.
pub fn note_runs(
    batch: &TraceBatch,
    index: &crate::delivery::deployments::RevisionIndex,
    floor: u64,
) {
    let any = batch
        .resources
        .iter()
        .any(|r| r.ext.flags & flags::CICD_RESULT != 0)
        || batch.ext.iter().any(|e| e.flags & flags::CICD_RESULT != 0);
    if !any {
        return;
    }
    for r in &batch.resources {
        for s in batch.spans_of(r) {
            if (s.flags | r.ext.flags) & flags::CICD_RESULT == 0 {
                continue;
            }
            if let Some(rev) = pipeline_run(batch, r, s).and_then(|run| run.revision) {
                index.note(rev, s.start_ns, floor);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_attributes_win_and_foreign_records_keep_their_own_version() {
        let res = DeployAttrs {
            service: "argo",
            environment: "prod",
            version: "9.9",
            revision: "abc",
            ..Default::default()
        };
        let rec = DeployAttrs {
            id: "d1",
            ..Default::default()
        };
        let own = rec.record(&res, true);
        assert_eq!(own.version, "9.9");
        assert_eq!(own.revision, Some("abc"));
        assert_eq!(own.id, Some("d1"));
        assert_eq!(own.status, None);
        assert_eq!(rec.record(&res, false).version, "");
        let named = DeployAttrs {
            service: "cart",
            version: "2",
            status: "failed",
            ..Default::default()
        };
        assert_eq!(named.named_pair(&res), Some(("", "cart", "prod")));
        assert_eq!(named.record(&res, false).version, "2");
        assert_eq!(rec.named_pair(&res), None);
        assert_eq!(crate::identity::cut("héllo", 2), "h");
    }
}
