//! The AVX512 kernels: Q8_0 matrix tiles and the activation quantizer that
//! feeds them (see [`crate::packed`]), and the two inner loops of attention.
//!
//! They are written with `std::arch` intrinsics because the compiler's own
//! vectorization of the portable loops stops at 256-bit registers on these
//! CPUs and does not emit `vpdpbusd`. Their bodies are safe Rust (the
//! intrinsics are safe inside `#[target_feature]` functions; loads go
//! through `bytemuck`); entering them is not, since nothing stops a caller
//! on a CPU without the features. Hence [`Avx512`]: a value of it can only
//! be had from [`Avx512::detect`], which asks the CPU, so holding one proves
//! the features are there. Its methods hold the workspace's only `unsafe`
//! blocks (`unsafe_code = "deny"`, allowed in this module alone).

#![allow(unsafe_code)]

use crate::packed::{ActBlock, TILE_ROWS, Tile};

/// Proof that this CPU has AVX512F, AVX512BW and AVX512-VNNI.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Avx512 {
    _checked: (),
}

impl Avx512 {
    /// The token, when the CPU has the features.
    pub(crate) fn detect() -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vnni")
        {
            return Some(Self { _checked: () });
        }
        None
    }

    /// One Q8_0 tile row (the first `blocks` of `tiles`; later tiles are
    /// prefetched) times `M` quantized activation rows.
    pub(crate) fn q8_tile_rows<const M: usize>(
        self,
        tiles: &[Tile],
        blocks: usize,
        acts: &[&[ActBlock]; M],
    ) -> [[f32; TILE_ROWS]; M] {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `self` proves the CPU has the kernel's features.
        unsafe {
            kernels::tile_rows::<M>(tiles, blocks, acts)
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!(
            "no Avx512 token off x86_64: {:?}",
            (tiles.len(), blocks, acts.len())
        )
    }

    /// Quantizes one activation row per 32 values (ggml's q8_0; see
    /// the kernel).
    pub(crate) fn quantize_row(self, x: &[f32]) -> Vec<ActBlock> {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `self` proves the CPU has the kernel's features.
        unsafe {
            kernels::quantize_row(x)
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("no Avx512 token off x86_64: {:?}", x.len())
    }

    /// `G` query heads' (adjacent in `q`, `hd` values each) 16 scores
    /// against a transposed key block.
    pub(crate) fn block_scores<const G: usize>(
        self,
        q: &[f32],
        hd: usize,
        block: &[u16],
        ahead: &[u16],
    ) -> [[f32; 16]; G] {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `self` proves the CPU has the kernel's features.
        unsafe {
            kernels::block_scores::<G>(q, hd, block, ahead)
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!(
            "no Avx512 token off x86_64: {:?}",
            (q.len(), hd, block.len(), ahead.len())
        )
    }

    /// Weighted sums of value rows for `G` heads over dimensions `c .. c +
    /// 16 * V`.
    pub(crate) fn weighted_values<const G: usize, const V: usize>(
        self,
        w: &[&[f32]; G],
        values: &[u16],
        hd: usize,
        c: usize,
    ) -> [[[f32; 16]; V]; G] {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `self` proves the CPU has the kernel's features.
        unsafe {
            kernels::weighted_values::<G, V>(w, values, hd, c)
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!(
            "no Avx512 token off x86_64: {:?}",
            (w.len(), values.len(), hd, c)
        )
    }
}

#[cfg(target_arch = "x86_64")]
mod kernels {
    use crate::packed::{ActBlock, ROUNDING_SHIFT, TILE_ROWS, Tile};

    /// How far ahead weights are prefetched: about 4 KiB.
    const PREFETCH_TILES: usize = 8;
    use std::arch::x86_64::*;

    /// Dot products of 16 weight rows with `M` activation rows over all of
    /// the first `blocks` of `tiles` (one tile row). Fewer than four
    /// activation rows get two accumulators each, to keep `vpdpbusd`'s
    /// latency hidden even for one row. Tiles a few ahead, this row's or the next's, are prefetched: with
    /// eight rows the multiply-adds fill the out-of-order window and the
    /// hardware alone keeps too few weight loads in flight.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) fn tile_rows<const M: usize>(
        tiles: &[Tile],
        blocks: usize,
        acts: &[&[ActBlock]; M],
    ) -> [[f32; TILE_ROWS]; M] {
        let mut acc = [_mm512_setzero_ps(); M];
        for (b, tile) in tiles[..blocks].iter().enumerate() {
            if let Some(ahead) = tiles.get(b + PREFETCH_TILES) {
                for line in bytemuck::bytes_of(ahead).chunks(64) {
                    _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast());
                }
            }
            let blocks: [&ActBlock; M] = std::array::from_fn(|i| &acts[i][b]);
            // The integer sums start at minus the offset the weights' +128
            // adds, rather than subtracting it after.
            let mut dots: [__m512i; M] =
                std::array::from_fn(|i| _mm512_set1_epi32(-blocks[i].offset));
            if M >= 4 {
                // One chain per row: four or more rows' chains already hide
                // `vpdpbusd`'s latency, and port 0, which runs it, is what
                // bounds many rows; a second chain would cost an add per row.
                for (g, w) in tile.quants.iter().enumerate() {
                    let w: __m512i = bytemuck::cast(*w);
                    for i in 0..M {
                        let a = _mm512_set1_epi32(word(&blocks[i].quants, g));
                        dots[i] = _mm512_dpbusd_epi32(dots[i], w, a);
                    }
                }
            } else {
                let mut odd = [_mm512_setzero_si512(); M];
                for g in (0..tile.quants.len()).step_by(2) {
                    let w0: __m512i = bytemuck::cast(tile.quants[g]);
                    let w1: __m512i = bytemuck::cast(tile.quants[g + 1]);
                    for i in 0..M {
                        let a = &blocks[i].quants;
                        let (a0, a1) = (word(a, g), word(a, g + 1));
                        dots[i] = _mm512_dpbusd_epi32(dots[i], w0, _mm512_set1_epi32(a0));
                        odd[i] = _mm512_dpbusd_epi32(odd[i], w1, _mm512_set1_epi32(a1));
                    }
                }
                for (dot, odd) in dots.iter_mut().zip(odd) {
                    *dot = _mm512_add_epi32(*dot, odd);
                }
            }
            let scales = _mm512_cvtph_ps(bytemuck::cast::<[u16; TILE_ROWS], __m256i>(tile.scales));
            for i in 0..M {
                let scale = _mm512_mul_ps(scales, _mm512_set1_ps(blocks[i].scale));
                acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dots[i]), scale, acc[i]);
            }
        }
        acc.map(bytemuck::cast)
    }

    /// Quantized activations `4 g .. 4 g + 4` as one little-endian word.
    #[inline(always)]
    fn word(quants: &[i8; 32], g: usize) -> i32 {
        let bytes: [i8; 4] = quants[4 * g..4 * g + 4].try_into().expect("4 bytes");
        i32::from_le_bytes(bytes.map(|b| b as u8))
    }

    /// Quantized activation blocks of a row, as ggml's `quantize_row_q8_0`:
    /// scale `max |v| / 127` (kept as f16), values `v / scale` rounded to
    /// the nearest integer, ties to even. A block holding a NaN or an
    /// infinity gets a NaN scale, so that it reaches the logits.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) fn quantize_row(x: &[f32]) -> Vec<ActBlock> {
        let mut blocks = Vec::with_capacity(x.len() / 32);
        let shift = _mm512_set1_ps(ROUNDING_SHIFT);
        let shift_bits = _mm512_set1_epi32(ROUNDING_SHIFT.to_bits() as i32);
        for block in x.chunks_exact(32) {
            let lo: __m512 = bytemuck::cast::<[f32; 16], _>(block[..16].try_into().expect("16"));
            let hi: __m512 = bytemuck::cast::<[f32; 16], _>(block[16..].try_into().expect("16"));
            let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(lo), _mm512_abs_ps(hi)));
            // `v * 0` is NaN exactly for NaN and infinite `v`.
            let zero = _mm512_setzero_ps();
            let probe = _mm512_reduce_add_ps(_mm512_add_ps(
                _mm512_mul_ps(lo, zero),
                _mm512_mul_ps(hi, zero),
            ));
            let scale = amax / 127.0;
            let inv = _mm512_set1_ps(if amax > 0.0 { 1.0 / scale } else { 0.0 });
            // |v * inv| <= 127: adding 1.5 * 2^23 leaves the value rounded
            // to an integer in the low mantissa bits. Two roundings (a
            // multiply, then an add), as `(v * inv).round_ties_even()`.
            let round = |v: __m512| {
                let shifted = _mm512_add_ps(_mm512_mul_ps(v, inv), shift);
                _mm512_sub_epi32(_mm512_castps_si512(shifted), shift_bits)
            };
            // Truncated to bytes as `as i8` does (a NaN block's are garbage
            // either way), then widened back for their sum.
            let bytes = [
                _mm512_cvtepi32_epi8(round(lo)),
                _mm512_cvtepi32_epi8(round(hi)),
            ];
            let sum = _mm512_add_epi32(
                _mm512_cvtepi8_epi32(bytes[0]),
                _mm512_cvtepi8_epi32(bytes[1]),
            );
            let quants: [i8; 32] = bytemuck::cast(bytes);
            blocks.push(ActBlock {
                quants,
                scale: match probe.is_nan() {
                    true => f32::NAN,
                    false => half::f16::from_f32(scale).to_f32(),
                },
                offset: 128 * _mm512_reduce_add_epi32(sum),
            });
        }
        blocks
    }

    /// `G` query heads' scores against one transposed key block, each summed
    /// in the order of `llama::block_scores` (the portable version, one head
    /// at a time); the keys are widened once for all the heads.
    #[target_feature(enable = "avx512f")]
    pub(super) fn block_scores<const G: usize>(
        q: &[f32],
        hd: usize,
        block: &[u16],
        ahead: &[u16],
    ) -> [[f32; 16]; G] {
        let mut acc = [[_mm512_setzero_ps(); 4]; G];
        // The block after next: the cache is read once per step, from
        // memory, in runs too short for the hardware prefetcher to ramp up.
        for line in ahead.chunks(32) {
            _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast());
        }
        let quads = hd / 4;
        for (d, keys) in block.chunks_exact(64).take(quads).enumerate() {
            let k: [__m512; 4] = std::array::from_fn(|j| widen(&keys[16 * j..16 * j + 16]));
            for (h, acc) in acc.iter_mut().enumerate() {
                let qd = &q[h * hd + 4 * d..h * hd + 4 * d + 4];
                for (j, acc) in acc.iter_mut().enumerate() {
                    *acc = _mm512_fmadd_ps(_mm512_set1_ps(qd[j]), k[j], *acc);
                }
            }
        }
        let rest = &block[quads * 64..hd * 16];
        for (i, k) in rest.chunks_exact(16).enumerate() {
            let k = widen(k);
            for (h, acc) in acc.iter_mut().enumerate() {
                acc[0] = _mm512_fmadd_ps(_mm512_set1_ps(q[h * hd + quads * 4 + i]), k, acc[0]);
            }
        }
        acc.map(|[a0, a1, a2, a3]| {
            bytemuck::cast(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)))
        })
    }

    /// `sum_j w[r][j] * values[j][c..c + 16 * V]` for `G` heads (see
    /// `llama::weighted_values`, the portable version).
    #[target_feature(enable = "avx512f")]
    pub(super) fn weighted_values<const G: usize, const V: usize>(
        w: &[&[f32]; G],
        values: &[u16],
        hd: usize,
        c: usize,
    ) -> [[[f32; 16]; V]; G] {
        let mut acc = [[_mm512_setzero_ps(); V]; G];
        let rows = w[0].len();
        for (j, row) in values.chunks_exact(hd).take(rows).enumerate() {
            // Sixteen rows ahead (see `block_scores`).
            if let Some(ahead) = values.get((j + 16) * hd + c..(j + 16) * hd + c + 16 * V) {
                for line in ahead.chunks(32) {
                    _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast());
                }
            }
            let v: [__m512; V] = std::array::from_fn(|i| widen(&row[c + 16 * i..c + 16 * i + 16]));
            for (acc, w) in acc.iter_mut().zip(w) {
                let w = _mm512_set1_ps(w[j]);
                for (a, &v) in acc.iter_mut().zip(&v) {
                    *a = _mm512_fmadd_ps(w, v, *a);
                }
            }
        }
        acc.map(|head| head.map(bytemuck::cast))
    }

    /// Sixteen f16 values (bits) as f32.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn widen(bits: &[u16]) -> __m512 {
        let bits: [u16; 16] = bits.try_into().expect("16 values");
        _mm512_cvtph_ps(bytemuck::cast::<[u16; 16], __m256i>(bits))
    }
}
