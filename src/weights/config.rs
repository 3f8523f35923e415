//! `config.json` of the Hugging Face folder (`model_type: "omni"`), spec §12.
//!
//! Each block is read on its own so a missing key is reported with its full path
//! (`audio_config.vq_config.codebook_sizes`) and the file it was expected in. Unknown keys are
//! kept in [`OmniConfig::raw`] (the real file has many that inference does not use).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: not valid JSON: {msg}")]
    Json { file: String, msg: String },
    #[error("{file}: unknown model_type {found:?} (expected \"omni\")")]
    UnknownModelType { file: String, found: String },
    #[error("{file}: missing key {key}")]
    MissingKey { file: String, key: String },
    #[error("{file}: bad value for {key}: {msg}")]
    BadValue {
        file: String,
        key: String,
        msg: String,
    },
    #[error("{file}: inconsistent {key}: {msg}")]
    Inconsistent {
        file: String,
        key: String,
        msg: String,
    },
}

/// Largest layer/block/level count accepted (the real model's largest is 32).
pub const MAX_COUNT: usize = 1024;
/// Largest width accepted (the real model's largest is the 152064-token vocabulary; room is
/// left for tables that exceed a GPU's 2 GiB binding, which the limits check then refuses).
pub const MAX_WIDTH: usize = 1 << 24;

/// The LLM block (top level of config.json), spec §5.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LlmConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub max_position_embeddings: usize,
    pub attention_qkv_pack: bool,
    pub attention_qkv_bias: bool,
    pub use_norm_head: bool,
    pub tie_word_embeddings: bool,
    pub hidden_act: String,
}

/// `audio_config.vq_config`, spec §4.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VqConfig {
    pub codebook_sizes: Vec<usize>,
}

/// `audio_config`, spec §2–§7.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AudioConfig {
    pub num_mel_bins: usize,
    pub sampling_rate: usize,
    pub n_fft: usize,
    pub hop_length: usize,
    pub max_audio_seconds: usize,
    pub split_overlap: f64,
    pub d_model: usize,
    pub kernel_size: usize,
    pub stride_size: usize,
    pub encoder_layers: usize,
    pub encoder_attention_heads: usize,
    pub encoder_ffn_dim: usize,
    pub decoder_layers: usize,
    pub decoder_attention_heads: usize,
    pub decoder_ffn_dim: usize,
    pub decoder_kernel_size: usize,
    pub decoder_stride_size: usize,
    pub avg_pooler: usize,
    pub audio_head_transformer_layers: usize,
    pub audio_start_token_id: u32,
    pub audio_end_token_id: u32,
    pub audio_pad_token_id: u32,
    pub audio_delim_token_id: u32,
    pub audiogen_start_token_id: u32,
    pub audiogen_end_token_id: u32,
    pub audiotext_start_token_id: u32,
    pub audiotext_end_token_id: u32,
    pub audiotext_pad_token_id: u32,
    #[serde(skip)]
    pub vq_config: VqConfig,
}

impl Default for VqConfig {
    fn default() -> Self {
        VqConfig {
            codebook_sizes: vec![8192, 4096, 2048, 1024, 1024, 1024, 1024, 1024],
        }
    }
}

/// `flow_matching_config.cfm_params`, spec §8.2.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CfmParams {
    pub sigma_min: f64,
    pub solver: String,
    pub t_scheduler: String,
    pub inference_cfg_rate: f64,
}

/// `flow_matching_config`, spec §8.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowMatchingConfig {
    pub sampling_rate: usize,
    pub hop_length: usize,
    pub use_hidden_states_before_dconv2: bool,
    pub prenet_in_dim: usize,
    pub prenet_out_dim: usize,
    pub prenet_d_model: usize,
    pub prenet_attention_heads: usize,
    pub prenet_ffn_dim: usize,
    pub prenet_nlayers: usize,
    pub prenet_max_source_positions: usize,
    pub prenet_target_mel_length_scale_ratio: f64,
    pub in_channels: usize,
    pub spk_emb_dim: usize,
    pub diffusion_steps: usize,
    pub channels: Vec<usize>,
    pub attention_head_dim: usize,
    pub n_blocks: usize,
    pub num_mid_blocks: usize,
    pub num_heads: usize,
    pub act_fn: String,
    #[serde(skip)]
    pub cfm_params: Option<CfmParams>,
}

/// `vocoder_config`: shapes of the (unused on the flow path) `dconv2`/`post_net`, spec §7.5.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VocoderConfig {
    pub num_mel_bins: usize,
    pub channels: Vec<usize>,
}

/// The parsed, validated `config.json`.
#[derive(Clone, Debug, PartialEq)]
pub struct OmniConfig {
    pub llm: LlmConfig,
    pub audio: AudioConfig,
    pub flow: FlowMatchingConfig,
    pub vocoder: VocoderConfig,
    /// The whole file as read (unknown keys included).
    pub raw: Value,
}

fn block<T: DeserializeOwned>(root: &Value, path: &str, file: &str) -> Result<T, ConfigError> {
    let mut v = root;
    let mut seen = String::new();
    for seg in path.split('.').filter(|s| !s.is_empty()) {
        if !seen.is_empty() {
            seen.push('.');
        }
        seen.push_str(seg);
        v = v.get(seg).ok_or_else(|| ConfigError::MissingKey {
            file: file.into(),
            key: seen.clone(),
        })?;
    }
    serde_json::from_value(v.clone()).map_err(|e| {
        let msg = e.to_string();
        let key = |k: &str| {
            if path.is_empty() {
                k.to_string()
            } else {
                format!("{path}.{k}")
            }
        };
        match msg
            .strip_prefix("missing field `")
            .and_then(|r| r.split('`').next())
        {
            Some(f) => ConfigError::MissingKey {
                file: file.into(),
                key: key(f),
            },
            None => ConfigError::BadValue {
                file: file.into(),
                key: if path.is_empty() {
                    "(top level)".into()
                } else {
                    path.into()
                },
                msg,
            },
        }
    })
}

impl OmniConfig {
    /// Parses and validates config.json text; `file` names it in errors.
    pub fn from_json(text: &str, file: &str) -> Result<Self, ConfigError> {
        let raw: Value = serde_json::from_str(text).map_err(|e| ConfigError::Json {
            file: file.into(),
            msg: e.to_string(),
        })?;
        Self::from_value(raw, file)
    }

    pub fn from_value(raw: Value, file: &str) -> Result<Self, ConfigError> {
        match raw.get("model_type") {
            None => {
                return Err(ConfigError::MissingKey {
                    file: file.into(),
                    key: "model_type".into(),
                })
            }
            Some(Value::String(s)) if s == "omni" => {}
            Some(other) => {
                return Err(ConfigError::UnknownModelType {
                    file: file.into(),
                    found: other
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or(other.to_string()),
                })
            }
        }
        let llm: LlmConfig = block(&raw, "", file)?;
        let mut audio: AudioConfig = block(&raw, "audio_config", file)?;
        audio.vq_config = block(&raw, "audio_config.vq_config", file)?;
        let mut flow: FlowMatchingConfig = block(&raw, "flow_matching_config", file)?;
        flow.cfm_params = Some(block(&raw, "flow_matching_config.cfm_params", file)?);
        let vocoder: VocoderConfig = block(&raw, "vocoder_config", file)?;
        let cfg = OmniConfig {
            llm,
            audio,
            flow,
            vocoder,
            raw,
        };
        cfg.validate(file)?;
        Ok(cfg)
    }

    /// Cross-key consistency (values that tensor shapes depend on).
    fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let bad = |key: &str, msg: String| {
            Err(ConfigError::Inconsistent {
                file: file.into(),
                key: key.into(),
                msg,
            })
        };
        let (l, a, f) = (&self.llm, &self.audio, &self.flow);
        // Counts that size loops and lists (layers, blocks, levels): an absurd value must be an
        // error, not a list of 2^60 tensor specs (found by tests/fuzz.rs as an out-of-memory kill).
        let counts = [
            ("num_hidden_layers", l.num_hidden_layers),
            ("audio_config.encoder_layers", a.encoder_layers),
            ("audio_config.decoder_layers", a.decoder_layers),
            (
                "audio_config.audio_head_transformer_layers",
                a.audio_head_transformer_layers,
            ),
            (
                "audio_config.vq_config.codebook_sizes",
                a.vq_config.codebook_sizes.len(),
            ),
            ("flow_matching_config.prenet_nlayers", f.prenet_nlayers),
            ("flow_matching_config.n_blocks", f.n_blocks),
            ("flow_matching_config.num_mid_blocks", f.num_mid_blocks),
            ("flow_matching_config.channels", f.channels.len()),
            ("vocoder_config.channels", self.vocoder.channels.len()),
        ];
        for (key, v) in counts {
            if v > MAX_COUNT {
                return bad(key, format!("{v} is more than {MAX_COUNT}"));
            }
        }
        // Widths that multiply into tensor sizes: each must fit comfortably in usize products.
        let widths = [
            ("hidden_size", l.hidden_size),
            ("intermediate_size", l.intermediate_size),
            ("num_attention_heads", l.num_attention_heads),
            ("num_key_value_heads", l.num_key_value_heads),
            ("head_dim", l.head_dim),
            ("vocab_size", l.vocab_size),
            ("audio_config.d_model", a.d_model),
            ("audio_config.num_mel_bins", a.num_mel_bins),
            ("audio_config.encoder_ffn_dim", a.encoder_ffn_dim),
            ("audio_config.decoder_ffn_dim", a.decoder_ffn_dim),
            ("flow_matching_config.prenet_d_model", f.prenet_d_model),
            ("flow_matching_config.prenet_ffn_dim", f.prenet_ffn_dim),
        ];
        // … and the other sizes, rates and list entries that enter products (found by
        // tests/fuzz.rs as overflows: max_audio_seconds · sampling_rate, d_model · avg_pooler)
        let more = [
            ("audio_config.sampling_rate", a.sampling_rate),
            ("audio_config.n_fft", a.n_fft),
            ("audio_config.hop_length", a.hop_length),
            ("audio_config.max_audio_seconds", a.max_audio_seconds),
            ("flow_matching_config.sampling_rate", f.sampling_rate),
            ("flow_matching_config.hop_length", f.hop_length),
            ("flow_matching_config.prenet_in_dim", f.prenet_in_dim),
            ("flow_matching_config.prenet_out_dim", f.prenet_out_dim),
            (
                "flow_matching_config.prenet_max_source_positions",
                f.prenet_max_source_positions,
            ),
            ("flow_matching_config.in_channels", f.in_channels),
            ("flow_matching_config.spk_emb_dim", f.spk_emb_dim),
            (
                "flow_matching_config.attention_head_dim",
                f.attention_head_dim,
            ),
            ("flow_matching_config.num_heads", f.num_heads),
            ("vocoder_config.num_mel_bins", self.vocoder.num_mel_bins),
        ];
        let entries = a
            .vq_config
            .codebook_sizes
            .iter()
            .map(|&v| ("audio_config.vq_config.codebook_sizes", v))
            .chain(
                f.channels
                    .iter()
                    .map(|&v| ("flow_matching_config.channels", v)),
            )
            .chain(
                self.vocoder
                    .channels
                    .iter()
                    .map(|&v| ("vocoder_config.channels", v)),
            );
        for (key, v) in widths.into_iter().chain(more).chain(entries) {
            if v > MAX_WIDTH {
                return bad(key, format!("{v} is more than {MAX_WIDTH}"));
            }
        }
        // Kernel sizes, strides and factors: small by nature, bounded like the counts so that a
        // product of a few of them with widths stays far from overflow.
        let small = [
            ("audio_config.kernel_size", a.kernel_size),
            ("audio_config.stride_size", a.stride_size),
            ("audio_config.decoder_kernel_size", a.decoder_kernel_size),
            ("audio_config.decoder_stride_size", a.decoder_stride_size),
            ("audio_config.avg_pooler", a.avg_pooler),
            ("flow_matching_config.diffusion_steps", f.diffusion_steps),
        ];
        for (key, v) in small {
            if v > MAX_COUNT {
                return bad(key, format!("{v} is more than {MAX_COUNT}"));
            }
        }
        let nonzero = [
            ("hidden_size", l.hidden_size),
            ("intermediate_size", l.intermediate_size),
            ("num_hidden_layers", l.num_hidden_layers),
            ("num_attention_heads", l.num_attention_heads),
            ("num_key_value_heads", l.num_key_value_heads),
            ("head_dim", l.head_dim),
            ("vocab_size", l.vocab_size),
            ("audio_config.d_model", a.d_model),
            ("audio_config.num_mel_bins", a.num_mel_bins),
            (
                "audio_config.encoder_attention_heads",
                a.encoder_attention_heads,
            ),
            (
                "audio_config.decoder_attention_heads",
                a.decoder_attention_heads,
            ),
            ("audio_config.avg_pooler", a.avg_pooler),
            ("audio_config.hop_length", a.hop_length),
            ("audio_config.stride_size", a.stride_size),
            ("flow_matching_config.prenet_d_model", f.prenet_d_model),
            (
                "flow_matching_config.prenet_attention_heads",
                f.prenet_attention_heads,
            ),
            ("flow_matching_config.num_heads", f.num_heads),
        ];
        for (k, v) in nonzero {
            if v == 0 {
                return bad(k, "must be > 0".into());
            }
        }
        if l.num_attention_heads % l.num_key_value_heads != 0 {
            return bad(
                "num_key_value_heads",
                format!(
                    "{} attention heads are not a multiple of {} kv heads",
                    l.num_attention_heads, l.num_key_value_heads
                ),
            );
        }
        if a.d_model % a.encoder_attention_heads != 0 {
            return bad(
                "audio_config.encoder_attention_heads",
                format!("d_model {} not divisible", a.d_model),
            );
        }
        if a.d_model % a.decoder_attention_heads != 0 {
            return bad(
                "audio_config.decoder_attention_heads",
                format!("d_model {} not divisible", a.d_model),
            );
        }
        if a.vq_config.codebook_sizes.is_empty() || a.vq_config.codebook_sizes.contains(&0) {
            return bad(
                "audio_config.vq_config.codebook_sizes",
                "must be a non-empty list of positive sizes".into(),
            );
        }
        if f.prenet_in_dim != a.d_model {
            return bad(
                "flow_matching_config.prenet_in_dim",
                format!("{} != audio_config.d_model {}", f.prenet_in_dim, a.d_model),
            );
        }
        if f.in_channels == 0 || f.in_channels % 2 != 0 {
            return bad(
                "flow_matching_config.in_channels",
                format!("{} mel bins: must be a positive even number", f.in_channels),
            );
        }
        if f.prenet_out_dim != f.in_channels {
            return bad(
                "flow_matching_config.prenet_out_dim",
                format!("{} != in_channels {}", f.prenet_out_dim, f.in_channels),
            );
        }
        if f.prenet_d_model % f.prenet_attention_heads != 0 {
            return bad(
                "flow_matching_config.prenet_attention_heads",
                format!("prenet_d_model {} not divisible", f.prenet_d_model),
            );
        }
        if f.channels.is_empty() {
            return bad("flow_matching_config.channels", "empty".into());
        }
        if self.vocoder.channels.len() < 2 {
            return bad("vocoder_config.channels", "needs ≥ 2 entries".into());
        }
        if f.cfm_params.is_none() {
            return bad("flow_matching_config.cfm_params", "absent".into());
        }
        Ok(())
    }

    /// Flat index of the `audio_head` depth: the number of codebooks.
    pub fn n_codebooks(&self) -> usize {
        self.audio.vq_config.codebook_sizes.len()
    }

    /// Encoder sinusoid table length (1500 for the real config).
    pub fn encoder_positions(&self) -> usize {
        let a = &self.audio;
        (a.max_audio_seconds * a.sampling_rate / a.hop_length) / a.stride_size
    }

    /// Decoder sinusoid table length (3000 for the real config).
    pub fn decoder_positions(&self) -> usize {
        let a = &self.audio;
        a.max_audio_seconds * a.sampling_rate / a.hop_length
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_values_parse() {
        let cfg = OmniConfig::from_value(crate::weights::tiny::real_config_value(), "config.json")
            .unwrap();
        assert_eq!(cfg.llm.hidden_size, 3584);
        assert_eq!(cfg.encoder_positions(), 1500);
        assert_eq!(cfg.decoder_positions(), 3000);
        assert_eq!(cfg.audio.vq_config.codebook_sizes[0], 8192);
    }
}
