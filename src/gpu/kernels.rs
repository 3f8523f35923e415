//! The kernel registry: every WGSL file of `shaders/`, embedded at compile time, and the one
//! small preprocessing step that specialises it (a visible header + `#if subgroups` blocks).
//!
//! Header: `act`/`act4` alias the activation type (f16 with `enable f16;`, or f32 on the
//! portable path). Lines between `// #if subgroups` and `// #endif` are kept only for the
//! subgroup variant; `// #include NAME` pastes a snippet from `shaders/common/`. Everything else is WGSL `override` constants, set per pipeline.

use super::GpuError;

/// Activation (and KV cache) element type on the GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum ActDType {
    F16,
    F32,
}

impl ActDType {
    pub fn name(self) -> &'static str {
        match self {
            ActDType::F16 => "f16",
            ActDType::F32 => "f32",
        }
    }
    pub fn size(self) -> usize {
        match self {
            ActDType::F16 => 2,
            ActDType::F32 => 4,
        }
    }
}

/// `(file stem, WGSL source)`: the file stem is the kernel family name.
const SOURCES: &[(&str, &str)] = &[
    (
        "embedding",
        include_str!("../../shaders/elementwise/embedding.wgsl"),
    ),
    ("conv1d", include_str!("../../shaders/conv/conv1d.wgsl")),
    (
        "avgpool1d",
        include_str!("../../shaders/conv/avgpool1d.wgsl"),
    ),
    (
        "elementwise",
        include_str!("../../shaders/elementwise/elementwise.wgsl"),
    ),
    ("gemv", include_str!("../../shaders/matmul/gemv.wgsl")),
    ("gemm", include_str!("../../shaders/matmul/gemm.wgsl")),
    (
        "gemm_coop",
        include_str!("../../shaders/matmul/gemm_coop.wgsl"),
    ),
    (
        "gemm_coop_split",
        include_str!("../../shaders/matmul/gemm_coop_split.wgsl"),
    ),
    (
        "gemm_coopd",
        include_str!("../../shaders/matmul/gemm_coopd.wgsl"),
    ),
    (
        "gemm_coopd_split",
        include_str!("../../shaders/matmul/gemm_coopd_split.wgsl"),
    ),
    (
        "gemm_splitk",
        include_str!("../../shaders/matmul/gemm_splitk.wgsl"),
    ),
    (
        "gemm_coopb",
        include_str!("../../shaders/matmul/gemm_coopb.wgsl"),
    ),
    (
        "gemm_coopb_split",
        include_str!("../../shaders/matmul/gemm_coopb_split.wgsl"),
    ),
    (
        "gemm_coops",
        include_str!("../../shaders/matmul/gemm_coops.wgsl"),
    ),
    (
        "mma_peak",
        include_str!("../../shaders/matmul/mma_peak.wgsl"),
    ),
    ("gemv_i8", include_str!("../../shaders/matmul/gemv_i8.wgsl")),
    (
        "gemv_i8_xqo",
        include_str!("../../shaders/matmul/gemv_i8_xqo.wgsl"),
    ),
    (
        "gemm_reduce_ln",
        include_str!("../../shaders/matmul/gemm_reduce_ln.wgsl"),
    ),
    ("gemv_xq", include_str!("../../shaders/matmul/gemv_xq.wgsl")),
    ("rmsnorm", include_str!("../../shaders/norm/rmsnorm.wgsl")),
    (
        "layernorm",
        include_str!("../../shaders/norm/layernorm.wgsl"),
    ),
    (
        "groupnorm",
        include_str!("../../shaders/norm/groupnorm.wgsl"),
    ),
    ("rope", include_str!("../../shaders/attention/rope.wgsl")),
    ("softmax", include_str!("../../shaders/reduce/softmax.wgsl")),
    (
        "quantize",
        include_str!("../../shaders/quant/quantize.wgsl"),
    ),
    (
        "rope_kv",
        include_str!("../../shaders/attention/rope_kv.wgsl"),
    ),
    ("fill", include_str!("../../shaders/util/fill.wgsl")),
    ("istft", include_str!("../../shaders/audio/istft.wgsl")),
    (
        "hift_source",
        include_str!("../../shaders/audio/hift_source.wgsl"),
    ),
    (
        "hift_stft",
        include_str!("../../shaders/audio/hift_stft.wgsl"),
    ),
    ("copy", include_str!("../../shaders/util/copy.wgsl")),
    ("relayout", include_str!("../../shaders/util/relayout.wgsl")),
    (
        "kv_append",
        include_str!("../../shaders/attention/kv_append.wgsl"),
    ),
    (
        "attn_decode",
        include_str!("../../shaders/attention/attn_decode.wgsl"),
    ),
    (
        "attn_decode_gqa",
        include_str!("../../shaders/attention/attn_decode_gqa.wgsl"),
    ),
    (
        "attn_decode_head",
        include_str!("../../shaders/attention/attn_decode_head.wgsl"),
    ),
    (
        "attn_tiled",
        include_str!("../../shaders/attention/attn_tiled.wgsl"),
    ),
    (
        "attn_coop",
        include_str!("../../shaders/attention/attn_coop.wgsl"),
    ),
    ("argmax", include_str!("../../shaders/sampling/argmax.wgsl")),
    ("topk", include_str!("../../shaders/sampling/topk.wgsl")),
    (
        "sample_draw",
        include_str!("../../shaders/sampling/sample_draw.wgsl"),
    ),
    (
        "repetition_penalty",
        include_str!("../../shaders/sampling/repetition_penalty.wgsl"),
    ),
    (
        "rvq_norms",
        include_str!("../../shaders/rvq/rvq_norms.wgsl"),
    ),
    (
        "rvq_encode",
        include_str!("../../shaders/rvq/rvq_encode.wgsl"),
    ),
    ("rvq_coop", include_str!("../../shaders/rvq/rvq_coop.wgsl")),
    (
        "rvq_decode",
        include_str!("../../shaders/rvq/rvq_decode.wgsl"),
    ),
];

/// Snippets a kernel pulls in with a `// #include NAME` line.
const INCLUDES: &[(&str, &str)] = &[
    ("trig", include_str!("../../shaders/common/trig.wgsl")),
    ("act_fns", include_str!("../../shaders/common/act_fns.wgsl")),
    (
        "xq_block",
        include_str!("../../shaders/common/xq_block.wgsl"),
    ),
    (
        "attn_decode_binds",
        include_str!("../../shaders/common/attn_decode_binds.wgsl"),
    ),
    ("draw", include_str!("../../shaders/common/draw.wgsl")),
    (
        "layernorm_row",
        include_str!("../../shaders/common/layernorm_row.wgsl"),
    ),
    (
        "hift_params",
        include_str!("../../shaders/common/hift_params.wgsl"),
    ),
    (
        "gemv_tail",
        include_str!("../../shaders/common/gemv_tail.wgsl"),
    ),
    (
        "gemv_i8_core",
        include_str!("../../shaders/common/gemv_i8_core.wgsl"),
    ),
    (
        "defer_norm",
        include_str!("../../shaders/common/defer_norm.wgsl"),
    ),
    (
        "coop_tile",
        include_str!("../../shaders/common/coop_tile.wgsl"),
    ),
    (
        "coop_mma",
        include_str!("../../shaders/common/coop_mma.wgsl"),
    ),
    (
        "coop_f16_out",
        include_str!("../../shaders/common/coop_f16_out.wgsl"),
    ),
    (
        "coop_f16_part",
        include_str!("../../shaders/common/coop_f16_part.wgsl"),
    ),
    (
        "coopb_mma",
        include_str!("../../shaders/common/coopb_mma.wgsl"),
    ),
    (
        "coopd_mma",
        include_str!("../../shaders/common/coopd_mma.wgsl"),
    ),
    (
        "attn_common",
        include_str!("../../shaders/common/attn_common.wgsl"),
    ),
    (
        "gemm_tile64",
        include_str!("../../shaders/common/gemm_tile64.wgsl"),
    ),
    (
        "gemm_store",
        include_str!("../../shaders/common/gemm_store.wgsl"),
    ),
];

/// Names of every kernel family (for `bca info` and tests).
pub fn families() -> impl Iterator<Item = &'static str> {
    SOURCES.iter().map(|(n, _)| *n)
}

/// Identifies one compiled pipeline: family, entry point, activation type, subgroup use and
/// the `override` constants. Its `Display` form is the pipeline label.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KernelKey {
    pub family: &'static str,
    pub entry: &'static str,
    pub act: ActDType,
    pub subgroups: bool,
    pub constants: Vec<(&'static str, u32)>,
}

impl std::fmt::Display for KernelKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}[{}", self.family, self.entry, self.act.name())?;
        if self.subgroups {
            write!(f, ",sg")?;
        }
        write!(f, "]")?;
        for (i, (k, v)) in self.constants.iter().enumerate() {
            write!(f, "{}{k}={v}", if i == 0 { "{" } else { "," })?;
        }
        if !self.constants.is_empty() {
            write!(f, "}}")?;
        }
        Ok(())
    }
}

/// The specialised WGSL text for `key` (without constants: those are pipeline overrides).
pub fn source(key: &KernelKey) -> Result<String, GpuError> {
    let raw = SOURCES
        .iter()
        .find(|(n, _)| *n == key.family)
        .map(|(_, s)| *s)
        .ok_or_else(|| GpuError::UnknownKernel(key.family.to_string()))?;
    let mut out = String::with_capacity(raw.len() + 128);
    // a kernel's own `enable` directives go first, before the act aliases (WGSL wants every
    // directive ahead of the first declaration); their lines stay as blank ones below
    for line in raw.lines() {
        if line.trim_start().starts_with("enable ") {
            out.push_str(line.trim());
            out.push('\n');
        }
    }
    match key.act {
        ActDType::F16 => out.push_str("enable f16;\nalias act = f16;\nalias act4 = vec4<f16>;\n"),
        ActDType::F32 => out.push_str("alias act = f32;\nalias act4 = vec4<f32>;\n"),
    }
    // Browsers require `enable subgroups;`, naga 30 rejects it (it needs no directive).
    if key.subgroups && cfg!(target_arch = "wasm32") {
        out.push_str("enable subgroups;\n");
    }
    let mut keep = true;
    for line in raw.lines() {
        let t = line.trim();
        if t == "// #if subgroups" {
            keep = key.subgroups;
            out.push('\n'); // keep line numbers aligned with the file
            continue;
        }
        if t == "// #endif" {
            keep = true;
            out.push('\n');
            continue;
        }
        if let Some(name) = t.strip_prefix("// #include ") {
            if !keep {
                // (inside an `#if subgroups` block of a portable variant)
                out.push('\n');
                continue;
            }
            let snippet = INCLUDES
                .iter()
                .find(|(n, _)| *n == name.trim())
                .map(|(_, s)| *s)
                .ok_or_else(|| GpuError::UnknownKernel(format!("include {name}")))?;
            out.push_str(snippet);
            out.push('\n');
            continue;
        }
        if keep && !t.starts_with("enable ") {
            out.push_str(line);
        }
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subgroup_blocks_are_stripped() {
        let key = KernelKey {
            family: "gemv",
            entry: "gemv",
            act: ActDType::F32,
            subgroups: false,
            constants: vec![("TPR", 32)],
        };
        let s = source(&key).unwrap();
        assert!(!s.contains("fn gemv_f16_sg"));
        assert!(s.starts_with("alias act = f32;"));
        let s = source(&KernelKey {
            subgroups: true,
            act: ActDType::F16,
            ..key.clone()
        })
        .unwrap();
        assert!(s.contains("fn gemv_f16_sg"));
        assert!(s.starts_with("enable f16;"));
        assert_eq!(key.to_string(), "gemv:gemv[f32]{TPR=32}");
        assert!(matches!(
            source(&KernelKey {
                family: "nope",
                ..key
            }),
            Err(GpuError::UnknownKernel(_))
        ));
    }
}
