//! CPU references for the sampling helpers. Order: a beats b when a.value > b.value, or the
//! values are equal and a.index < b.index.

use std::cmp::Ordering;

/// Descending by value, ties by ascending index (the order argmax/topk use).
fn order(a: &(usize, f32), b: &(usize, f32)) -> Ordering {
    b.1.partial_cmp(&a.1)
        .unwrap_or(Ordering::Equal)
        .then(a.0.cmp(&b.0))
}

/// `(index, value)` of the first maximum (torch.argmax on CPU).
pub fn argmax(x: &[f32]) -> (usize, f32) {
    let mut best = (0, x[0]);
    for (i, &v) in x.iter().enumerate().skip(1) {
        if v > best.1 {
            best = (i, v);
        }
    }
    best
}

/// The `k` largest `(index, value)` pairs, descending, ties by lower index.
pub fn topk(x: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut all: Vec<(usize, f32)> = x.iter().copied().enumerate().collect();
    all.sort_by(order);
    all.truncate(k);
    all
}

/// HF `RepetitionPenaltyLogitsProcessor`: gather the scores of `ids`, penalise, scatter
/// (so a duplicate id is penalised once). Ids ≥ len are ignored (as the kernel does).
pub fn repetition_penalty(logits: &[f32], ids: &[u32], penalty: f32) -> Vec<f32> {
    let mut out = logits.to_vec();
    for &id in ids {
        let Some(&s) = logits.get(id as usize) else {
            continue;
        };
        out[id as usize] = if s < 0.0 { s * penalty } else { s / penalty };
    }
    out
}
