//! AVX2 with FMA: 6 x 16 register tiles (12 ymm accumulators), one `vfmadd` per element per
//! step of the inner dimension.

use std::arch::x86_64::*;

use super::{tile_of_rows, Level, Operand};

pub(super) struct Avx2;

impl Level for Avx2 {
    const MR: usize = 6;
    const NR: usize = 16;

    unsafe fn tile(
        rows: usize,
        k: usize,
        a: Operand,
        b: *const f32,
        c: *mut f32,
        rs_c: usize,
        load: bool,
    ) {
        tile_of_rows!(rows, tile(k, a, b, c, rs_c, load); 1 2 3 4 5 6)
    }
}

/// # Safety
/// As [`Level::tile`], with `rows == R`.
#[target_feature(enable = "avx2,fma")]
unsafe fn tile<const R: usize>(
    k: usize,
    a: Operand,
    b: *const f32,
    c: *mut f32,
    rs_c: usize,
    load: bool,
) {
    let mut lo = [_mm256_setzero_ps(); R];
    let mut hi = [_mm256_setzero_ps(); R];
    if load {
        for r in 0..R {
            let row = c.add(r * rs_c);
            lo[r] = _mm256_loadu_ps(row);
            hi[r] = _mm256_loadu_ps(row.add(8));
        }
    }
    let mut rows = [a.ptr; R];
    for (r, row) in rows.iter_mut().enumerate() {
        *row = a.ptr.offset(r as isize * a.rs);
    }
    let mut panel = b;
    let mut offset = 0isize;
    for _ in 0..k {
        let b0 = _mm256_loadu_ps(panel);
        let b1 = _mm256_loadu_ps(panel.add(8));
        for r in 0..R {
            let x = _mm256_set1_ps(*rows[r].offset(offset));
            lo[r] = _mm256_fmadd_ps(x, b0, lo[r]);
            hi[r] = _mm256_fmadd_ps(x, b1, hi[r]);
        }
        panel = panel.add(16);
        offset += a.cs;
    }
    for r in 0..R {
        let row = c.add(r * rs_c);
        _mm256_storeu_ps(row, lo[r]);
        _mm256_storeu_ps(row.add(8), hi[r]);
    }
}
