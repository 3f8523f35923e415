//! Every tensor the config implies: names exactly as in the checkpoint (spec §3–§8), shapes from
//! the config (spec §12), a role that decides the web storage format, and the pipeline stage.

use super::config::OmniConfig;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Encoder,
    Bridge,
    Rvq,
    Llm,
    AudioEmbed,
    AudioHead,
    Decoder,
    Prenet,
    Unet,
    Hift,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Encoder => "encoder",
            Stage::Bridge => "bridge",
            Stage::Rvq => "rvq",
            Stage::Llm => "llm",
            Stage::AudioEmbed => "audio_embed",
            Stage::AudioHead => "audio_head",
            Stage::Decoder => "decoder",
            Stage::Prenet => "prenet",
            Stage::Unet => "unet",
            Stage::Hift => "hift",
        }
    }
}

/// What a tensor is; decides how it is initialised in `bca tiny` and stored by `bca convert`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// 2-D weight of a Linear (out, in) — quantisable.
    Linear,
    /// Embedding table (rows gathered).
    Embedding,
    /// Convolution weight (≥ 3-D).
    Conv,
    /// Norm scale (≈ 1).
    Norm,
    /// Bias or norm shift.
    Bias,
    /// RVQ codebook (fp32 in the reference).
    Codebook,
    /// Training-only statistics (`embed_avg`, `cluster_size`): not converted.
    TrainingOnly,
    /// Sinusoid table buffer.
    Positional,
    /// Snake α (≈ 1).
    Alpha,
    /// Weight-norm magnitude `weight_g`.
    WeightG,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub role: Role,
    pub stage: Stage,
}

/// Storage format of a tensor in the web format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    F32,
    F16,
    Q8,
    Q4,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::F32 => "f32",
            Format::F16 => "f16",
            Format::Q8 => "q8",
            Format::Q4 => "q4",
        }
    }
}

/// Requested quantisation of `bca convert`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quant {
    F16,
    Q8,
    Q4,
}

/// The storage rule (documented in ARCHITECTURE.md "Checkpoints"):
/// - 2-D Linear weights of the LLM (`W_pack`, `o_proj`, MLP, `lm_head`), the audio head (attention
///   in/out projections, per-position FFNs, classifiers), the audio encoder and decoder layers and
///   the bridge (`down_proj`, `proj_decoder`) → the requested Q8/Q4 (F16 when `--quant f16`);
/// - Pre-Net and U-Net linears (small, compute-bound, precision-sensitive; spec §13) → F16;
/// - embeddings, convolutions, sinusoid tables, HiFT weights → F16;
/// - norms, biases, Snake α, RVQ codebooks (argmin fidelity, spec §4) → F32;
/// - training-only tensors → not stored (`None`).
pub fn web_format(spec: &TensorSpec, quant: Quant) -> Option<Format> {
    match spec.role {
        Role::TrainingOnly => None,
        Role::Norm | Role::Bias | Role::Codebook | Role::Alpha | Role::WeightG => Some(Format::F32),
        Role::Embedding | Role::Conv | Role::Positional => Some(Format::F16),
        Role::Linear => {
            let quantisable = matches!(
                spec.stage,
                Stage::Llm | Stage::AudioHead | Stage::Encoder | Stage::Decoder | Stage::Bridge
            );
            Some(match (quantisable, quant) {
                (true, Quant::Q8) => Format::Q8,
                (true, Quant::Q4) => Format::Q4,
                _ => Format::F16,
            })
        }
    }
}

struct List(Vec<TensorSpec>);

impl List {
    fn add(&mut self, stage: Stage, role: Role, name: String, shape: &[usize]) {
        self.0.push(TensorSpec {
            name,
            shape: shape.to_vec(),
            role,
            stage,
        });
    }
    fn linear(&mut self, st: Stage, p: &str, out: usize, inp: usize, bias: bool) {
        self.add(st, Role::Linear, format!("{p}.weight"), &[out, inp]);
        if bias {
            self.add(st, Role::Bias, format!("{p}.bias"), &[out]);
        }
    }
    fn norm(&mut self, st: Stage, p: &str, n: usize, bias: bool) {
        self.add(st, Role::Norm, format!("{p}.weight"), &[n]);
        if bias {
            self.add(st, Role::Bias, format!("{p}.bias"), &[n]);
        }
    }
    fn conv(&mut self, st: Stage, p: &str, shape: &[usize], bias_len: usize) {
        self.add(st, Role::Conv, format!("{p}.weight"), shape);
        self.add(st, Role::Bias, format!("{p}.bias"), &[bias_len]);
    }
    /// `OmniWhisperTransformerLayer` (spec §3 step 4; RMSNorm variant in §8.1).
    fn whisper_layer(&mut self, st: Stage, p: &str, d: usize, ffn: usize, layer_norm_bias: bool) {
        let a = format!("{p}.self_attn");
        self.linear(st, &format!("{a}.q_proj"), d, d, true);
        self.linear(st, &format!("{a}.k_proj"), d, d, false);
        self.linear(st, &format!("{a}.v_proj"), d, d, true);
        self.linear(st, &format!("{a}.out_proj"), d, d, true);
        self.norm(st, &format!("{p}.self_attn_layer_norm"), d, layer_norm_bias);
        self.linear(st, &format!("{p}.fc1"), ffn, d, true);
        self.linear(st, &format!("{p}.fc2"), d, ffn, true);
        self.norm(st, &format!("{p}.final_layer_norm"), d, layer_norm_bias);
    }
    /// `CausalBlock1D` (conv k3 + LayerNorm).
    fn causal_block(&mut self, p: &str, cin: usize, cout: usize) {
        self.conv(Stage::Unet, &format!("{p}.block.0"), &[cout, cin, 3], cout);
        self.norm(Stage::Unet, &format!("{p}.block.2"), cout, true);
    }
    fn resnet(&mut self, p: &str, cin: usize, cout: usize, temb: usize) {
        self.causal_block(&format!("{p}.block1"), cin, cout);
        self.causal_block(&format!("{p}.block2"), cout, cout);
        self.linear(Stage::Unet, &format!("{p}.mlp.1"), cout, temb, true);
        self.conv(Stage::Unet, &format!("{p}.res_conv"), &[cout, cin, 1], cout);
    }
    fn transformer_block(&mut self, p: &str, c: usize, inner: usize) {
        let u = Stage::Unet;
        self.norm(u, &format!("{p}.norm1"), c, true);
        self.norm(u, &format!("{p}.norm3"), c, true);
        for q in ["to_q", "to_k", "to_v"] {
            self.linear(u, &format!("{p}.attn1.{q}"), inner, c, false);
        }
        self.linear(u, &format!("{p}.attn1.to_out.0"), c, inner, true);
        self.linear(u, &format!("{p}.ff.net.0.proj"), 4 * c, c, true);
        self.linear(u, &format!("{p}.ff.net.2"), c, 4 * c, true);
    }
}

/// Every tensor of `model.safetensors*` for `cfg`, in a fixed order.
pub fn model_tensors(cfg: &OmniConfig) -> Vec<TensorSpec> {
    let mut l = List(Vec::new());
    let (m, a, f) = (&cfg.llm, &cfg.audio, &cfg.flow);
    let d = a.d_model;
    let cbs = &a.vq_config.codebook_sizes;

    // §3 encoder
    let enc = "audio_tokenizer.audio_model";
    l.conv(
        Stage::Encoder,
        &format!("{enc}.conv1"),
        &[d, a.num_mel_bins, a.kernel_size],
        d,
    );
    l.conv(
        Stage::Encoder,
        &format!("{enc}.conv2"),
        &[d, d, a.kernel_size],
        d,
    );
    l.add(
        Stage::Encoder,
        Role::Positional,
        format!("{enc}.positional_embedding"),
        &[cfg.encoder_positions(), d],
    );
    for i in 0..a.encoder_layers {
        l.whisper_layer(
            Stage::Encoder,
            &format!("{enc}.layers.{i}"),
            d,
            a.encoder_ffn_dim,
            true,
        );
    }
    l.norm(Stage::Encoder, &format!("{enc}.layer_norm"), d, true);

    // §4 bridge + RVQ
    let br = "audio_tokenizer.audio_bridge_model";
    let big = d * a.avg_pooler;
    for c in ["gate_proj", "up_proj"] {
        l.add(
            Stage::Bridge,
            Role::Conv,
            format!("{br}.{c}.weight"),
            &[big, d, a.avg_pooler],
        );
    }
    l.linear(Stage::Bridge, &format!("{br}.down_proj"), big, big, false);
    l.norm(Stage::Bridge, &format!("{br}.layer_norm"), big, true);
    l.linear(Stage::Bridge, &format!("{br}.proj_decoder"), d, big, true);
    for (i, &cb) in cbs.iter().enumerate() {
        let p = format!("{br}.vq_list.{i}.codebook");
        l.add(Stage::Rvq, Role::Codebook, format!("{p}.embed"), &[cb, big]);
        l.add(
            Stage::Rvq,
            Role::TrainingOnly,
            format!("{p}.embed_avg"),
            &[cb, big],
        );
        l.add(
            Stage::Rvq,
            Role::TrainingOnly,
            format!("{p}.cluster_size"),
            &[cb],
        );
    }

    // §5 LLM
    let h = m.hidden_size;
    let qkv = (m.num_attention_heads + 2 * m.num_key_value_heads) * m.head_dim;
    let q = m.num_attention_heads * m.head_dim;
    l.add(
        Stage::Llm,
        Role::Embedding,
        "model.embed_tokens.weight".into(),
        &[m.vocab_size, h],
    );
    for i in 0..m.num_hidden_layers {
        let p = format!("model.layers.{i}");
        if m.attention_qkv_pack {
            l.linear(
                Stage::Llm,
                &format!("{p}.self_attn.W_pack"),
                qkv,
                h,
                m.attention_qkv_bias,
            );
        } else {
            let kv = m.num_key_value_heads * m.head_dim;
            l.linear(
                Stage::Llm,
                &format!("{p}.self_attn.q_proj"),
                q,
                h,
                m.attention_qkv_bias,
            );
            l.linear(
                Stage::Llm,
                &format!("{p}.self_attn.k_proj"),
                kv,
                h,
                m.attention_qkv_bias,
            );
            l.linear(
                Stage::Llm,
                &format!("{p}.self_attn.v_proj"),
                kv,
                h,
                m.attention_qkv_bias,
            );
        }
        l.linear(Stage::Llm, &format!("{p}.self_attn.o_proj"), h, q, false);
        l.linear(
            Stage::Llm,
            &format!("{p}.mlp.gate_proj"),
            m.intermediate_size,
            h,
            false,
        );
        l.linear(
            Stage::Llm,
            &format!("{p}.mlp.up_proj"),
            m.intermediate_size,
            h,
            false,
        );
        l.linear(
            Stage::Llm,
            &format!("{p}.mlp.down_proj"),
            h,
            m.intermediate_size,
            false,
        );
        l.norm(Stage::Llm, &format!("{p}.input_layernorm"), h, false);
        l.norm(
            Stage::Llm,
            &format!("{p}.post_attention_layernorm"),
            h,
            false,
        );
    }
    l.norm(Stage::Llm, "model.norm", h, false);
    for (i, &cb) in cbs.iter().enumerate() {
        l.add(
            Stage::AudioEmbed,
            Role::Embedding,
            format!("model.audio_embed_layers.{i}.weight"),
            &[cb + 1, h],
        );
    }
    if !m.tie_word_embeddings {
        l.linear(Stage::Llm, "lm_head", m.vocab_size, h, false);
    }

    // §6 audio head
    let n = cbs.len();
    for i in 0..a.audio_head_transformer_layers {
        let p = format!("audio_head.transformer_layers.{i}");
        let st = Stage::AudioHead;
        l.add(
            st,
            Role::Linear,
            format!("{p}.self_attention.in_proj_weight"),
            &[3 * h, h],
        );
        l.add(
            st,
            Role::Bias,
            format!("{p}.self_attention.in_proj_bias"),
            &[3 * h],
        );
        l.linear(st, &format!("{p}.self_attention.out_proj"), h, h, true);
        l.norm(st, &format!("{p}.layernorm1"), h, false);
        l.norm(st, &format!("{p}.layernorm2"), h, false);
        l.linear(st, &format!("{p}.linear1"), 2 * h, n * h, true);
        l.linear(st, &format!("{p}.linear2"), h, n * 2 * h, true);
    }
    l.norm(Stage::AudioHead, "audio_head.headnorm", h, false);
    for (i, &cb) in cbs.iter().enumerate() {
        l.linear(
            Stage::AudioHead,
            &format!("audio_head.heads.{i}"),
            cb + 1,
            h,
            true,
        );
    }

    // §7 audio decoder
    let dec = "audio_tokenizer.audio_decoder";
    let st = Stage::Decoder;
    l.conv(
        st,
        &format!("{dec}.dconv1.conv"),
        &[d, d, a.decoder_kernel_size],
        d,
    );
    l.norm(st, &format!("{dec}.dconv1.norm"), d, true);
    l.add(
        st,
        Role::Positional,
        format!("{dec}.positional_embedding"),
        &[cfg.decoder_positions(), d],
    );
    for i in 0..a.decoder_layers {
        l.whisper_layer(st, &format!("{dec}.layers.{i}"), d, a.decoder_ffn_dim, true);
    }
    l.norm(st, &format!("{dec}.layer_norm"), d, true);
    let mel = cfg.vocoder.num_mel_bins;
    l.conv(
        st,
        &format!("{dec}.dconv2.conv"),
        &[d, mel, a.decoder_kernel_size],
        mel,
    );
    l.norm(st, &format!("{dec}.dconv2.norm"), mel, true);
    let vch = &cfg.vocoder.channels;
    let mut cin = mel;
    let mut idx = 0;
    for &c in &vch[..vch.len() - 1] {
        l.conv(st, &format!("{dec}.post_net.layers.{idx}"), &[c, cin, 5], c);
        l.norm(st, &format!("{dec}.post_net.layers.{}", idx + 1), c, true);
        cin = c;
        idx += 3;
    }
    l.conv(
        st,
        &format!("{dec}.post_net.layers.{idx}"),
        &[mel, cin, 1],
        mel,
    );

    // §8 flow matching: Pre-Net
    let fm = "audio_tokenizer.audio_flow_matching_decoder";
    let pd = f.prenet_d_model;
    let st = Stage::Prenet;
    l.linear(
        st,
        &format!("{fm}.prenet.in_mlp.0"),
        4 * pd,
        f.prenet_in_dim,
        true,
    );
    l.linear(st, &format!("{fm}.prenet.in_mlp.2"), pd, 4 * pd, true);
    l.add(
        st,
        Role::Positional,
        format!("{fm}.prenet.positional_embedding"),
        &[f.prenet_max_source_positions, pd],
    );
    for i in 0..f.prenet_nlayers {
        l.whisper_layer(
            st,
            &format!("{fm}.prenet.transformer_layers.{i}"),
            pd,
            f.prenet_ffn_dim,
            false,
        );
    }
    l.norm(st, &format!("{fm}.prenet.final_norm"), pd, false);
    l.linear(
        st,
        &format!("{fm}.prenet.out_proj"),
        f.prenet_out_dim,
        pd,
        false,
    );

    // §8.3 U-Net
    let cd = format!("{fm}.conditional_decoder");
    let c0 = f.channels[0];
    let clast = f.channels[f.channels.len() - 1];
    let temb = 4 * c0;
    let tin = 2 * f.in_channels + f.spk_emb_dim;
    let inner = f.num_heads * f.attention_head_dim;
    l.linear(
        Stage::Unet,
        &format!("{cd}.time_mlp.linear_1"),
        temb,
        tin,
        true,
    );
    l.linear(
        Stage::Unet,
        &format!("{cd}.time_mlp.linear_2"),
        temb,
        temb,
        true,
    );
    let mut cin = tin;
    for (i, &c) in f.channels.iter().enumerate() {
        let p = format!("{cd}.down_blocks.{i}");
        l.resnet(&format!("{p}.0"), cin, c, temb);
        for k in 0..f.n_blocks {
            l.transformer_block(&format!("{p}.1.{k}"), c, inner);
        }
        l.conv(Stage::Unet, &format!("{p}.2"), &[c, c, 3], c);
        cin = c;
    }
    for i in 0..f.num_mid_blocks {
        let p = format!("{cd}.mid_blocks.{i}");
        l.resnet(&format!("{p}.0"), clast, clast, temb);
        for k in 0..f.n_blocks {
            l.transformer_block(&format!("{p}.1.{k}"), clast, inner);
        }
    }
    let rev: Vec<usize> = f.channels.iter().rev().copied().collect();
    let mut cprev = clast;
    for (i, &c) in rev.iter().enumerate() {
        let p = format!("{cd}.up_blocks.{i}");
        l.resnet(&format!("{p}.0"), cprev + c, c, temb);
        for k in 0..f.n_blocks {
            l.transformer_block(&format!("{p}.1.{k}"), c, inner);
        }
        l.conv(Stage::Unet, &format!("{p}.2"), &[c, c, 3], c);
        cprev = c;
    }
    l.causal_block(&format!("{cd}.final_block"), cprev, cprev);
    l.conv(
        Stage::Unet,
        &format!("{cd}.final_proj"),
        &[f.in_channels, cprev, 1],
        f.in_channels,
    );
    l.0
}

/// Parameters per stage (training-only tensors excluded).
pub fn params_per_stage(specs: &[TensorSpec]) -> Vec<(Stage, usize)> {
    let mut m: std::collections::BTreeMap<Stage, usize> = Default::default();
    for s in specs.iter().filter(|s| s.role != Role::TrainingOnly) {
        *m.entry(s.stage).or_default() += s.shape.iter().product::<usize>();
    }
    m.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The real config's tensor list reproduces the spec §13 parameter counts.
    #[test]
    fn real_config_counts_match_spec_sizes() {
        let cfg = OmniConfig::from_value(crate::weights::tiny::real_config_value(), "config.json")
            .unwrap();
        let specs = model_tensors(&cfg);
        let per: std::collections::BTreeMap<_, _> = params_per_stage(&specs).into_iter().collect();
        let m = |s: Stage| per[&s] as f64 / 1e6;
        // spec §13: encoder 635.0 M, audio embeds 69.8 M, flow Pre-Net 41.5 M (+2.56 M table)
        assert!(
            (m(Stage::Encoder) - 635.0 - 1.92).abs() < 1.0,
            "{}",
            m(Stage::Encoder)
        );
        assert!((m(Stage::AudioEmbed) - 69.8).abs() < 0.1);
        assert!((m(Stage::Rvq) - 99.6).abs() < 0.1);
        let total: usize = specs
            .iter()
            .map(|s| s.shape.iter().product::<usize>())
            .sum();
        // 10.34 B in the HF checkpoint (spec §13), within rounding
        assert!((total as f64 / 1e9 - 10.34).abs() < 0.02, "{total}");
        let names: std::collections::HashSet<_> = specs.iter().map(|s| &s.name).collect();
        assert_eq!(names.len(), specs.len(), "duplicate names");
    }
}
