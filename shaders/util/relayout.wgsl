// relayout — a strided gather from a raw weight (f16 pairs or f32, as a checkpoint stores it)
// into the layout a kernel wants (packed f16 pairs or f32). Load-time only: it lets conv
// kernels, the bridge's gated conv and the RVQ codebooks be laid out on the GPU, so their
// weights never sit whole in wasm memory.
//
// The output is a 3-D box (X, Y, Z) placed at dst[dbase + x·dx + y·dy + z]; element (x, y, z)
// comes from src[sbase + x·sx + y·sy + z·sz], or is 0 where z ≥ zvalid (padding). The f16
// output entries write one u32 (two consecutive z) per thread, so Z, dbase, dx and dy are even.
//
// @binding(0) src: raw words (f16 pairs or f32 bits)
// @binding(1) dst: output words (f16 pairs or f32 bits)
// @binding(2) P:   uniform Params

struct Params {
    x: u32, y: u32, z: u32, zvalid: u32,
    sbase: u32, sx: u32, sy: u32, sz: u32,
    dbase: u32, dx: u32, dy: u32, groups_x: u32,
}

@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<uniform> P: Params;

override WG: u32 = 256;

fn src_index(x: u32, y: u32, z: u32) -> u32 {
    return P.sbase + x * P.sx + y * P.sy + z * P.sz;
}

fn read_f16(x: u32, y: u32, z: u32) -> f32 {
    if (z >= P.zvalid) { return 0.0; }
    let i = src_index(x, y, z);
    let pair = unpack2x16float(src[i >> 1u]);
    return select(pair.x, pair.y, (i & 1u) == 1u);
}

fn read_f32(x: u32, y: u32, z: u32) -> f32 {
    if (z >= P.zvalid) { return 0.0; }
    return bitcast<f32>(src[src_index(x, y, z)]);
}

// thread → (x, y, z); `per` elements of z per thread (2 for f16 output, 1 for f32)
fn coords(t: u32, per: u32) -> vec3<u32> {
    let zs = P.z / per;
    return vec3<u32>(t / (P.y * zs), (t / zs) % P.y, (t % zs) * per);
}

fn thread(wid: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * P.groups_x + wid.x) * WG + lid;
}

@compute @workgroup_size(WG)
fn f16_to_f16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = thread(wid, lid);
    if (t >= P.x * P.y * (P.z / 2u)) { return; }
    let c = coords(t, 2u);
    let v = vec2<f32>(read_f16(c.x, c.y, c.z), read_f16(c.x, c.y, c.z + 1u));
    dst[(P.dbase + c.x * P.dx + c.y * P.dy + c.z) >> 1u] = pack2x16float(v);
}

@compute @workgroup_size(WG)
fn f32_to_f16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = thread(wid, lid);
    if (t >= P.x * P.y * (P.z / 2u)) { return; }
    let c = coords(t, 2u);
    let v = vec2<f32>(read_f32(c.x, c.y, c.z), read_f32(c.x, c.y, c.z + 1u));
    dst[(P.dbase + c.x * P.dx + c.y * P.dy + c.z) >> 1u] = pack2x16float(v);
}

@compute @workgroup_size(WG)
fn f16_to_f32(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = thread(wid, lid);
    if (t >= P.x * P.y * P.z) { return; }
    let c = coords(t, 1u);
    dst[P.dbase + c.x * P.dx + c.y * P.dy + c.z] = bitcast<u32>(read_f16(c.x, c.y, c.z));
}

// raw 32-bit words, no float conversion (f32 → f32, quantised weight blocks, f16 pairs)
@compute @workgroup_size(WG)
fn u32_to_u32(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = thread(wid, lid);
    if (t >= P.x * P.y * P.z) { return; }
    let c = coords(t, 1u);
    var v = 0u;
    if (c.z < P.zvalid) { v = src[src_index(c.x, c.y, c.z)]; }
    dst[P.dbase + c.x * P.dx + c.y * P.dy + c.z] = v;
}
