//! The CLI on bad environments: no adapter must be a one-line typed error and a non-zero exit,
//! never a panic; with the adapter, `bca info` reports what was negotiated.

use std::process::Command;

fn bca() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bca"))
}

#[test]
fn info_without_any_vulkan_driver_fails_clearly() {
    let out = bca()
        .arg("info")
        .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
        .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
        .output()
        .expect("run bca");
    assert!(!out.status.success(), "bca info must fail without a driver");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bca: no GPU adapter found"), "stderr: {err}");
    assert!(!err.contains("panicked"), "stderr: {err}");
}

#[test]
fn info_reports_features_and_limits() {
    let out = bca().args(["info", "--json"]).output().expect("run bca");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(
        v["limits"]["max_storage_buffer_binding_size"]
            .as_u64()
            .unwrap_or(0)
            >= 128 << 20
    );
    assert!(v["features"]["shader_f16"].is_boolean());
    assert!(!v["adapter"].as_str().unwrap_or("").is_empty());
}

#[test]
fn require_f16_conflicts_with_f32() {
    let out = bca()
        .args(["info", "--f32", "--require-f16"])
        .output()
        .expect("run bca");
    assert!(!out.status.success());
}
