//! Portable Rust: 4 x 8 tiles of `f32::mul_add`, fused on every target (a hardware FMA
//! where the target has one, otherwise libm's correctly rounded `fmaf`, which is slow:
//! a fallback, not a fast path).

use super::{Level, Operand};

pub(super) struct Scalar;

const MR: usize = 4;
const NR: usize = 8;

impl Level for Scalar {
    const MR: usize = MR;
    const NR: usize = NR;

    unsafe fn tile(
        rows: usize,
        k: usize,
        a: Operand,
        b: *const f32,
        c: *mut f32,
        rs_c: usize,
        load: bool,
    ) {
        let mut acc = [[0f32; NR]; MR];
        if load {
            for (r, row) in acc.iter_mut().enumerate().take(rows) {
                row.copy_from_slice(std::slice::from_raw_parts(c.add(r * rs_c), NR));
            }
        }
        let panel = std::slice::from_raw_parts(b, k * NR);
        for (p, values) in panel.chunks_exact(NR).enumerate() {
            let offset = p as isize * a.cs;
            for (r, row) in acc.iter_mut().enumerate().take(rows) {
                let x = *a.ptr.offset(r as isize * a.rs + offset);
                for (sum, &y) in row.iter_mut().zip(values) {
                    *sum = x.mul_add(y, *sum);
                }
            }
        }
        for (r, row) in acc.iter().enumerate().take(rows) {
            std::slice::from_raw_parts_mut(c.add(r * rs_c), NR).copy_from_slice(row);
        }
    }
}
