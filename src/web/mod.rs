//! The wasm boundary: the only place Rust errors become `JsError`s.
//! The worker (`www/worker.js`) owns one [`Engine`]; the page talks to the worker.

use std::rc::Rc;

use wasm_bindgen::prelude::*;

use crate::gpu::{GpuContext, GpuOptions};

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// Options from JS: `{ forceF32?: boolean }`.
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct JsOptions {
    #[serde(default)]
    force_f32: bool,
}

#[wasm_bindgen]
pub struct Engine {
    pub(crate) ctx: Rc<GpuContext>,
    /// The loaded model, if any (see `model.rs`).
    pub(crate) weights: std::cell::RefCell<Option<Rc<crate::model::Weights>>>,
}

mod audio_in;
mod chat;
mod llm;
mod loader;
mod model;

// audio out (spec §7–§9): `vocode`
mod audio_out;

fn to_js<T: serde::Serialize>(v: &T) -> Result<JsValue, JsError> {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| JsError::new(&e.to_string()))
}

#[wasm_bindgen]
impl Engine {
    /// Creates the GPU context (adapter, features, limits). Rejects with a readable message.
    pub async fn create(options: JsValue) -> Result<Engine, JsError> {
        let o: JsOptions = if options.is_undefined() || options.is_null() {
            JsOptions::default()
        } else {
            serde_wasm_bindgen::from_value(options).map_err(|e| JsError::new(&e.to_string()))?
        };
        let opts = GpuOptions {
            force_f32: o.force_f32,
            ..Default::default()
        };
        let ctx = GpuContext::new(&opts)
            .await
            .map_err(|e| JsError::new(&e.to_string()))?;
        Ok(Engine {
            ctx: Rc::new(ctx),
            weights: Default::default(),
        })
    }

    /// Adapter, backend, features and negotiated limits, as a plain object.
    pub fn info(&self) -> Result<JsValue, JsError> {
        to_js(&self.ctx.report())
    }

    /// Runs the kernel self-tests; resolves to `[{name, passed, detail}]`.
    #[wasm_bindgen(js_name = selfTest)]
    pub fn self_test(&self) -> js_sys::Promise {
        let ctx = self.ctx.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let results = crate::selftest::run_all(&ctx).await;
            to_js(&results).map_err(JsValue::from)
        })
    }
}
