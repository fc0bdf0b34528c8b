//! Writes the seed corpora of the fuzz targets (`fuzz/`) from the test fixtures: the
//! OTLP/JSON fixtures as they are and as protobuf, compressed, and the reference config.
//! `bench/fuzz.sh` runs it first.
//!
//! `cargo run --example fuzz_seeds -- fuzz/corpus`

use std::path::{Path, PathBuf};

use momentum::receiver::json::json_to_protobuf;
use momentum::receiver::Signal;

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let d = dir.join(target);
    std::fs::create_dir_all(&d).expect("corpus dir");
    std::fs::write(d.join(name), bytes).expect("seed");
}

fn with_selector(s: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![s];
    v.extend_from_slice(body);
    v
}

fn main() {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/corpus".into()),
    );
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/otlp-json");
    for (file, signal, selector) in [
        ("trace.json", Signal::Traces, 0u8),
        ("events.json", Signal::Traces, 0),
        ("metrics.json", Signal::Metrics, 1),
        ("logs.json", Signal::Logs, 2),
    ] {
        let json = std::fs::read(fixtures.join(file)).expect("fixture");
        write(&out, "json", file, &with_selector(selector, &json));
        let pb = json_to_protobuf(signal, &json).expect("a fixture converts");
        write(&out, "pipeline", file, &with_selector(selector, &pb));
        if signal == Signal::Traces {
            write(&out, "decode_traces", file, &pb);
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &pb).expect("gzip");
        write(
            &out,
            "decompress",
            &format!("{file}.gz"),
            &with_selector(0, &gz.finish().expect("gzip")),
        );
        let z = zstd::encode_all(&pb[..], 3).expect("zstd");
        write(
            &out,
            "decompress",
            &format!("{file}.zst"),
            &with_selector(1, &z),
        );
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = std::fs::read(root.join("config/momentum.yaml")).expect("reference config");
    write(&out, "config", "momentum.yaml", &config);
    println!("seeds written to {}", out.display());
}
