// copy — dst = src, one vec4<u32> per thread: the memory-bandwidth reference that every
// benchmark reports against (buffer-to-buffer copies are slower than this on some drivers).
//
// @binding(0) src: (n,) vec4<u32>
// @binding(1) dst: (n,) vec4<u32>
// @binding(2) P:   uniform Params

struct Params {
    n: u32,
    groups_x: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<u32>>;
@group(0) @binding(2) var<uniform> P: Params;

override WG: u32 = 256;
// n and groups_x as pipeline constants where nonzero (the dispatch-latency benchmark's second
// chain, which then waits on no params before its load); else the params give them
override FN: u32 = 0u;
override FGX: u32 = 0u;

fn n() -> u32 { if (FN != 0u) { return FN; } return P.n; }
fn gx() -> u32 { if (FGX != 0u) { return FGX; } return P.groups_x; }

@compute @workgroup_size(WG)
fn copy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * gx() + wid.x) * WG + lid;
    if (i < n()) {
        dst[i] = src[i];
    }
}
