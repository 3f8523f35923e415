//! Embedding references. An out-of-range id gives a zero row; an out-of-range code adds nothing.

/// `y[t] = table[ids[t]]`, `table` (v, c).
pub fn embedding(table: &[f32], v: usize, c: usize, ids: &[u32]) -> Vec<f32> {
    ids.iter()
        .flat_map(|&id| {
            let id = id as usize;
            if id < v {
                table[id * c..(id + 1) * c].to_vec()
            } else {
                vec![0.0; c]
            }
        })
        .collect()
}

/// `y[t] = Σ_{i=0..7} tables[i][codes[t, i]]` (in f64; the GPU sums in f32, order 0 → 7).
pub fn audio_embed(tables: &[Vec<f32>], c: usize, codes: &[u32]) -> Vec<f32> {
    codes
        .chunks(tables.len())
        .flat_map(|frame| {
            (0..c).map(move |ch| {
                let mut acc = 0.0f64;
                for (i, &code) in frame.iter().enumerate() {
                    let rows = tables[i].len() / c;
                    if (code as usize) < rows {
                        acc += tables[i][code as usize * c + ch] as f64;
                    }
                }
                acc as f32
            })
        })
        .collect()
}
