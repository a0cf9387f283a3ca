//! AVX-512F: 8 x 32 register tiles (16 zmm accumulators), one `vfmadd` per element per
//! step of the inner dimension.

use std::arch::x86_64::*;

use super::{tile_of_rows, Level, Operand};

pub(super) struct Avx512;

impl Level for Avx512 {
    const MR: usize = 8;
    const NR: usize = 32;

    unsafe fn tile(
        rows: usize,
        k: usize,
        a: Operand,
        b: *const f32,
        c: *mut f32,
        rs_c: usize,
        load: bool,
    ) {
        tile_of_rows!(rows, tile(k, a, b, c, rs_c, load); 1 2 3 4 5 6 7 8)
    }
}

/// # Safety
/// As [`Level::tile`], with `rows == R`.
#[target_feature(enable = "avx512f")]
unsafe fn tile<const R: usize>(
    k: usize,
    a: Operand,
    b: *const f32,
    c: *mut f32,
    rs_c: usize,
    load: bool,
) {
    let mut lo = [_mm512_setzero_ps(); R];
    let mut hi = [_mm512_setzero_ps(); R];
    if load {
        for r in 0..R {
            let row = c.add(r * rs_c);
            lo[r] = _mm512_loadu_ps(row);
            hi[r] = _mm512_loadu_ps(row.add(16));
        }
    }
    let mut rows = [a.ptr; R];
    for (r, row) in rows.iter_mut().enumerate() {
        *row = a.ptr.offset(r as isize * a.rs);
    }
    let mut panel = b;
    let mut offset = 0isize;
    for _ in 0..k {
        let b0 = _mm512_loadu_ps(panel);
        let b1 = _mm512_loadu_ps(panel.add(16));
        for r in 0..R {
            let x = _mm512_set1_ps(*rows[r].offset(offset));
            lo[r] = _mm512_fmadd_ps(x, b0, lo[r]);
            hi[r] = _mm512_fmadd_ps(x, b1, hi[r]);
        }
        panel = panel.add(32);
        offset += a.cs;
    }
    for r in 0..R {
        let row = c.add(r * rs_c);
        _mm512_storeu_ps(row, lo[r]);
        _mm512_storeu_ps(row.add(16), hi[r]);
    }
}

/// AVX-512F for products at most 16 columns wide (a CNN's first convolution has 16 output
/// channels): 16 x 16 register tiles, one zmm per row, so no half-empty 32-wide panel is
/// multiplied and every tile is stored in place. The same FMA chain per element as
/// [`Avx512`], so the same bits.
pub(super) struct Avx512Narrow;

impl Level for Avx512Narrow {
    const MR: usize = 16;
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
        tile_of_rows!(rows, narrow(k, a, b, c, rs_c, load); 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16)
    }
}

/// # Safety
/// As [`Level::tile`] with `NR = 16`, and `rows == R`.
#[target_feature(enable = "avx512f")]
unsafe fn narrow<const R: usize>(
    k: usize,
    a: Operand,
    b: *const f32,
    c: *mut f32,
    rs_c: usize,
    load: bool,
) {
    let mut acc = [_mm512_setzero_ps(); R];
    if load {
        for (r, value) in acc.iter_mut().enumerate() {
            *value = _mm512_loadu_ps(c.add(r * rs_c));
        }
    }
    let mut rows = [a.ptr; R];
    for (r, row) in rows.iter_mut().enumerate() {
        *row = a.ptr.offset(r as isize * a.rs);
    }
    let mut panel = b;
    let mut offset = 0isize;
    for _ in 0..k {
        let b0 = _mm512_loadu_ps(panel);
        for r in 0..R {
            let x = _mm512_set1_ps(*rows[r].offset(offset));
            acc[r] = _mm512_fmadd_ps(x, b0, acc[r]);
        }
        panel = panel.add(16);
        offset += a.cs;
    }
    for (r, value) in acc.iter().enumerate() {
        _mm512_storeu_ps(c.add(r * rs_c), *value);
    }
}
