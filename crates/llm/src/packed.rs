//! Q8_0 weight matrices repacked for AVX512-VNNI: the matrix multiplies of
//! decoding, written here rather than taken from candle.
//!
//! candle's repacked x86 kernels quantize activations per 256 values, so
//! they need rows that are a multiple of 256 long: SmolLM2's 576-wide
//! matrices had to be zero-padded to 768 (a third more work), and they
//! multiply at most four activation rows per pass over a weight tile. This
//! kernel quantizes activations per 32 values, as the Q8_0 weights are
//! (the arithmetic of ggml's `q8_0 x q8_0` dot product, so no accuracy is
//! traded), takes any row length that is a multiple of 32, and multiplies up
//! to eight activation rows per pass, which is what a batch of eight
//! decoding sequences needs.
//!
//! Layout: the `[n, k]` matrix is cut into tiles of 16 output rows by 32
//! inputs. A tile holds the 16 rows' scales and their quantized weights
//! offset by +128 (`vpdpbusd` multiplies unsigned by signed bytes), stored
//! so that one 64-byte load gives four consecutive inputs of all 16 rows.
//! The offset is taken back out with each activation block's sum. The
//! kernel itself is in [`crate::avx512`].

use bytemuck::{Pod, Zeroable};
use candle_core::quantized::{GgmlDType, QTensor};
use std::sync::Mutex;

use crate::avx512::Avx512;
use crate::error::{Error, Result};

/// Output rows per tile.
pub(crate) const TILE_ROWS: usize = 16;
/// Inputs per block (Q8_0's block).
const BLOCK: usize = 32;
/// Activation rows multiplied per pass over a tile.
const MAX_ROWS: usize = 8;
/// Bytes of one Q8_0 block: an f16 scale and 32 signed bytes.
const Q8_0_BYTES: usize = 2 + BLOCK;

/// 16 rows by 32 inputs of a Q8_0 matrix.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct Tile {
    /// The rows' scales, f16 bits.
    pub(crate) scales: [u16; TILE_ROWS],
    /// `quants[g][4 * r + j]` = weight `(r, 4 * g + j)` + 128.
    pub(crate) quants: [[u8; 4 * TILE_ROWS]; BLOCK / 4],
}

/// One activation row's block of 32, quantized like a Q8_0 block.
#[derive(Clone, Copy, Default)]
pub(crate) struct ActBlock {
    pub(crate) quants: [i8; BLOCK],
    pub(crate) scale: f32,
    /// 128 times the sum of the quantized values: what the weights' +128
    /// offset adds to each dot product.
    pub(crate) offset: i32,
}

/// A `[n, k]` Q8_0 matrix in [`Tile`]s, tile-row major: the `k / 32` tiles
/// of output rows `16 t .. 16 t + 16` are adjacent.
pub(crate) struct PackedQ8 {
    n: usize,
    k: usize,
    tiles: Vec<Tile>,
    simd: Avx512,
}

impl std::fmt::Debug for PackedQ8 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedQ8 [{}, {}]", self.n, self.k)
    }
}

impl PackedQ8 {
    /// Repacks a Q8_0 matrix; `None` where the kernel does not apply (another
    /// CPU, another type, or a shape that does not tile).
    pub(crate) fn new(t: &QTensor) -> Result<Option<Self>> {
        let Ok((n, k)) = t.shape().dims2() else {
            return Ok(None);
        };
        if t.dtype() != GgmlDType::Q8_0 || n % TILE_ROWS != 0 || k % BLOCK != 0 || k == 0 {
            return Ok(None);
        }
        let Some(simd) = Avx512::detect() else {
            return Ok(None);
        };
        let data = t.data()?;
        let blocks = k / BLOCK;
        if data.len() != n * blocks * Q8_0_BYTES {
            return Err(Error::Config(format!(
                "Q8_0 matrix [{n}, {k}] holds {} bytes, expected {}",
                data.len(),
                n * blocks * Q8_0_BYTES
            )));
        }
        let mut tiles = vec![Tile::zeroed(); n / TILE_ROWS * blocks];
        for (t, tiles) in tiles.chunks_exact_mut(blocks).enumerate() {
            for (b, tile) in tiles.iter_mut().enumerate() {
                for r in 0..TILE_ROWS {
                    let at = ((t * TILE_ROWS + r) * blocks + b) * Q8_0_BYTES;
                    let block = &data[at..at + Q8_0_BYTES];
                    tile.scales[r] = u16::from_le_bytes([block[0], block[1]]);
                    for (i, &q) in block[2..].iter().enumerate() {
                        tile.quants[i / 4][4 * r + i % 4] = (q as i8 as i16 + 128) as u8;
                    }
                }
            }
        }
        Ok(Some(Self { n, k, tiles, simd }))
    }

    /// Input size.
    pub(crate) fn cols(&self) -> usize {
        self.k
    }

    /// Output size.
    pub(crate) fn rows(&self) -> usize {
        self.n
    }

    /// Bytes held.
    pub(crate) fn size_in_bytes(&self) -> usize {
        std::mem::size_of_val(self.tiles.as_slice())
    }

    /// Row `r` as floats (an embedding lookup).
    pub(crate) fn row(&self, r: usize, out: &mut [f32]) {
        let blocks = self.k / BLOCK;
        let tiles = &self.tiles[r / TILE_ROWS * blocks..][..blocks];
        let lane = r % TILE_ROWS;
        for (tile, out) in tiles.iter().zip(out.chunks_exact_mut(BLOCK)) {
            let scale = f16_to_f32(tile.scales[lane]);
            for (i, o) in out.iter_mut().enumerate() {
                let q = tile.quants[i / 4][4 * lane + i % 4] as i16 - 128;
                *o = q as f32 * scale;
            }
        }
    }

    /// [`Self::matmul_into`] a new vector.
    #[cfg(test)]
    pub(crate) fn matmul(&self, x: &[f32], m: usize) -> Vec<f32> {
        let mut y = vec![0f32; m * self.n];
        self.matmul_into(x, m, &mut y);
        y
    }

    /// `x [m, k] -> y = x W^T [m, n]`, on candle's thread pool; every value
    /// of `y` is written.
    pub(crate) fn matmul_into(&self, x: &[f32], m: usize, y: &mut [f32]) {
        let (n, k) = (self.n, self.k);
        assert_eq!(x.len(), m * k, "activations for a [{n}, {k}] matrix");
        assert_eq!(y.len(), m * n, "outputs of a [{n}, {k}] matrix");
        if m == 0 || n == 0 {
            return;
        }
        let blocks = k / BLOCK;
        let acts: Vec<Vec<ActBlock>> = x
            .chunks_exact(k)
            .map(|row| self.simd.quantize_row(row))
            .collect();
        let tile_rows = n / TILE_ROWS;
        // Parts of tile rows, handed to the pool's threads whole; each part
        // writes its columns of every output row in place. As many parts as
        // the pool hands out at a time (eight per thread), so that one grab
        // takes one lock: a lock is a fence, which waits for the part's
        // output stores to drain.
        let threads = candle_core::utils::barrier_pool().n_workers() + 1;
        let per_part = tile_rows.div_ceil(8 * threads).max(1);
        let parts_count = tile_rows.div_ceil(per_part);
        let mut columns: Vec<Vec<&mut [f32]>> =
            (0..parts_count).map(|_| Vec::with_capacity(m)).collect();
        for row in y.chunks_exact_mut(n) {
            for (part, cols) in columns.iter_mut().zip(row.chunks_mut(per_part * TILE_ROWS)) {
                part.push(cols);
            }
        }
        let parts: Vec<Mutex<Part<'_>>> = columns
            .into_iter()
            .enumerate()
            .map(|(i, cols)| Mutex::new((i * per_part, cols)))
            .collect();
        let run = |part: &Mutex<Part<'_>>| {
            let mut guard = part.lock().unwrap_or_else(|e| e.into_inner());
            let (first, rows) = &mut *guard;
            let count = rows[0].len() / TILE_ROWS;
            for i in 0..count {
                // This tile row and, for prefetching, the ones after it.
                let tiles = &self.tiles[(*first + i) * blocks..];
                for (acts, rows) in acts.chunks(MAX_ROWS).zip(rows.chunks_mut(MAX_ROWS)) {
                    tile_times_rows(self.simd, tiles, blocks, acts, i, rows);
                }
            }
        };
        if parts.len() == 1 {
            run(&parts[0]);
        } else {
            candle_core::utils::barrier_pool()
                .execute_chunked(parts.len(), |range| parts[range].iter().for_each(run));
        }
    }
}

/// A run of tile rows: the first one's index, then per activation row the
/// run's slice of that row's outputs.
type Part<'a> = (usize, Vec<&'a mut [f32]>);

/// 1.5 * 2^23: floats from 2^23 to 2^24 are spaced exactly 1 apart, so
/// adding it rounds a small float to an integer held in the low mantissa
/// bits (how the activation quantizer rounds without a float-to-int cast).
pub(crate) const ROUNDING_SHIFT: f32 = 12_582_912.0;

/// One tile row's outputs (the first `blocks` of `tiles`) for up to
/// [`MAX_ROWS`] activation rows, written to columns `16 i .. 16 i + 16` of
/// each row's `out`.
fn tile_times_rows(
    simd: Avx512,
    tiles: &[Tile],
    blocks: usize,
    acts: &[Vec<ActBlock>],
    i: usize,
    out: &mut [&mut [f32]],
) {
    macro_rules! rows {
        ($($m:literal)*) => {
            match acts.len() {
                $($m => {
                    let acts: [&[ActBlock]; $m] = std::array::from_fn(|i| acts[i].as_slice());
                    let results = simd.q8_tile_rows::<$m>(tiles, blocks, &acts);
                    for (out, result) in out.iter_mut().zip(&results) {
                        out[i * TILE_ROWS..(i + 1) * TILE_ROWS].copy_from_slice(result);
                    }
                })*
                _ => unreachable!("at most {MAX_ROWS} rows per pass"),
            }
        };
    }
    rows!(1 2 3 4 5 6 7 8);
}

/// IEEE half to single precision (scales only: normal, subnormal, zero).
fn f16_to_f32(bits: u16) -> f32 {
    let sign = ((bits >> 15) as u32) << 31;
    let exp = (bits >> 10) & 0x1f;
    let frac = (bits & 0x3ff) as u32;
    let magnitude = match exp {
        0 => frac as f32 * (1.0 / (1u32 << 24) as f32),
        0x1f => f32::from_bits(0x7f80_0000 | (frac << 13)),
        _ => f32::from_bits(((exp as u32 + 112) << 23) | (frac << 13)),
    };
    f32::from_bits(magnitude.to_bits() | sign)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    /// One activation block quantized as ggml's `quantize_row_q8_0` does
    /// (ties to even, as its SIMD versions round; the scale kept as f16),
    /// written plainly.
    fn quantize_plainly(x: &[f32]) -> (Vec<i8>, f32) {
        let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d > 0.0 { 1.0 / d } else { 0.0 };
        (
            x.iter().map(|v| (v * id).round_ties_even() as i8).collect(),
            half::f16::from_f32(d).to_f32(),
        )
    }

    /// ggml's Q8_0 x Q8_0 arithmetic, one dot product at a time.
    fn reference(w: &QTensor, x: &[f32], m: usize) -> Vec<f32> {
        let (n, k) = w.shape().dims2().unwrap();
        let data = w.data().unwrap();
        let blocks = k / BLOCK;
        let mut y = vec![0f32; m * n];
        for (row, x) in x.chunks_exact(k).enumerate() {
            let acts: Vec<(Vec<i8>, f32)> = x.chunks(BLOCK).map(quantize_plainly).collect();
            for col in 0..n {
                let mut sum = 0f32;
                for (b, (quants, scale)) in acts.iter().enumerate() {
                    let at = (col * blocks + b) * Q8_0_BYTES;
                    let block = &data[at..at + Q8_0_BYTES];
                    let d = f16_to_f32(u16::from_le_bytes([block[0], block[1]]));
                    let dot: i32 = block[2..]
                        .iter()
                        .zip(quants)
                        .map(|(&w, &a)| w as i8 as i32 * a as i32)
                        .sum();
                    sum += dot as f32 * d * scale;
                }
                y[row * n + col] = sum;
            }
        }
        y
    }

    /// `w` packed, or `None` once it is checked that this CPU lacks the
    /// kernel (every test matrix here tiles).
    fn packed_or_unavailable(w: &QTensor) -> Option<PackedQ8> {
        let packed = PackedQ8::new(w).unwrap();
        if packed.is_none() {
            assert!(Avx512::detect().is_none(), "the kernel applies to {w:?}");
        }
        packed
    }

    fn matrix(n: usize, k: usize, seed: u32) -> QTensor {
        let mut state = seed;
        let values: Vec<f32> = (0..n * k)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect();
        let t = Tensor::from_vec(values, (n, k), &Device::Cpu).unwrap();
        QTensor::quantize(&t, GgmlDType::Q8_0).unwrap()
    }

    fn activations(m: usize, k: usize) -> Vec<f32> {
        (0..m * k)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0)
            .collect()
    }

    #[test]
    fn packed_products_equal_ggml_arithmetic_for_every_row_count() {
        let w = matrix(48, 96, 7);
        let Some(packed) = packed_or_unavailable(&w) else {
            return;
        };
        for m in [1, 2, 3, 7, 8, 9, 17] {
            let x = activations(m, 96);
            let got = packed.matmul(&x, m);
            let want = reference(&w, &x, m);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-4 * w.abs().max(1.0),
                    "m={m} [{i}]: {g} vs {w}"
                );
            }
        }
    }

    #[test]
    fn a_nan_activation_reaches_the_output() {
        let w = matrix(16, 64, 5);
        let Some(packed) = packed_or_unavailable(&w) else {
            return;
        };
        // An infinity would quantize its block to nonsense: it too must
        // reach the outputs as NaN.
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut x = activations(2, 64);
            x[70] = bad;
            let y = packed.matmul(&x, 2);
            assert!(y[..16].iter().all(|v| v.is_finite()), "row 0 is clean");
            assert!(
                y[16..].iter().all(|v| v.is_nan()),
                "row 1 has {bad}: {:?}",
                &y[16..]
            );
        }
        assert!(packed.matmul(&[], 0).is_empty());
    }

    #[test]
    fn a_packed_row_dequantizes_as_candle_does() {
        let w = matrix(32, 64, 3);
        let Some(packed) = packed_or_unavailable(&w) else {
            return;
        };
        let dense = w
            .dequantize(&Device::Cpu)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let mut row = vec![0f32; 64];
        for r in [0, 15, 16, 31] {
            packed.row(r, &mut row);
            assert_eq!(row, dense[r]);
        }
    }

    #[test]
    fn shapes_that_do_not_tile_stay_with_candle() {
        assert!(PackedQ8::new(&matrix(40, 64, 1)).unwrap().is_none());
        let f32_matrix = QTensor::quantize(
            &Tensor::zeros((16, 32), candle_core::DType::F32, &Device::Cpu).unwrap(),
            GgmlDType::F32,
        )
        .unwrap();
        assert!(PackedQ8::new(&f32_matrix).unwrap().is_none());
    }

    #[test]
    fn half_floats_convert_exactly() {
        for (bits, want) in [
            (0x3c00u16, 1.0f32),
            (0xc000, -2.0),
            (0x0001, 5.960_464_5e-8),
            (0x0000, 0.0),
            (0x7bff, 65504.0),
        ] {
            assert_eq!(f16_to_f32(bits), want);
        }
    }
}
