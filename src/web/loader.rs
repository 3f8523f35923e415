//! The streaming loader's wasm side (the fetching, caching and progress live in
//! `www/loader.js`): JS hands over the manifest, then each shard's chunks as they arrive from
//! the network or the cache; Rust hashes them and writes tensor parts to GPU buffers at once
//! (see `model::stream`). A chunk passes through wasm memory only while it is copied out.

use std::rc::Rc;

use wasm_bindgen::prelude::*;

use super::{to_js, Engine};
use crate::gpu::GpuContext;
use crate::model::stream::{StreamLoader, StreamOptions};

fn js_err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// Options from JS: `{ maxBindingBytes? }` (a test hook lowering the adapter's binding limit).
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct LoadOptions {
    #[serde(default)]
    max_binding_bytes: Option<f64>,
}

/// One load in progress (created by `Engine.beginLoad`, consumed by `Engine.finishLoad`).
#[wasm_bindgen]
pub struct ModelLoader {
    ctx: Rc<GpuContext>,
    inner: Option<StreamLoader>,
}

impl ModelLoader {
    fn inner(&mut self) -> Result<&mut StreamLoader, JsError> {
        self.inner
            .as_mut()
            .ok_or_else(|| JsError::new("this load has already finished"))
    }
}

#[wasm_bindgen]
impl ModelLoader {
    /// Starts (or restarts) shard `i`.
    #[wasm_bindgen(js_name = beginShard)]
    pub fn begin_shard(&mut self, i: usize) -> Result<(), JsError> {
        self.inner()?.begin_shard(i).map_err(js_err)
    }

    /// The next bytes of the current shard.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), JsError> {
        let ctx = self.ctx.clone();
        self.inner()?.push(&ctx, chunk).map_err(js_err)
    }

    /// Ends the current shard (size and SHA-256 checked; the error names the shard).
    #[wasm_bindgen(js_name = endShard)]
    pub fn end_shard(&mut self) -> Result<(), JsError> {
        self.inner()?.end_shard().map_err(js_err)
    }

    /// Largest number of bytes staged at once for a GPU write.
    #[wasm_bindgen(js_name = peakStage)]
    pub fn peak_stage(&mut self) -> Result<usize, JsError> {
        Ok(self.inner()?.peak_stage)
    }
}

#[wasm_bindgen]
impl Engine {
    /// Validates a manifest (format version, config vs `config.json` when given, quant and
    /// formats, every tensor and span, the adapter's limits) and returns a loader for its
    /// shards. Fails before anything is downloaded.
    #[wasm_bindgen(js_name = beginLoad)]
    pub fn begin_load(
        &self,
        manifest_json: &str,
        config_json: Option<String>,
        file: &str,
        options: JsValue,
    ) -> Result<ModelLoader, JsError> {
        let o: LoadOptions = if options.is_undefined() || options.is_null() {
            LoadOptions::default()
        } else {
            serde_wasm_bindgen::from_value(options).map_err(js_err)?
        };
        let opts = StreamOptions {
            max_binding: o.max_binding_bytes.map(|b| b.max(0.0) as u64),
        };
        let inner = StreamLoader::new(
            &self.ctx,
            manifest_json.as_bytes(),
            config_json.as_deref().map(str::as_bytes),
            file,
            &opts,
        )
        .map_err(js_err)?;
        Ok(ModelLoader {
            ctx: self.ctx.clone(),
            inner: Some(inner),
        })
    }

    /// Installs a completed load as the engine's model. Resolves to `{tensors, quant}`.
    #[wasm_bindgen(js_name = finishLoad)]
    pub fn finish_load(&self, loader: &mut ModelLoader) -> Result<JsValue, JsError> {
        let inner = loader
            .inner
            .take()
            .ok_or_else(|| JsError::new("this load has already finished"))?;
        let tensors = inner.manifest().tensors.len();
        let quant = inner.manifest().quant.clone();
        let w = inner.finish().map_err(js_err)?;
        *self.weights.borrow_mut() = Some(Rc::new(w));
        to_js(&serde_json::json!({ "tensors": tensors, "quant": quant }))
    }

    /// SHA-256 (hex) of a loaded tensor as the store holds it (GPU read-back for matrices);
    /// compare with `bca check --digests`.
    #[wasm_bindgen(js_name = tensorDigest)]
    pub fn tensor_digest(&self, name: String) -> Result<js_sys::Promise, JsError> {
        let w = self.model()?;
        let ctx = self.ctx.clone();
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            w.digest(&ctx, &name)
                .await
                .map(|d| JsValue::from_str(&d))
                .map_err(|e| JsValue::from(js_err(e)))
        }))
    }

    /// Names of every tensor of the loaded model.
    #[wasm_bindgen(js_name = tensorNames)]
    pub fn tensor_names(&self) -> Result<JsValue, JsError> {
        to_js(&self.model()?.names())
    }

    /// Bytes of wasm linear memory (the loader's memory bound is checked against it).
    #[wasm_bindgen(js_name = wasmMemoryBytes)]
    pub fn wasm_memory_bytes(&self) -> f64 {
        wasm_bindgen::memory()
            .dyn_into::<js_sys::WebAssembly::Memory>()
            .map(|m| js_sys::ArrayBuffer::from(m.buffer()).byte_length() as f64)
            .unwrap_or(0.0)
    }
}
