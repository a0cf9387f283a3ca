//! The matrix product every MLP step and MLP evaluation runs on, with a result that is
//! defined element by element, independently of the CPU it runs on.
//!
//! # The order guarantee
//!
//! For `C = A·B` (or `C += A·B`) with `A` `m x k` and `B` `k x n`, every output element is
//! **one f32 accumulator** that starts at `+0.0` (or at the old `C[i][j]` when adding)
//! and is updated with a fused multiply-add, `acc = fma(A[i][p], B[p][j], acc)`, for
//! `p = 0, 1, …, k-1` in ascending order, then stored. An FMA rounds once, the same on
//! every level (`vfmadd` on AVX-512F and AVX2+FMA, [`f32::mul_add`] on the portable path),
//! so the bits of `C[i][j]` depend only on row `i` of `A` and column `j` of `B`:
//!
//! - **SIMD level** ([`SimdLevel`]): vector lanes and register tiles only decide *which*
//!   elements are computed side by side, never the order within one element;
//! - **threads**: work is split over output tiles ([`rayon`], the caller's pool); one
//!   element is always computed by one task from start to end;
//! - **caches**: nothing is sized from the detected caches. A product with a long inner
//!   dimension is cut into blocks of [`K_BLOCK`] (a constant); the partial sums are carried
//!   through `C` (stored and reloaded, which is exact), not added up block by block.
//!
//! Packing a panel of `B` (or of `Aᵀ`, when the kernel computes `Cᵀ = Bᵀ·Aᵀ` because that
//! packs less) copies values and never changes them, so which operand is packed is free
//! to depend on the shapes.
//!
//! # Levels
//!
//! [`Simd`] is a level this CPU has been checked to offer: the only way to run a kernel,
//! so forcing a level the CPU lacks is an error ([`SimdError::Unavailable`]), never an
//! illegal instruction. [`Simd::from_env`] reads [`SIMD_ENV`] once per process.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod scalar;

use std::cell::RefCell;
use std::str::FromStr;
use std::sync::OnceLock;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Environment variable that pins the SIMD level of the whole process:
/// `scalar`, `avx2`, `avx512` or `auto` (the default: the best level this CPU offers).
pub const SIMD_ENV: &str = "TRAINCHAIN_SIMD";

/// Longest inner dimension one pass of the kernel runs over; longer products run in
/// passes of this many, each adding onto `C` (exact, so the result is the same as one
/// pass). A packed `B` panel of `K_BLOCK x 32` values is 256 KiB, within a core's L2 on
/// current x86 CPUs. A constant, not cache-detected: it must not vary between machines
/// (although, the carry being exact, a different value would give the same bits).
pub const K_BLOCK: usize = 2048;

/// An instruction-set level of the matrix kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimdLevel {
    /// Portable Rust, `f32::mul_add` (fused everywhere; a libm call, and slow, on a CPU
    /// without hardware FMA).
    Scalar,
    /// x86-64 AVX2 with FMA (256-bit vectors, 6 x 16 register tiles).
    Avx2,
    /// x86-64 AVX-512F (512-bit vectors, 8 x 32 register tiles; 16 x 16 for products at
    /// most 16 columns wide).
    Avx512,
}

impl SimdLevel {
    /// Every level, slowest first.
    pub const ALL: [SimdLevel; 3] = [SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512];

    /// The name [`SIMD_ENV`] takes.
    pub fn name(self) -> &'static str {
        match self {
            Self::Scalar => "scalar",
            Self::Avx2 => "avx2",
            Self::Avx512 => "avx512",
        }
    }

    /// The CPU features the level needs.
    pub fn features(self) -> &'static str {
        match self {
            Self::Scalar => "none",
            Self::Avx2 => "avx2 and fma",
            Self::Avx512 => "avx512f",
        }
    }

    /// Whether this CPU offers the level.
    pub fn is_available(self) -> bool {
        match self {
            Self::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            Self::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            Self::Avx2 | Self::Avx512 => false,
        }
    }
}

impl std::fmt::Display for SimdLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SimdLevel {
    type Err = SimdError;

    fn from_str(s: &str) -> Result<Self, SimdError> {
        Self::ALL
            .into_iter()
            .find(|level| level.name() == s)
            .ok_or_else(|| SimdError::Unknown(s.to_owned()))
    }
}

/// Why a SIMD level cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimdError {
    /// A name that is no level.
    #[error("unknown SIMD level {0:?}: expected `scalar`, `avx2`, `avx512` or `auto`")]
    Unknown(String),
    /// A level forced on a CPU that does not offer it.
    #[error("SIMD level {level} needs {}, which this CPU does not offer", .level.features())]
    Unavailable {
        /// The level asked for.
        level: SimdLevel,
    },
}

/// A [`SimdLevel`] this CPU has been checked to offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Simd(SimdLevel);

impl Simd {
    /// The level, if this CPU offers it.
    pub fn new(level: SimdLevel) -> Result<Self, SimdError> {
        if level.is_available() {
            Ok(Self(level))
        } else {
            Err(SimdError::Unavailable { level })
        }
    }

    /// The fastest level this CPU offers.
    pub fn best() -> Self {
        Self::available()
            .pop()
            .expect("the scalar level is always available")
    }

    /// Every level this CPU offers, slowest first.
    pub fn available() -> Vec<Self> {
        SimdLevel::ALL
            .into_iter()
            .filter_map(|level| Self::new(level).ok())
            .collect()
    }

    /// `auto` (the best level) or a level name, checked against this CPU.
    pub fn parse(choice: &str) -> Result<Self, SimdError> {
        match choice.trim() {
            "auto" | "" => Ok(Self::best()),
            name => Self::new(name.parse()?),
        }
    }

    /// The process-wide level: [`SIMD_ENV`] if set (read once), otherwise the best.
    pub fn from_env() -> Result<Self, SimdError> {
        static CHOICE: OnceLock<Result<Simd, SimdError>> = OnceLock::new();
        CHOICE
            .get_or_init(|| match std::env::var(SIMD_ENV) {
                Ok(choice) => Self::parse(&choice),
                Err(_) => Ok(Self::best()),
            })
            .clone()
    }

    /// The level.
    pub fn level(self) -> SimdLevel {
        self.0
    }
}

/// Which implementation computes the matrix products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// This module's kernel at a checked level: the same bits on every CPU.
    Reproducible(Simd),
    /// The `gemm` crate (candle's kernel), whose summation order depends on the SIMD
    /// level and the cache sizes it detects. Not reproducible across machines: kept only
    /// so that `train-bench` can compare against it.
    GemmCrate,
}

/// Whether a product overwrites its output or adds onto it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accumulate {
    /// `C = A·B`: each accumulator starts at `+0.0`.
    Overwrite,
    /// `C += A·B`: each accumulator starts at the old `C[i][j]`.
    Add,
}

/// A read-only strided matrix view: element `(i, j)` is `data[i * row_stride + j * col_stride]`.
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A view of `rows x cols` elements with the given strides.
    ///
    /// # Panics
    /// If an element of the view lies outside `data`.
    pub fn new(
        data: &'a [f32],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Self {
        if rows > 0 && cols > 0 {
            let last = (rows - 1) * row_stride + (cols - 1) * col_stride;
            assert!(
                last < data.len(),
                "a {rows}x{cols} view with strides ({row_stride}, {col_stride}) needs {} values, has {}",
                last + 1,
                data.len()
            );
        }
        Self {
            data,
            rows,
            cols,
            row_stride,
            col_stride,
        }
    }

    /// A dense row-major `rows x cols` matrix.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::new(data, rows, cols, cols, 1)
    }

    /// The transpose (a view, nothing is copied).
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.row_stride + j * self.col_stride]
    }
}

/// `C = A·B` or `C += A·B` (see [`Accumulate`]) with `C` row-major, `a.rows() x b.cols()`,
/// row stride `ldc`. With [`Kernel::Reproducible`], the order guarantee of this module holds.
///
/// # Panics
/// If the inner dimensions differ, `ldc < b.cols()`, or `c` is too short.
pub fn matmul(
    kernel: Kernel,
    c: &mut [f32],
    ldc: usize,
    a: MatRef<'_>,
    b: MatRef<'_>,
    accumulate: Accumulate,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(
        k, b.rows,
        "inner dimensions differ: {m}x{k} times {}x{n}",
        b.rows
    );
    assert!(ldc >= n, "row stride {ldc} below the {n} columns");
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        c.len() >= (m - 1) * ldc + n,
        "output of {m}x{n} with row stride {ldc} does not fit {} values",
        c.len()
    );
    match kernel {
        Kernel::GemmCrate => gemm_crate(c, ldc, a, b, accumulate),
        Kernel::Reproducible(simd) => {
            if k == 0 {
                if accumulate == Accumulate::Overwrite {
                    for row in c.chunks_mut(ldc).take(m) {
                        row[..n].fill(0.0);
                    }
                }
                return;
            }
            let c = Strided {
                ptr: c.as_mut_ptr(),
                rs: ldc as isize,
                cs: 1,
            };
            // SAFETY: the asserts above and in `MatRef::new` put every element of the
            // three views inside their slices, and `c` is borrowed mutably for the call.
            unsafe { reproducible(simd.level(), m, n, k, a, b, c, accumulate) }
        }
    }
}

/// The textbook loop the kernel is specified by: each `C[i][j]` one `mul_add` chain over
/// ascending `p`. Slow; for tests and as documentation.
pub fn matmul_reference(
    c: &mut [f32],
    ldc: usize,
    a: MatRef<'_>,
    b: MatRef<'_>,
    accumulate: Accumulate,
) {
    assert_eq!(a.cols, b.rows);
    for i in 0..a.rows {
        for j in 0..b.cols {
            let mut acc = match accumulate {
                Accumulate::Overwrite => 0.0,
                Accumulate::Add => c[i * ldc + j],
            };
            for p in 0..a.cols {
                acc = a.at(i, p).mul_add(b.at(p, j), acc);
            }
            c[i * ldc + j] = acc;
        }
    }
}

fn gemm_crate(c: &mut [f32], ldc: usize, a: MatRef<'_>, b: MatRef<'_>, accumulate: Accumulate) {
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    let (read_dst, alpha) = match accumulate {
        Accumulate::Overwrite => (false, 0.0),
        Accumulate::Add => (true, 1.0),
    };
    // SAFETY: `matmul` checked that every element of the three views lies in its slice.
    unsafe {
        gemm::gemm(
            a.rows,
            b.cols,
            a.cols,
            c.as_mut_ptr(),
            1,
            ldc as isize,
            read_dst,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            alpha,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// A mutable strided matrix shared by the tasks of one product; each task writes a
/// disjoint set of elements.
#[derive(Clone, Copy)]
struct Strided {
    ptr: *mut f32,
    rs: isize,
    cs: isize,
}

// SAFETY: tasks write disjoint tiles of the output (see `run_tasks`), and the borrow of
// the output outlives the parallel section.
unsafe impl Send for Strided {}
unsafe impl Sync for Strided {}

/// A read-only operand as pointer and strides.
#[derive(Clone, Copy)]
struct Operand {
    ptr: *const f32,
    rs: isize,
    cs: isize,
}

// SAFETY: only read, and the borrow outlives the parallel section.
unsafe impl Send for Operand {}
unsafe impl Sync for Operand {}

impl Operand {
    fn of(view: MatRef<'_>) -> Self {
        Self {
            ptr: view.data.as_ptr(),
            rs: view.row_stride as isize,
            cs: view.col_stride as isize,
        }
    }

    fn t(self) -> Self {
        Self {
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    /// # Safety
    /// `(i, j)` must be inside the view.
    unsafe fn offset(self, i: usize, j: usize) -> Self {
        Self {
            ptr: self.ptr.offset(i as isize * self.rs + j as isize * self.cs),
            ..self
        }
    }
}

/// The body of a level's [`Level::tile`]: calls the const-generic tile function of
/// `rows` rows (one of the listed counts, `1..=MR`), so each row count compiles to a tile
/// with its accumulators in registers.
macro_rules! tile_of_rows {
    ($rows:expr, $tile:ident $args:tt; $($r:literal)+) => {
        match $rows {
            $($r => $tile::<$r> $args,)+
            rows => unreachable!("no register tile of {rows} rows"),
        }
    };
}
use tile_of_rows;

/// A register-tile kernel of one level: `MR` rows of `A` broadcast against `NR` columns
/// of a packed `B` panel.
trait Level {
    const MR: usize;
    const NR: usize;

    /// `rows` (1..=MR) rows of the tile `c` (row stride `rs_c`, `NR` contiguous columns):
    /// `c[r][v] = fma chain over p < k of a[r][p] * b[p][v]`, starting from `c` when
    /// `load`, else from zero.
    ///
    /// # Safety
    /// The CPU offers the level; `a` covers `rows x k`, `b` `k x NR` contiguous values,
    /// `c` `rows x NR`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile(
        rows: usize,
        k: usize,
        a: Operand,
        b: *const f32,
        c: *mut f32,
        rs_c: usize,
        load: bool,
    );
}

/// # Safety
/// The level is available; every element of `a` (`m x k`), `b` (`k x n`) and `c`
/// (`m x n`) lies in memory valid for the access, `c` exclusively borrowed.
#[allow(clippy::too_many_arguments)]
unsafe fn reproducible(
    level: SimdLevel,
    m: usize,
    n: usize,
    k: usize,
    a: MatRef<'_>,
    b: MatRef<'_>,
    c: Strided,
    accumulate: Accumulate,
) {
    let (a_op, b_op) = (Operand::of(a), Operand::of(b));
    // Which operand to pack into vector panels: the one that costs less to copy, a
    // transposing copy counting three times a contiguous one; computing `Cᵀ = Bᵀ·Aᵀ`
    // also scatters `C` once per pass. Both give the same bits (see the module docs).
    let pack_cost = |rows: usize, cols: usize, unit: bool| rows * cols * if unit { 1 } else { 3 };
    let normal = pack_cost(k, n, b.col_stride == 1);
    let swapped = pack_cost(k, m, a.row_stride == 1) + 2 * m * n;
    let (m, n, a_op, b_op, c) = if swapped < normal {
        let ct = Strided {
            ptr: c.ptr,
            rs: c.cs,
            cs: c.rs,
        };
        (n, m, b_op.t(), a_op.t(), ct)
    } else {
        (m, n, a_op, b_op, c)
    };
    let mut start = 0;
    while start < k {
        let len = K_BLOCK.min(k - start);
        let pass_accumulate = if start == 0 {
            accumulate
        } else {
            Accumulate::Add
        };
        let (a_pass, b_pass) = (a_op.offset(0, start), b_op.offset(start, 0));
        match level {
            SimdLevel::Scalar => {
                run_tasks::<scalar::Scalar>(m, n, len, a_pass, b_pass, c, pass_accumulate)
            }
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx2 => {
                run_tasks::<avx2::Avx2>(m, n, len, a_pass, b_pass, c, pass_accumulate)
            }
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx512 if n <= avx512::Avx512Narrow::NR => {
                run_tasks::<avx512::Avx512Narrow>(m, n, len, a_pass, b_pass, c, pass_accumulate)
            }
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx512 => {
                run_tasks::<avx512::Avx512>(m, n, len, a_pass, b_pass, c, pass_accumulate)
            }
            #[cfg(not(target_arch = "x86_64"))]
            SimdLevel::Avx2 | SimdLevel::Avx512 => {
                unreachable!("a Simd of an x86 level exists only on x86-64")
            }
        }
        start += len;
    }
}

/// Values of a packed panel buffer: `K_BLOCK` rows of the widest panel, plus room to
/// align the start to a cache line.
const PANEL_VALUES_MAX: usize = K_BLOCK * 32 + 16;

thread_local! {
    /// Each worker's packed panel, reused across products.
    static PANEL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Splits `C` into tasks of (one `NR`-column panel, a run of row tiles) and runs them on
/// the caller's rayon pool. The split may depend on the thread count; the bits do not,
/// since each element is computed by exactly one task, all the way.
///
/// # Safety
/// As [`reproducible`], with `k <= K_BLOCK`.
unsafe fn run_tasks<L: Level>(
    m: usize,
    n: usize,
    k: usize,
    a: Operand,
    b: Operand,
    c: Strided,
    accumulate: Accumulate,
) {
    let panels = n.div_ceil(L::NR);
    let row_tiles = m.div_ceil(L::MR);
    let threads = rayon::current_num_threads();
    // A task per panel, and panels cut into row chunks only as far as it takes to give
    // every thread one: each chunk packs its panel again.
    let row_chunks = threads.div_ceil(panels).clamp(1, row_tiles);
    let tiles_per_chunk = row_tiles.div_ceil(row_chunks);
    let row_chunks = row_tiles.div_ceil(tiles_per_chunk);
    let task = |index: usize| {
        let (panel, chunk) = (index / row_chunks, index % row_chunks);
        let first_tile = chunk * tiles_per_chunk;
        let tiles = tiles_per_chunk.min(row_tiles - first_tile);
        // SAFETY: the caller's contract; task `index` writes only its own panel's
        // columns of its own rows.
        unsafe { panel_task::<L>(m, n, k, a, b, c, accumulate, panel, first_tile, tiles) }
    };
    let count = panels * row_chunks;
    if threads > 1 && count > 1 {
        (0..count).into_par_iter().for_each(task);
    } else {
        (0..count).for_each(task);
    }
}

/// One task: packs panel `panel` of `B` and runs `tiles` row tiles from `first_tile`.
///
/// # Safety
/// As [`run_tasks`].
#[allow(clippy::too_many_arguments)]
unsafe fn panel_task<L: Level>(
    m: usize,
    n: usize,
    k: usize,
    a: Operand,
    b: Operand,
    c: Strided,
    accumulate: Accumulate,
    panel: usize,
    first_tile: usize,
    tiles: usize,
) {
    let (mr, nr) = (L::MR, L::NR);
    let j0 = panel * nr;
    let width = nr.min(n - j0);
    PANEL.with_borrow_mut(|buffer| {
        if buffer.len() < PANEL_VALUES_MAX {
            buffer.resize(PANEL_VALUES_MAX, 0.0);
        }
        // Align the panel to 64 bytes so each vector load stays within a cache line.
        let skew = buffer.as_ptr().align_offset(64).min(16);
        let packed = &mut buffer[skew..skew + k * nr];
        pack_panel(k, b.offset(0, j0), width, nr, packed);
        let load = accumulate == Accumulate::Add;
        let direct = c.cs == 1 && width == nr;
        // The largest register tile: 8 x 32 (AVX-512) or 16 x 16 (its narrow variant).
        let mut scratch = [0f32; 8 * 32];
        debug_assert!(mr * nr <= scratch.len());
        for tile in first_tile..first_tile + tiles {
            let i0 = tile * mr;
            let rows = mr.min(m - i0);
            let a_tile = a.offset(i0, 0);
            let c_tile = c.ptr.offset(i0 as isize * c.rs + j0 as isize * c.cs);
            if direct {
                L::tile(
                    rows,
                    k,
                    a_tile,
                    packed.as_ptr(),
                    c_tile,
                    c.rs as usize,
                    load,
                );
                continue;
            }
            // Edge or transposed output: through a contiguous scratch tile (a copy, exact).
            if load {
                for r in 0..rows {
                    for v in 0..width {
                        scratch[r * nr + v] = *c_tile.offset(r as isize * c.rs + v as isize * c.cs);
                    }
                }
            }
            L::tile(
                rows,
                k,
                a_tile,
                packed.as_ptr(),
                scratch.as_mut_ptr(),
                nr,
                load,
            );
            for r in 0..rows {
                for v in 0..width {
                    *c_tile.offset(r as isize * c.rs + v as isize * c.cs) = scratch[r * nr + v];
                }
            }
        }
    });
}

/// Copies `k x width` values of `b` into `packed` as `k` rows of `nr` (zero padded).
///
/// # Safety
/// `b` covers `k x width`.
unsafe fn pack_panel(k: usize, b: Operand, width: usize, nr: usize, packed: &mut [f32]) {
    if b.cs == 1 {
        for (p, row) in packed.chunks_exact_mut(nr).take(k).enumerate() {
            let src = std::slice::from_raw_parts(b.ptr.offset(p as isize * b.rs), width);
            row[..width].copy_from_slice(src);
            row[width..].fill(0.0);
        }
    } else {
        // Transposing: read each column of `b` (a row in memory when `rs == 1`) in order.
        if width < nr {
            for row in packed.chunks_exact_mut(nr).take(k) {
                row[width..].fill(0.0);
            }
        }
        for v in 0..width {
            let column = b.ptr.offset(v as isize * b.cs);
            for p in 0..k {
                *packed.get_unchecked_mut(p * nr + v) = *column.offset(p as isize * b.rs);
            }
        }
    }
}
