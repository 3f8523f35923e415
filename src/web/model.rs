//! Loading a converted model into the engine.
//!
//! `loadModelBytes` is the simple path: JS hands over the manifest text and every shard's bytes
//! (fine for the tiny model; tests use it). The streaming loader (cache, integrity, progress)
//! fills the same store part by part.

use std::rc::Rc;

use wasm_bindgen::prelude::*;

use super::{to_js, Engine};
use crate::model::Weights;
use crate::weights::manifest::Manifest;

#[wasm_bindgen]
impl Engine {
    /// Loads a converted model from its manifest JSON and the bytes of its shards (in manifest
    /// order). Resolves to `{tensors, quant}`.
    #[wasm_bindgen(js_name = loadModelBytes)]
    pub fn load_model_bytes(
        &self,
        manifest_json: &str,
        shards: js_sys::Array,
    ) -> Result<JsValue, JsError> {
        let manifest: Manifest = serde_json::from_str(manifest_json)
            .map_err(|e| JsError::new(&format!("manifest.json: {e}")))?;
        let bytes: Vec<Vec<u8>> = shards
            .iter()
            .map(|v| js_sys::Uint8Array::new(&v).to_vec())
            .collect();
        if bytes.len() != manifest.shards.len() {
            return Err(JsError::new(&format!(
                "manifest lists {} shards, got {}",
                manifest.shards.len(),
                bytes.len()
            )));
        }
        let refs: Vec<&[u8]> = bytes.iter().map(|b| b.as_slice()).collect();
        let w = Weights::from_manifest(&self.ctx, &manifest, &refs)
            .map_err(|e| JsError::new(&e.to_string()))?;
        *self.weights.borrow_mut() = Some(Rc::new(w));
        to_js(&serde_json::json!({
            "tensors": manifest.tensors.len(),
            "quant": manifest.quant,
        }))
    }
}

impl Engine {
    /// The loaded model, or an error the page can show.
    #[allow(dead_code)] // used by the stage APIs
    pub(crate) fn model(&self) -> Result<Rc<Weights>, JsError> {
        self.weights
            .borrow()
            .clone()
            .ok_or_else(|| JsError::new("no model loaded"))
    }
}
