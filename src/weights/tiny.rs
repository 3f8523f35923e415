//! `bca tiny`: a miniature checkpoint folder with the real folder's structure — the same files,
//! config keys, tensor names and ranks, bf16 shards + index, `hift.pt` as torch.save writes it —
//! at small widths, with seeded random weights. The vocabulary stays real (152064 embedding rows,
//! the real Qwen2 BPE plus Baichuan's added tokens at their real ids) so token ids mean what they
//! mean in the real model.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::config::OmniConfig;
use super::dtype::{self, DType};
use super::hift::HiftConfig;
use super::safetensors::write_file;
use super::spec::{model_tensors, Role, TensorSpec};
use super::torch::{write_state_dict, TorchTensor};
use super::{TensorInfo, WeightError};
use crate::util::rng::Rng;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    Instruct,
    Base,
}

impl Variant {
    pub fn repo(self) -> &'static str {
        match self {
            Variant::Instruct => "baichuan-inc/Baichuan-Audio-Instruct",
            Variant::Base => "baichuan-inc/Baichuan-Audio-Base",
        }
    }
}

/// Baichuan's added tokens 151665–151701, names as in Baichuan-Omni-1.5's `added_tokens.json`
/// (same id table as spec §1.1; the ids the spec does not name are the Omni family's
/// image/video/tool tokens, kept so the id range is contiguous and real).
pub const BAICHUAN_TOKENS: [(u32, &str); 37] = [
    (151665, "<B_SYS>"),
    (151666, "<B_USYS>"),
    (151667, "<C_Q>"),
    (151668, "<C_A>"),
    (151669, "<B_FUNC>"),
    (151670, "<B_CODE>"),
    (151671, "<B_APE>"),
    (151672, "<function_calling>"),
    (151673, "<calc_start>"),
    (151674, "<calc_end>"),
    (151675, "<inner_think>"),
    (151676, "<audio_start_baichuan>"),
    (151677, "<audio_end_baichuan>"),
    (151678, "<audio_pad_baichuan>"),
    (151679, "<img_start_baichuan>"),
    (151680, "<img_end_baichuan>"),
    (151681, "<img_pad_baichuan>"),
    (151682, "<img_newline_baichuan>"),
    (151683, "<box_start_baichuan>"),
    (151684, "<box_end_baichuan>"),
    (151685, "<box_delim_baichuan>"),
    (151686, "<ref_start_baichuan>"),
    (151687, "<ref_end_baichuan>"),
    (151688, "<img_delim_baichuan>"),
    (151689, "<polygon_start_baichuan>"),
    (151690, "<polygon_end_baichuan>"),
    (151691, "<baichuan_pad_token>"),
    (151692, "<reserved_113>"),
    (151693, "<audio_delim_baichuan>"),
    (151694, "<video_palce_baichuan>"),
    (151695, "<video_start_baichuan>"),
    (151696, "<video_end_baichuan>"),
    (151697, "<audiotext_start_baichuan>"),
    (151698, "<audiotext_end_baichuan>"),
    (151699, "<audiotext_pad_baichuan>"),
    (151700, "<audiogen_start_baichuan>"),
    (151701, "<audiogen_end_baichuan>"),
];

/// The real config.json keys and values the pipeline uses (Baichuan-Omni-1.5 values, spec §12;
/// the visual/video blocks are omitted: Baichuan-Audio has no such towers).
pub fn real_config_value() -> Value {
    let mut v = json!({
        "_name_or_path": "baichuan-inc/Baichuan-Audio-Instruct",
        "architectures": ["OmniForCausalLM"],
        "auto_map": {
            "AutoConfig": "configuration_omni.OmniConfig",
            "AutoModelForCausalLM": "modeling_omni.OmniForCausalLM"
        },
        "model_type": "omni",
        "omni_tokenizer_type": "auto",
        "torch_dtype": "bfloat16",
        "transformers_version": "4.45.0.dev0",
        "attention_qkv_bias": true,
        "attention_qkv_pack": true,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
        "head_dim": 128,
        "hidden_act": "silu",
        "hidden_size": 3584,
        "initializer_range": 0.02,
        "intermediate_size": 18944,
        "max_position_embeddings": 8192,
        "max_window_layers": 28,
        "multimodal": ["audio", "image", "video", "audiogen"],
        "multimodal_special_token_list": [151676, 151677, 151678, 151679, 151680, 151681, 151682,
            151683, 151684, 151685, 151686, 151687, 151688, 151693, 151694, 151695, 151696, 151697,
            151698, 151699, 151700, 151701],
        "num_attention_heads": 28,
        "num_hidden_layers": 28,
        "num_key_value_heads": 4,
        "position_embedding_type": "rope",
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "sliding_window": 131072,
        "sparse_attention_heads": null,
        "sparse_attention_layers": [],
        "tie_word_embeddings": false,
        "train_multimodal_special_tokens_only": false,
        "use_cache": false,
        "use_norm_head": false,
        "use_sliding_window": false,
        "vocab_size": 152064
    });
    v["audio_config"] = json!({
            "audio_head_transformer_layers": 3,
            "audio_delim_token_id": 151693,
            "audio_end_token_id": 151677,
            "audio_pad_token_id": 151678,
            "audio_start_token_id": 151676,
            "audiogen_end_token_id": 151701,
            "audiogen_start_token_id": 151700,
            "audiotext_end_token_id": 151698,
            "audiotext_pad_token_id": 151699,
            "audiotext_start_token_id": 151697,
            "avg_pooler": 4,
            "d_model": 1280,
            "decoder_attention_heads": 20,
            "decoder_ffn_dim": 5120,
            "decoder_kernel_size": 3,
            "decoder_layers": 8,
            "decoder_stride_size": 2,
            "enable": true,
            "encoder_attention_heads": 20,
            "encoder_ffn_dim": 5120,
            "encoder_layers": 32,
            "hop_length": 160,
            "kernel_size": 3,
            "max_audio_seconds": 30,
            "n_fft": 400,
            "num_mel_bins": 128,
            "sampling_rate": 16000,
            "stride_size": 2,
            "split_overlap": 0.0,
            "vq_config": {"enable": true, "codebook_sizes": [8192, 4096, 2048, 1024, 1024, 1024, 1024, 1024]}
    });
    v["flow_matching_config"] = json!({
            "enable": true,
            "use_hires_mel": true,
            "sampling_rate": 24000,
            "hop_length": 480,
            "max_audio_seconds": 30,
            "split_overlap": 0.1,
            "use_hidden_states_before_dconv2": true,
            "prenet_in_dim": 1280,
            "prenet_out_dim": 80,
            "prenet_d_model": 512,
            "prenet_attention_heads": 8,
            "prenet_ffn_dim": 2048,
            "prenet_nlayers": 12,
            "prenet_activation_function": "gelu",
            "prenet_max_source_positions": 5000,
            "prenet_target_mel_length_scale_ratio": 1.0,
            "prenet_loss_weight": 1.0,
            "unet_use_omni_attn": false,
            "loss_weight": 1.0,
            "in_channels": 80,
            "spk_emb_dim": 0,
            "diffusion_steps": 10,
            "channels": [256],
            "dropout": 0.0,
            "attention_head_dim": 64,
            "n_blocks": 4,
            "num_mid_blocks": 12,
            "num_heads": 8,
            "act_fn": "gelu",
            "cal_mel_mae": true,
            "cfm_params": {
                "sigma_min": 1e-6,
                "solver": "euler",
                "t_scheduler": "cosine",
                "training_cfg_rate": 0.2,
                "inference_cfg_rate": 0.7,
                "reg_loss_type": "l1"
            }
    });
    v["vocoder_config"] = json!({
            "enable": true,
            "enable_multi_scale": true,
            "max_audio_seconds": 30,
            "sampling_rate": 16000,
            "hop_length": 256,
            "split_overlap": 0.0,
            "n_fft": 1024,
            "num_mel_bins": 80,
            "channels": [256, 256, 256, 256, 256]
    });
    v
}

fn set(v: &mut Value, path: &str, x: Value) {
    let mut cur = v;
    let segs: Vec<&str> = path.split('.').collect();
    for s in &segs[..segs.len() - 1] {
        cur = &mut cur[*s];
    }
    cur[segs[segs.len() - 1]] = x;
}

/// The tiny config: the real keys, small widths, 2 layers per stack, small codebooks, the real
/// vocabulary size.
pub fn tiny_config_value(variant: Variant) -> Value {
    let mut v = real_config_value();
    for (k, x) in [
        ("_name_or_path", json!(format!("{}-tiny", variant.repo()))),
        ("hidden_size", json!(64)),
        ("intermediate_size", json!(128)),
        ("num_hidden_layers", json!(2)),
        ("max_window_layers", json!(2)),
        ("num_attention_heads", json!(4)),
        ("num_key_value_heads", json!(2)),
        ("head_dim", json!(16)),
        ("audio_config.audio_head_transformer_layers", json!(2)),
        ("audio_config.d_model", json!(64)),
        ("audio_config.encoder_layers", json!(2)),
        ("audio_config.encoder_attention_heads", json!(4)),
        ("audio_config.encoder_ffn_dim", json!(128)),
        ("audio_config.decoder_layers", json!(2)),
        ("audio_config.decoder_attention_heads", json!(4)),
        ("audio_config.decoder_ffn_dim", json!(128)),
        (
            "audio_config.vq_config.codebook_sizes",
            json!([64, 32, 16, 16, 16, 16, 16, 16]),
        ),
        ("flow_matching_config.prenet_in_dim", json!(64)),
        ("flow_matching_config.prenet_d_model", json!(32)),
        ("flow_matching_config.prenet_attention_heads", json!(2)),
        ("flow_matching_config.prenet_ffn_dim", json!(128)),
        ("flow_matching_config.prenet_nlayers", json!(2)),
        ("flow_matching_config.channels", json!([32])),
        ("flow_matching_config.attention_head_dim", json!(16)),
        ("flow_matching_config.n_blocks", json!(2)),
        ("flow_matching_config.num_mid_blocks", json!(2)),
        ("flow_matching_config.num_heads", json!(2)),
        ("vocoder_config.channels", json!([16, 16, 16, 16, 16])),
    ] {
        set(&mut v, k, x);
    }
    v
}

/// The tiny HiFT: the real structure at 16 base channels.
pub fn tiny_hift_config() -> HiftConfig {
    HiftConfig {
        base_channels: 16,
        f0_channels: 16,
        ..HiftConfig::default()
    }
}

/// Sinusoid table of spec §3 (sin half, then cos half).
pub fn sinusoids(len: usize, ch: usize) -> Vec<f32> {
    let half = ch / 2;
    let inc = (10000f64).ln() / (half.max(2) - 1) as f64;
    let mut out = vec![0f32; len * ch];
    for t in 0..len {
        for c in 0..half {
            let a = t as f64 * (-inc * c as f64).exp();
            out[t * ch + c] = a.sin() as f32;
            out[t * ch + half + c] = a.cos() as f32;
        }
    }
    out
}

/// Seeded values for one tensor, by role.
pub fn init_values(spec: &TensorSpec, rng: &mut Rng) -> Vec<f32> {
    let n: usize = spec.shape.iter().product();
    match spec.role {
        Role::Linear | Role::Conv | Role::Embedding | Role::Bias => rng.normal_vec(n, 0.02),
        Role::Norm | Role::Alpha => (0..n).map(|_| 1.0 + 0.02 * rng.normal()).collect(),
        Role::Codebook => rng.normal_vec(n, 1.0),
        Role::TrainingOnly if spec.shape.len() == 1 => rng.uniform_vec(n, 0.5, 2.0),
        Role::TrainingOnly => rng.normal_vec(n, 1.0),
        Role::Positional => sinusoids(spec.shape[0], spec.shape[1]),
        Role::WeightG => rng.uniform_vec(n, 0.5, 1.5),
    }
}

/// The Qwen tokenizer with Qwen3's 151665–151668 dropped and Baichuan's tokens added.
pub fn baichuan_tokenizer(qwen_tokenizer_json: &str) -> Result<Value, WeightError> {
    let mut tok: Value = serde_json::from_str(qwen_tokenizer_json)
        .map_err(|e| WeightError::Tokenizer(format!("tokenizer.json is not JSON: {e}")))?;
    let added = tok
        .get_mut("added_tokens")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| WeightError::Tokenizer("tokenizer.json has no added_tokens".into()))?;
    added.retain(|t| t["id"].as_u64().is_some_and(|id| id < 151665));
    if !added.iter().any(|t| t["id"] == 151643) {
        return Err(WeightError::Tokenizer(
            "tokenizer.json lacks <|endoftext|> (151643): not a Qwen2 tokenizer".into(),
        ));
    }
    for (id, content) in BAICHUAN_TOKENS {
        added.push(json!({
            "id": id, "content": content, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true
        }));
    }
    Ok(tok)
}

fn tokenizer_config(tok: &Value) -> Value {
    let mut dec = serde_json::Map::new();
    let mut specials = Vec::new();
    if let Some(added) = tok["added_tokens"].as_array() {
        for t in added {
            let id = t["id"].as_u64().unwrap_or(0);
            dec.insert(
                id.to_string(),
                json!({
                    "content": t["content"], "lstrip": false, "normalized": false,
                    "rstrip": false, "single_word": false, "special": t["special"]
                }),
            );
            if t["special"] == true && id != 151643 {
                specials.push(t["content"].clone());
            }
        }
    }
    json!({
        "add_bos_token": false,
        "add_prefix_space": false,
        "added_tokens_decoder": dec,
        "additional_special_tokens": specials,
        "bos_token": null,
        "clean_up_tokenization_spaces": false,
        "eos_token": "<|endoftext|>",
        "errors": "replace",
        "model_max_length": 32768,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": false,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": null
    })
}

pub struct TinyOptions {
    pub out: PathBuf,
    pub seed: u64,
    pub variant: Variant,
    pub tokenizer: PathBuf,
}

fn write_json(path: &Path, v: &Value) -> Result<(), WeightError> {
    let s = serde_json::to_string_pretty(v).map_err(|e| WeightError::Invalid(e.to_string()))?;
    std::fs::write(path, s).map_err(|e| WeightError::io(path, e))
}

/// Writes the tiny folder; returns the files written.
pub fn write_tiny(o: &TinyOptions) -> Result<Vec<PathBuf>, WeightError> {
    std::fs::create_dir_all(&o.out).map_err(|e| WeightError::io(&o.out, e))?;
    let qwen =
        std::fs::read_to_string(&o.tokenizer).map_err(|e| WeightError::io(&o.tokenizer, e))?;
    let tok = baichuan_tokenizer(&qwen)?;
    let cfg_v = tiny_config_value(o.variant);
    let cfg = OmniConfig::from_value(cfg_v.clone(), "config.json")?;
    let mut files = Vec::new();
    let put = |files: &mut Vec<PathBuf>, name: &str, v: &Value| -> Result<(), WeightError> {
        let p = o.out.join(name);
        write_json(&p, v)?;
        files.push(p);
        Ok(())
    };
    put(&mut files, "config.json", &cfg_v)?;
    put(
        &mut files,
        "generation_config.json",
        &json!({"bos_token_id": 151643, "eos_token_id": 151643, "max_new_tokens": 2048,
                "transformers_version": "4.45.0.dev0"}),
    )?;
    put(&mut files, "tokenizer.json", &tok)?;
    put(&mut files, "tokenizer_config.json", &tokenizer_config(&tok))?;
    let added: serde_json::Map<String, Value> = tok["added_tokens"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| Some((t["content"].as_str()?.to_string(), t["id"].clone())))
                .collect()
        })
        .unwrap_or_default();
    put(&mut files, "added_tokens.json", &Value::Object(added))?;
    put(
        &mut files,
        "special_tokens_map.json",
        &json!({"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}),
    )?;

    // model weights: bf16, two shards split at half the bytes
    let mut rng = Rng::new(o.seed);
    let specs = model_tensors(&cfg);
    let total: usize = specs
        .iter()
        .map(|s| s.shape.iter().product::<usize>() * 2)
        .sum();
    let shard_names = [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ];
    let mut shards: [Vec<(TensorInfo, Vec<u8>)>; 2] = [Vec::new(), Vec::new()];
    let mut weight_map = serde_json::Map::new();
    let mut acc = 0usize;
    for s in &specs {
        let vals = init_values(s, &mut rng);
        let bytes = dtype::from_f32(DType::BF16, &vals);
        let si = usize::from(acc >= total / 2);
        acc += bytes.len();
        weight_map.insert(s.name.clone(), json!(shard_names[si]));
        shards[si].push((
            TensorInfo {
                name: s.name.clone(),
                shape: s.shape.clone(),
                dtype: DType::BF16,
            },
            bytes,
        ));
    }
    for (name, tensors) in shard_names.iter().zip(&shards) {
        let p = o.out.join(name);
        write_file(&p, tensors)?;
        files.push(p);
    }
    put(
        &mut files,
        "model.safetensors.index.json",
        &json!({"metadata": {"total_size": total}, "weight_map": weight_map}),
    )?;

    // hift.pt: f32, legacy weight-norm names
    let hcfg = tiny_hift_config();
    let hift: Vec<TorchTensor> = hcfg
        .tensors()
        .iter()
        .map(|s| TorchTensor {
            name: s.name.clone(),
            shape: s.shape.clone(),
            dtype: DType::F32,
            data: dtype::from_f32(DType::F32, &init_values(s, &mut rng)),
        })
        .collect();
    let hp = o.out.join("hift.pt");
    write_state_dict(&hp, &hift)?;
    files.push(hp);
    Ok(files)
}
