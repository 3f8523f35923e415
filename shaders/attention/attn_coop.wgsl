// attn_coop — attn_tiled.wgsl's attention (same masks and params: attn_common; same bindings,
// read as vec4s) for head dim 64 on cooperative matrices (tensor cores, 16×16×16 f16 → f32).
// Native only, the f16 path with 32-wide subgroups (Caps::coop). Every offset and stride of
// q, k, v is a multiple of 4 (D = 64; the host checks the fused and cache layouts too).
//
// A workgroup of NSG subgroups (1, 2 or 4; 32·NSG invocations) takes 16·NSG query rows of
// one head; subgroup g owns rows 16g .. 16g+15. Its four Q fragments (16 rows × 64 dims) stay
// in registers. Per tile of 32 keys the workgroup stages K and V (f16, `[key][d]`; the next
// tile's loads are already in flight in registers while this one is worked on), then each
// subgroup
//   1. scores its rows against the tile: S (16 × 32) = Q·Kᵀ, two f32 fragments → `ss`;
//   2. updates the online softmax: lane l of the subgroup takes row l / 2, keys 16·(l % 2) ..
//      +15 (masked keys get no weight), shares max and sum with its partner lane by a subgroup
//      shuffle, writes P = exp(s − max) (f16) to `ps`, and rescales its half of the row's
//      output accumulator in `os` (f32) by exp(old max − new max) when that is not 1;
//   3. adds P·V (16 × 32 by 32 × 64) to its four accumulator fragments, loaded from and stored
//      back to `os`.
// At the end each lane writes its half row: os / sum. Scores and sums stay f32; P is f16, so
// an output is off by up to about 2⁻¹¹·max|v| (tests state that tolerance).
// Workgroup arrays are vec4s; cooperative loads and stores count their strides in vec4s.

enable wgpu_cooperative_matrix;

// #include attn_common

@group(0) @binding(0) var<storage, read> q: array<vec4<act>>;
@group(0) @binding(1) var<storage, read> k: array<vec4<act>>;
@group(0) @binding(2) var<storage, read> v: array<vec4<act>>;
@group(0) @binding(3) var<storage, read> cu: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<vec4<act>>;
@group(0) @binding(5) var<uniform> P: Params;

override NSG: u32 = 4u; // subgroups per workgroup
override WGS: u32 = 32u * NSG;
override BQ: u32 = 16u * NSG; // query rows per workgroup
override NL: u32 = 16u / NSG; // K (and V) vec4s each invocation loads per tile
override PF: u32 = 1u; // 1: the next tile's loads in flight during this one (0: not; a knob)
const BK: u32 = 32u; // keys per tile
const KS4: u32 = 18u; // vec4<f16> row stride of the K / V tiles (72 halves)
const SS4: u32 = 9u;  // vec4<f32> row stride of the scores (36 floats)
const PS4: u32 = 10u; // vec4<f16> row stride of P and of the Q staging (40 halves)
const OS4: u32 = 17u; // vec4<f32> row stride of the output accumulators (68 floats)

var<workgroup> kt: array<vec4<f16>, 576>; // BK × KS4
var<workgroup> vt: array<vec4<f16>, 576>;
var<workgroup> ss: array<vec4<f32>, 576>; // up to 64 rows × SS4
var<workgroup> ps: array<vec4<f16>, 640>; // up to 64 rows × PS4
var<workgroup> os: array<vec4<f32>, 1088>; // up to 64 rows × OS4

// Q rows [q0, q0+BQ) × dims [d0, d0+32) of head h into ps (zeros from row qend on).
fn stage_q(t: u32, q0: u32, qend: u32, h: u32, d0: u32) {
    for (var i = t; i < BQ * 8u; i += WGS) {
        let r = i / 8u;
        let d4 = i % 8u;
        var x = vec4<f16>(0.0);
        if (q0 + r < qend) {
            x = vec4<f16>(q[((q0 + r) * P.q_st + h * D + d0) / 4u + d4]);
        }
        ps[r * PS4 + d4] = x;
    }
}

// Key j's vec4 d4 of K or V (zeros from khi on).
fn key_k(j: u32, d4: u32, kvh: u32, khi: u32) -> vec4<f16> {
    if (j >= khi) {
        return vec4<f16>(0.0);
    }
    return vec4<f16>(k[(P.k_off + j * P.k_st + kvh * P.k_sh) / 4u + d4]);
}

fn key_v(j: u32, d4: u32, kvh: u32, khi: u32) -> vec4<f16> {
    if (j >= khi) {
        return vec4<f16>(0.0);
    }
    return vec4<f16>(v[(P.v_off + j * P.v_st + kvh * P.v_sh) / 4u + d4]);
}

@compute @workgroup_size(WGS)
fn attn_coop(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let h = wid.y;
    let kvh = h / P.group;
    // the block's rows [q0, qend): under the chunk-causal mask each sequence (P.seq rows) has
    // blocks of its own, so no block spans two sequences' key ranges
    var q0 = wid.x * BQ;
    var qend = P.tq;
    if (MODE == 2u) {
        let bps = (P.seq + BQ - 1u) / BQ;
        let sq = wid.x / bps;
        q0 = sq * P.seq + (wid.x % bps) * BQ;
        qend = min((sq + 1u) * P.seq, P.tq);
    }
    let g = t / 32u;
    let lane = t % 32u;
    let rs = g * 16u;           // the subgroup's first row in the block
    let r = rs + lane / 2u;     // this lane's row in the block
    let half = lane % 2u;       // its half of the keys (softmax) and of the dims (output)
    let row = q0 + r;
    let live = row < qend;
    var rg = vec2<u32>(0u, 0u);
    if (live) {
        rg = key_range(row);
    }

    // Q fragments, staged 32 dims at a time through ps
    stage_q(t, q0, qend, h, 0u);
    workgroupBarrier();
    let qa0 = coopLoadT<coop_mat16x16<f16, A>>(&ps[rs * PS4], PS4);
    let qa1 = coopLoadT<coop_mat16x16<f16, A>>(&ps[rs * PS4 + 4u], PS4);
    workgroupBarrier();
    stage_q(t, q0, qend, h, 32u);
    workgroupBarrier();
    let qa2 = coopLoadT<coop_mat16x16<f16, A>>(&ps[rs * PS4], PS4);
    let qa3 = coopLoadT<coop_mat16x16<f16, A>>(&ps[rs * PS4 + 4u], PS4);
    for (var i = t; i < BQ * OS4; i += WGS) {
        os[i] = vec4<f32>(0.0);
    }

    // union of the block's key ranges (ranges never move backwards under the masks)
    let last = min(q0 + BQ, qend) - 1u;
    let klo = key_range(q0).x;
    let khi = key_range(last).y;

    var zc: coop_mat16x16<f32, C>; // zero, never written
    var m = LOWEST;
    var l = 0.0;
    // this invocation's share of a tile: vec4 i = t + j·WGS is key i / 16, dims 4·(i % 16)..
    var kr: array<vec4<f16>, 16>;
    var vr: array<vec4<f16>, 16>;
    for (var j = 0u; j < NL * PF; j++) {
        let i = t + j * WGS;
        kr[j] = key_k(klo + i / 16u, i % 16u, kvh, khi);
        vr[j] = key_v(klo + i / 16u, i % 16u, kvh, khi);
    }
    for (var k0 = klo; k0 < khi; k0 += BK) {
        workgroupBarrier(); // the previous tile's readers are done (and Q's staging)
        // without prefetch (PF 0), this tile's loads now
        for (var j = 0u; j < NL * (1u - PF); j++) {
            let i = t + j * WGS;
            kr[j] = key_k(k0 + i / 16u, i % 16u, kvh, khi);
            vr[j] = key_v(k0 + i / 16u, i % 16u, kvh, khi);
        }
        for (var j = 0u; j < NL; j++) {
            let i = t + j * WGS;
            kt[(i / 16u) * KS4 + i % 16u] = kr[j];
            vt[(i / 16u) * KS4 + i % 16u] = vr[j];
        }
        workgroupBarrier();
        if (PF == 1u && k0 + BK < khi) {
            for (var j = 0u; j < NL; j++) {
                let i = t + j * WGS;
                kr[j] = key_k(k0 + BK + i / 16u, i % 16u, kvh, khi);
                vr[j] = key_v(k0 + BK + i / 16u, i % 16u, kvh, khi);
            }
        }

        // 1. S = Q·Kᵀ: B (d × key) is K's tile read column-major
        var s0 = coopMultiplyAdd(qa0, coopLoad<coop_mat16x16<f16, B>>(&kt[0u], KS4), zc);
        s0 = coopMultiplyAdd(qa1, coopLoad<coop_mat16x16<f16, B>>(&kt[4u], KS4), s0);
        s0 = coopMultiplyAdd(qa2, coopLoad<coop_mat16x16<f16, B>>(&kt[8u], KS4), s0);
        s0 = coopMultiplyAdd(qa3, coopLoad<coop_mat16x16<f16, B>>(&kt[12u], KS4), s0);
        var s1 = coopMultiplyAdd(qa0, coopLoad<coop_mat16x16<f16, B>>(&kt[16u * KS4], KS4), zc);
        s1 = coopMultiplyAdd(qa1, coopLoad<coop_mat16x16<f16, B>>(&kt[16u * KS4 + 4u], KS4), s1);
        s1 = coopMultiplyAdd(qa2, coopLoad<coop_mat16x16<f16, B>>(&kt[16u * KS4 + 8u], KS4), s1);
        s1 = coopMultiplyAdd(qa3, coopLoad<coop_mat16x16<f16, B>>(&kt[16u * KS4 + 12u], KS4), s1);
        coopStoreT(s0, &ss[rs * SS4], SS4);
        coopStoreT(s1, &ss[rs * SS4 + 4u], SS4);
        workgroupBarrier();

        // 2. online softmax over this lane's 16 keys, combined with its partner's
        let kb = k0 + 16u * half;
        var sv: array<vec4<f32>, 4>;
        var tm = LOWEST;
        for (var c = 0u; c < 4u; c++) {
            let j = vec4<u32>(kb + 4u * c) + vec4<u32>(0u, 1u, 2u, 3u);
            let vis = j >= vec4<u32>(rg.x) & j < vec4<u32>(rg.y);
            sv[c] = select(vec4<f32>(LOWEST), ss[r * SS4 + 4u * half + c] * P.scale, vis);
            tm = max(tm, max(max(sv[c].x, sv[c].y), max(sv[c].z, sv[c].w)));
        }
        tm = max(tm, subgroupShuffleXor(tm, 1u));
        let mn = max(m, tm);
        var sum = 0.0;
        for (var c = 0u; c < 4u; c++) {
            // masked keys are LOWEST: exp underflows to exactly 0 unless no key is visible yet
            // (mn = LOWEST), which the select keeps at 0 too
            let p = select(exp(sv[c] - mn), vec4<f32>(0.0), sv[c] == vec4<f32>(LOWEST));
            sum += p.x + p.y + p.z + p.w;
            ps[r * PS4 + 4u * half + c] = vec4<f16>(p);
        }
        sum += subgroupShuffleXor(sum, 1u);
        let corr = exp(m - mn); // 1 while no key was visible (m = mn = LOWEST)
        l = l * corr + sum;
        m = mn;
        if (corr != 1.0) {
            for (var d4 = 0u; d4 < 8u; d4++) {
                os[r * OS4 + 8u * half + d4] *= corr;
            }
        }
        workgroupBarrier();

        // 3. O += P·V: V's tile is B (key × d) row-major
        let pa0 = coopLoadT<coop_mat16x16<f16, A>>(&ps[rs * PS4], PS4);
        let pa1 = coopLoadT<coop_mat16x16<f16, A>>(&ps[rs * PS4 + 4u], PS4);
        for (var db = 0u; db < 4u; db++) {
            var o = coopLoadT<coop_mat16x16<f32, C>>(&os[rs * OS4 + 4u * db], OS4);
            o = coopMultiplyAdd(pa0, coopLoadT<coop_mat16x16<f16, B>>(&vt[4u * db], KS4), o);
            o = coopMultiplyAdd(pa1, coopLoadT<coop_mat16x16<f16, B>>(&vt[16u * KS4 + 4u * db], KS4), o);
            coopStoreT(o, &os[rs * OS4 + 4u * db], OS4);
        }
    }
    workgroupBarrier();
    if (live) {
        var inv = 0.0;
        if (l > 0.0) {
            inv = 1.0 / l;
        }
        for (var d4 = 0u; d4 < 8u; d4++) {
            out[(row * P.hq + h) * 16u + 8u * half + d4] = vec4<act>(os[r * OS4 + 8u * half + d4] * inv);
        }
    }
}
