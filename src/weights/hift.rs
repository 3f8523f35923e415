//! The CosyVoice2 HiFT vocoder checkpoint (`hift.pt`), spec §9: hyper-parameters, the tensor
//! list they imply (legacy weight-norm names `weight_g`/`weight_v`), and weight-norm folding.
//!
//! The real folder has no config for HiFT (the constructor in `cosy24k_vocoder.py` holds it), so
//! [`HiftConfig::default`] is the real one and [`HiftConfig::infer`] reads the sizes that tensor
//! shapes reveal (channels, kernel sizes, harmonics) — which is how a miniature `hift.pt` is read.

use super::spec::{Role, Stage, TensorSpec};
use super::{TensorInfo, WeightError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HiftConfig {
    pub in_channels: usize,
    pub base_channels: usize,
    pub nb_harmonics: usize,
    pub sampling_rate: usize,
    pub upsample_rates: Vec<usize>,
    pub upsample_kernel_sizes: Vec<usize>,
    pub istft_n_fft: usize,
    pub istft_hop: usize,
    pub resblock_kernel_sizes: Vec<usize>,
    pub resblock_dilation_sizes: Vec<Vec<usize>>,
    pub source_resblock_kernel_sizes: Vec<usize>,
    pub source_resblock_dilation_sizes: Vec<Vec<usize>>,
    pub f0_channels: usize,
    pub f0_layers: usize,
    pub lrelu_slope: f64,
    pub audio_limit: f64,
    pub nsf_alpha: f64,
    pub nsf_sigma: f64,
    pub nsf_voiced_threshold: f64,
}

/// The largest size and layer count [`HiftConfig::inconsistency`] accepts (the tensor list is
/// built from them; the real config's largest size is 512 and it has 3 F0 layers).
const MAX_SIZE: usize = 1 << 20;
const MAX_LAYERS: usize = 1 << 10;

impl Default for HiftConfig {
    fn default() -> Self {
        HiftConfig {
            in_channels: 80,
            base_channels: 512,
            nb_harmonics: 8,
            sampling_rate: 24000,
            upsample_rates: vec![8, 5, 3],
            upsample_kernel_sizes: vec![16, 11, 7],
            istft_n_fft: 16,
            istft_hop: 4,
            resblock_kernel_sizes: vec![3, 7, 11],
            resblock_dilation_sizes: vec![vec![1, 3, 5]; 3],
            source_resblock_kernel_sizes: vec![7, 7, 11],
            source_resblock_dilation_sizes: vec![vec![1, 3, 5]; 3],
            f0_channels: 512,
            f0_layers: 5,
            lrelu_slope: 0.1,
            audio_limit: 0.99,
            nsf_alpha: 0.1,
            nsf_sigma: 0.003,
            nsf_voiced_threshold: 10.0,
        }
    }
}

fn wn(l: &mut Vec<TensorSpec>, p: &str, v: &[usize], bias: bool) {
    let mut g = vec![v[0]];
    g.extend(std::iter::repeat_n(1, v.len() - 1));
    let mut push = |name: String, shape: Vec<usize>, role: Role| {
        l.push(TensorSpec {
            name,
            shape,
            role,
            stage: Stage::Hift,
        })
    };
    push(format!("{p}.weight_g"), g, Role::WeightG);
    push(format!("{p}.weight_v"), v.to_vec(), Role::Conv);
    if bias {
        let out = v[0];
        push(format!("{p}.bias"), vec![out], Role::Bias);
    }
}

fn plain(l: &mut Vec<TensorSpec>, name: String, shape: Vec<usize>, role: Role) {
    l.push(TensorSpec {
        name,
        shape,
        role,
        stage: Stage::Hift,
    });
}

fn resblock(l: &mut Vec<TensorSpec>, p: &str, ch: usize, k: usize, n_dil: usize) {
    for c in ["convs1", "convs2"] {
        for j in 0..n_dil {
            wn(l, &format!("{p}.{c}.{j}"), &[ch, ch, k], true);
        }
    }
    for a in ["activations1", "activations2"] {
        for j in 0..n_dil {
            plain(l, format!("{p}.{a}.{j}.alpha"), vec![ch], Role::Alpha);
        }
    }
}

impl HiftConfig {
    /// Why the config cannot describe a vocoder (array lengths that disagree, no upsampling
    /// stage, channels that run out, a size over 2²⁰ or more than 1024 F0 layers), or None.
    /// [`HiftConfig::tensors`] indexes by these and loops over the layers, so a config from
    /// outside (a web manifest) is checked first.
    pub fn inconsistency(&self) -> Option<String> {
        let n_up = self.upsample_rates.len();
        let nk = self.resblock_kernel_sizes.len();
        if n_up == 0 {
            return Some("upsample_rates is empty".into());
        }
        let lens = [
            (
                "upsample_kernel_sizes",
                self.upsample_kernel_sizes.len(),
                n_up,
            ),
            (
                "source_resblock_kernel_sizes",
                self.source_resblock_kernel_sizes.len(),
                n_up,
            ),
            (
                "source_resblock_dilation_sizes",
                self.source_resblock_dilation_sizes.len(),
                n_up,
            ),
            (
                "resblock_dilation_sizes",
                self.resblock_dilation_sizes.len(),
                nk,
            ),
        ];
        for (name, got, want) in lens {
            if got != want {
                return Some(format!("{name} has {got} entries, not {want}"));
            }
        }
        if n_up >= usize::BITS as usize || self.stage_channels(n_up - 1) == 0 {
            return Some(format!(
                "base_channels {} runs out over {n_up} upsampling stages",
                self.base_channels
            ));
        }
        // the sizes the tensor list is built from: bounded, so that its arithmetic cannot
        // overflow and its loops stay short (the real config's largest is 512)
        let sizes = [
            ("in_channels", self.in_channels),
            ("base_channels", self.base_channels),
            ("nb_harmonics", self.nb_harmonics),
            ("istft_n_fft", self.istft_n_fft),
            ("f0_channels", self.f0_channels),
        ];
        let lists = [
            ("upsample_rates", &self.upsample_rates),
            ("upsample_kernel_sizes", &self.upsample_kernel_sizes),
            ("resblock_kernel_sizes", &self.resblock_kernel_sizes),
            (
                "source_resblock_kernel_sizes",
                &self.source_resblock_kernel_sizes,
            ),
        ];
        let listed = lists
            .iter()
            .flat_map(|(name, v)| v.iter().map(move |&x| (*name, x)));
        if let Some((name, v)) = sizes.into_iter().chain(listed).find(|&(_, v)| v > MAX_SIZE) {
            return Some(format!("{name} has {v}, over {MAX_SIZE}"));
        }
        if self.f0_layers > MAX_LAYERS {
            return Some(format!(
                "f0_layers is {}, over {MAX_LAYERS}",
                self.f0_layers
            ));
        }
        let up = self
            .upsample_rates
            .iter()
            .try_fold(1usize, |a, &r| a.checked_mul(r).filter(|&p| p <= MAX_SIZE));
        if up.is_none() {
            return Some(format!(
                "the product of upsample_rates {:?} is over {MAX_SIZE}",
                self.upsample_rates
            ));
        }
        None
    }

    /// Channels after upsampling stage `i` (512 → 256 → 128 → 64 for the real config).
    pub fn stage_channels(&self, i: usize) -> usize {
        self.base_channels >> (i + 1)
    }

    /// Every tensor of `hift.pt` (legacy weight-norm spelling), spec §9.
    pub fn tensors(&self) -> Vec<TensorSpec> {
        let mut l = Vec::new();
        // saturating: a config that `inconsistency` refuses must not panic here either
        let nfft2 = self.istft_n_fft.saturating_add(2);
        wn(
            &mut l,
            "conv_pre",
            &[self.base_channels, self.in_channels, 7],
            true,
        );
        let n_up = self.upsample_rates.len();
        for (i, &k) in self.upsample_kernel_sizes.iter().enumerate() {
            let (cin, cout) = (self.base_channels >> i, self.stage_channels(i));
            // ConvTranspose1d weight is [in, out, k]; weight norm over all dims but 0 (= in)
            let name = format!("ups.{i}");
            wn(&mut l, &name, &[cin, cout, k], false);
            plain(&mut l, format!("{name}.bias"), vec![cout], Role::Bias);
        }
        for i in 0..n_up {
            let ch = self.stage_channels(i);
            let u = self.upsample_rates[i + 1..]
                .iter()
                .fold(1usize, |a, &r| a.saturating_mul(r));
            let k = if i + 1 < n_up { u.saturating_mul(2) } else { 1 };
            plain(
                &mut l,
                format!("source_downs.{i}.weight"),
                vec![ch, nfft2, k],
                Role::Conv,
            );
            plain(
                &mut l,
                format!("source_downs.{i}.bias"),
                vec![ch],
                Role::Bias,
            );
            let sk = self.source_resblock_kernel_sizes[i];
            let nd = self.source_resblock_dilation_sizes[i].len();
            resblock(&mut l, &format!("source_resblocks.{i}"), ch, sk, nd);
        }
        let nk = self.resblock_kernel_sizes.len();
        for i in 0..n_up {
            for (j, &k) in self.resblock_kernel_sizes.iter().enumerate() {
                let nd = self.resblock_dilation_sizes[j].len();
                resblock(
                    &mut l,
                    &format!("resblocks.{}", i * nk + j),
                    self.stage_channels(i),
                    k,
                    nd,
                );
            }
        }
        wn(
            &mut l,
            "conv_post",
            &[nfft2, self.stage_channels(n_up - 1), 7],
            true,
        );
        plain(
            &mut l,
            "m_source.l_linear.weight".into(),
            vec![1, self.nb_harmonics.saturating_add(1)],
            Role::Linear,
        );
        plain(&mut l, "m_source.l_linear.bias".into(), vec![1], Role::Bias);
        for j in 0..self.f0_layers {
            let cin = if j == 0 {
                self.in_channels
            } else {
                self.f0_channels
            };
            wn(
                &mut l,
                &format!("f0_predictor.condnet.{}", 2 * j),
                &[self.f0_channels, cin, 3],
                true,
            );
        }
        plain(
            &mut l,
            "f0_predictor.classifier.weight".into(),
            vec![1, self.f0_channels],
            Role::Linear,
        );
        plain(
            &mut l,
            "f0_predictor.classifier.bias".into(),
            vec![1],
            Role::Bias,
        );
        l
    }

    /// Sizes revealed by the tensors (either weight-norm spelling); the rest stays default.
    pub fn infer(infos: &[TensorInfo]) -> Result<Self, WeightError> {
        let shape = |base: &str, dim: usize| -> Result<usize, WeightError> {
            let cands = [
                format!("{base}.weight_v"),
                format!("{base}.parametrizations.weight.original1"),
                format!("{base}.weight"),
            ];
            let t = infos
                .iter()
                .find(|t| cands.contains(&t.name))
                .ok_or_else(|| WeightError::MissingTensor {
                    name: cands[0].clone(),
                })?;
            t.shape
                .get(dim)
                .copied()
                .ok_or_else(|| WeightError::WrongShape {
                    name: t.name.clone(),
                    got: t.shape.clone(),
                    want: vec![],
                })
        };
        let mut c = HiftConfig {
            base_channels: shape("conv_pre", 0)?,
            in_channels: shape("conv_pre", 1)?,
            f0_channels: shape("f0_predictor.condnet.0", 0)?,
            nb_harmonics: shape("m_source.l_linear", 1)?.saturating_sub(1),
            istft_n_fft: shape("conv_post", 0)?.saturating_sub(2),
            ..HiftConfig::default()
        };
        for i in 0..c.upsample_kernel_sizes.len() {
            c.upsample_kernel_sizes[i] = shape(&format!("ups.{i}"), 2)?;
            c.source_resblock_kernel_sizes[i] =
                shape(&format!("source_resblocks.{i}.convs1.0"), 2)?;
        }
        for j in 0..c.resblock_kernel_sizes.len() {
            c.resblock_kernel_sizes[j] = shape(&format!("resblocks.{j}.convs1.0"), 2)?;
        }
        Ok(c)
    }
}

/// `w = g · v / ‖v‖`, the norm over all dims except 0, per slice of dim 0 (spec §9).
pub fn fold_weight_norm(g: &[f32], v: &[f32], rows: usize) -> Vec<f32> {
    let per = v.len() / rows.max(1);
    let mut out = Vec::with_capacity(v.len());
    for (r, slice) in v.chunks(per.max(1)).enumerate() {
        let n = slice
            .iter()
            .map(|x| (*x as f64) * (*x as f64))
            .sum::<f64>()
            .sqrt();
        let s = if n > 0.0 {
            g.get(r).copied().unwrap_or(0.0) as f64 / n
        } else {
            0.0
        };
        out.extend(slice.iter().map(|x| (*x as f64 * s) as f32));
    }
    out
}

/// A tensor held in memory as f32.
#[derive(Clone, Debug, PartialEq)]
pub struct F32Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Replaces every weight-norm pair (`X.weight_g`/`X.weight_v` or
/// `X.parametrizations.weight.original0`/`original1`) by a plain `X.weight`; other tensors pass.
pub fn fold_all(tensors: Vec<F32Tensor>) -> Result<Vec<F32Tensor>, WeightError> {
    const PAIRS: [(&str, &str); 2] = [
        (".weight_g", ".weight_v"),
        (
            ".parametrizations.weight.original0",
            ".parametrizations.weight.original1",
        ),
    ];
    let mut by_name: std::collections::HashMap<String, F32Tensor> = tensors
        .iter()
        .map(|t| (t.name.clone(), t.clone()))
        .collect();
    let mut out = Vec::new();
    for t in tensors {
        if !by_name.contains_key(&t.name) {
            continue; // consumed as the other half of a pair
        }
        let pair = PAIRS.iter().find_map(|(gs, vs)| {
            t.name
                .strip_suffix(gs)
                .map(|b| (b.to_string(), format!("{b}{vs}")))
                .or_else(|| {
                    t.name
                        .strip_suffix(vs)
                        .map(|b| (b.to_string(), format!("{b}{gs}")))
                })
                .map(|(b, other)| (b, other, t.name.ends_with(gs)))
        });
        match pair {
            None => {
                by_name.remove(&t.name);
                out.push(t);
            }
            Some((base, other, is_g)) => {
                let o = by_name
                    .remove(&other)
                    .ok_or_else(|| WeightError::MissingTensor {
                        name: other.clone(),
                    })?;
                by_name.remove(&t.name);
                let (g, v) = if is_g { (t, o) } else { (o, t) };
                let rows = v.shape.first().copied().unwrap_or(1);
                if g.data.len() != rows {
                    return Err(WeightError::WrongShape {
                        name: g.name,
                        got: g.shape,
                        want: vec![rows, 1, 1],
                    });
                }
                out.push(F32Tensor {
                    name: format!("{base}.weight"),
                    data: fold_weight_norm(&g.data, &v.data, rows),
                    shape: v.shape,
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_hift_has_about_20_8m_params() {
        let n: usize = HiftConfig::default()
            .tensors()
            .iter()
            .map(|t| t.shape.iter().product::<usize>())
            .sum();
        assert!((n as f64 / 1e6 - 20.8).abs() < 0.2, "{n}");
    }

    #[test]
    fn inconsistent_configs_are_named_not_indexed() {
        assert_eq!(HiftConfig::default().inconsistency(), None);
        let mut c = HiftConfig::default();
        c.source_resblock_kernel_sizes.pop();
        let why = c.inconsistency().unwrap_or_default();
        assert!(
            why.contains("source_resblock_kernel_sizes has 2 entries, not 3"),
            "{why}"
        );
        let mut c = HiftConfig::default();
        c.resblock_dilation_sizes.truncate(1);
        assert!(c.inconsistency().is_some());
        let c = HiftConfig {
            base_channels: 4,
            ..Default::default()
        };
        let why = c.inconsistency().unwrap_or_default();
        assert!(why.contains("runs out"), "{why}");
        let mut c = HiftConfig::default();
        c.upsample_rates.clear();
        assert!(c.inconsistency().is_some());
    }

    /// Sizes whose tensor list would overflow (the product of the upsample rates, the FFT
    /// size) or loop for ever (the F0 layers) are refused by name, and the list itself does
    /// not panic on them.
    #[test]
    fn absurd_sizes_are_refused_and_do_not_overflow() {
        let mut c = HiftConfig {
            upsample_rates: vec![3074457345618258603, 8, 5],
            ..Default::default()
        };
        let why = c.inconsistency().unwrap_or_default();
        assert!(
            why.contains("upsample_rates has 3074457345618258603"),
            "{why}"
        );
        assert!(!c.tensors().is_empty());
        c.upsample_rates = vec![1 << 12, 1 << 12, 2];
        let why = c.inconsistency().unwrap_or_default();
        assert!(why.contains("product of upsample_rates"), "{why}");
        let c = HiftConfig {
            istft_n_fft: usize::MAX,
            nb_harmonics: usize::MAX,
            ..Default::default()
        };
        let why = c.inconsistency().unwrap_or_default();
        assert!(
            why.contains("nb_harmonics") || why.contains("istft_n_fft"),
            "{why}"
        );
        assert!(!c.tensors().is_empty());
        let c = HiftConfig {
            f0_layers: 1 << 40,
            ..Default::default()
        };
        let why = c.inconsistency().unwrap_or_default();
        assert!(why.contains("f0_layers"), "{why}");
    }

    #[test]
    fn fold_matches_formula_and_both_spellings() {
        let v = vec![3.0f32, 4.0, 1.0, 0.0];
        let g = vec![10.0f32, 2.0];
        let w = fold_weight_norm(&g, &v, 2);
        assert_eq!(w, vec![6.0, 8.0, 2.0, 0.0]);
        let mk = |n: &str, s: Vec<usize>, d: Vec<f32>| F32Tensor {
            name: n.into(),
            shape: s,
            data: d,
        };
        for (gs, vs) in [
            ("a.weight_g", "a.weight_v"),
            (
                "a.parametrizations.weight.original0",
                "a.parametrizations.weight.original1",
            ),
        ] {
            let out = fold_all(vec![
                mk(vs, vec![2, 2, 1], v.clone()),
                mk("a.bias", vec![2], vec![1.0, 2.0]),
                mk(gs, vec![2, 1, 1], g.clone()),
            ])
            .unwrap();
            assert_eq!(out.len(), 2);
            assert_eq!(out[0].name, "a.weight");
            assert_eq!(out[0].data, w);
            assert_eq!(out[1].name, "a.bias");
        }
        let e = fold_all(vec![mk("b.weight_g", vec![1, 1, 1], vec![1.0])]).unwrap_err();
        assert!(matches!(e, WeightError::MissingTensor { name } if name == "b.weight_v"));
    }
}
