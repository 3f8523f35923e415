//! The decode attention with its combine in the splits' dispatch (`attn_decode_gqa_sync`,
//! `GpuContext::attn_one_dispatch`) against the two dispatches, on the native adapter.
//!
//! The combine workgroups wait for a count the split workgroups raise. On a GPU (an H100 runs
//! this binary in the benchmark calls) they run at the same time. Lavapipe (CI) stops any
//! shader's loops after 65535 rounds in all, so a wait for splits that another thread still
//! runs can end early there; the engine keeps this form off on CPU adapters. This binary runs
//! lavapipe single-threaded (`LP_NUM_THREADS=0`, set before the first adapter is made; one
//! test in the binary, so nothing else makes one first), where workgroups run one after
//! another in the order of their index, so a combine workgroup finds every split done: that
//! checks the kernel's layout, arithmetic and count against the two-dispatch form, not the
//! concurrency, which only a GPU can.

mod common;
use common::assert_ok;

use bca::gpu::{GpuContext, GpuOptions};
use bca::selftest::attention as st;

#[test]
fn attn_decode_one_dispatch() {
    // (no other thread of this binary reads the environment yet: this is its only test)
    std::env::set_var("LP_NUM_THREADS", "0");
    for f32 in [false, true] {
        let mut c = pollster::block_on(GpuContext::new(&GpuOptions {
            force_f32: f32,
            no_subgroups: f32,
            ..Default::default()
        }))
        .expect("GPU adapter");
        let cpu = c.info.device_type == bca::wgpu::DeviceType::Cpu;
        assert!(
            cpu || c.info.vendor == 0x10de,
            "the one-dispatch form is for NVIDIA GPUs and (single-threaded) lavapipe: {:?}",
            c.info
        );
        assert!(
            c.attn_one_dispatch != cpu,
            "on by default on NVIDIA, off on lavapipe"
        );
        // lengths one after another on one context: short to long and back, one split, past
        // 1024 keys (64-key splits), over 512 splits (the combine's second pass rescales);
        // GQA 7 (the last combine workgroup has one head), G = 1 with an odd Hq, G = 2
        for (hs, lens) in [
            ((28, 4, 128), &[1000usize, 33, 4099, 7, 64, 1025, 100][..]),
            ((5, 5, 64), &[65, 2000, 32][..]),
            ((2, 1, 32), &[40_000, 300][..]),
        ] {
            assert_ok(
                &format!("f32 {f32} one-dispatch decode heads {hs:?} L={lens:?}"),
                pollster::block_on(st::attn_decode_one_dispatch_case(&mut c, hs, lens, 1300)),
            );
        }
    }
}
