// copy — dst = src, one vec4<u32> per thread: the memory-bandwidth reference that every
// benchmark reports against (buffer-to-buffer copies are slower than this on some drivers).
//
// @binding(0) src: (n,) vec4<u32>
// @binding(1) dst: (n,) vec4<u32>
// @binding(2) P:   uniform Params
// `read_sink` (the decode benchmark's stream bound): reads src then src_b, RU vec4<u32> per
// invocation, and writes dst only where their XOR hits a pattern that random data practically
// never does (so the compiler keeps the loads); dst is a sink.
// @binding(3) src_b: (FNB,) vec4<u32>

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

@group(0) @binding(3) var<storage, read> src_b: array<vec4<u32>>;
override FNB: u32 = 0u; // vec4s of src_b read after src's n()
override RU: u32 = 1u;  // vec4s per invocation, loaded together (workgroup w reads RU · WG in a row)

fn read_at(i: u32) -> vec4<u32> {
    if (i < n()) {
        return src[i];
    } else if (i < n() + FNB) {
        return src_b[i - n()];
    }
    return vec4<u32>(0u);
}

@compute @workgroup_size(WG)
fn read_sink(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let base = (wid.y * gx() + wid.x) * WG * RU + lid;
    var v: array<vec4<u32>, 8>;
    for (var k = 0u; k < RU; k++) {
        v[k] = read_at(base + k * WG);
    }
    var h = vec4<u32>(0u);
    for (var k = 0u; k < RU; k++) {
        h ^= v[k];
    }
    if ((h.x ^ h.y ^ h.z ^ h.w) == 0x9e3779b9u && h.x == 0x7f4a7c15u) {
        dst[0] = h;
    }
}
