// kv_append — copies k, v of T new tokens into a layer's KV cache at positions p0 .. p0+T−1.
//
// @binding(0) k:     (T, H, D) act            new keys, time-major
// @binding(1) v:     (T, H, D) act            new values, time-major
// @binding(2) cache: (2, H, Tmax, D) act      [0] keys, [1] values; head-major so that a decode
//                                             step reads each head's keys as one contiguous run
// @binding(3) P:     uniform Params
//
// One invocation per element of k and v (2·T·H·D); the grid is 2-D when it exceeds 65535
// workgroups. The op has checked p0 + T ≤ Tmax.

struct Params {
    t: u32,        // new tokens
    h: u32,        // kv heads
    d: u32,        // head dim
    tmax: u32,     // cache capacity (positions)
    p0: u32,       // position of the first new token
    groups_x: u32, // workgroups along x
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> k: array<act>;
@group(0) @binding(1) var<storage, read> v: array<act>;
@group(0) @binding(2) var<storage, read_write> cache: array<act>;
@group(0) @binding(3) var<uniform> P: Params;

override WG: u32 = 256;

@compute @workgroup_size(WG)
fn kv_append(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * P.groups_x + wid.x) * WG + lid;
    let n = P.t * P.h * P.d;
    if (i >= 2u * n) {
        return;
    }
    let which = i / n; // 0: key, 1: value
    let r = i % n;     // index into (T, H, D)
    let dd = r % P.d;
    let th = r / P.d;
    let h = th % P.h;
    let t = th / P.h;
    let dst = ((which * P.h + h) * P.tmax + P.p0 + t) * P.d + dd;
    if (which == 0u) {
        cache[dst] = k[r];
    } else {
        cache[dst] = v[r];
    }
}
