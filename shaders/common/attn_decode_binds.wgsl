// #include attn_decode_binds
// The params and bindings of the decode attention kernels that read the cache as vec4s
// (attn_decode_gqa.wgsl, attn_decode_head.wgsl; ops::attention's DecodeParams and
// DECODE_XQ_BINDINGS mirror them): q (Hq, D) act, the cache (2, Hkv, Tmax, D/4) act4, the f32
// split scratch, out (Hq, D) act, the params, and the int8 x (xq_block.wgsl) with XQ = 1.

struct Params {
    hq: u32,
    hkv: u32,
    len: u32,
    tmax: u32,
    nsplit: u32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> q: array<act>;
@group(0) @binding(1) var<storage, read> cache: array<act4>;
@group(0) @binding(2) var<storage, read_write> part: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<act>;
@group(0) @binding(4) var<uniform> P: Params;
@group(0) @binding(5) var<storage, read_write> xq: array<u32>;
@group(0) @binding(6) var<storage, read_write> xd: array<vec2<f32>>;
