//! `float`, after pyperformance's `bm_float`: 100,000 `Point`s with float coordinates
//! `x, y, z` are made from `sin`/`cos`, normalised, and folded with `maximize`. Every
//! arithmetic step makes a new float and most die at once, so the float free list serves
//! nearly every allocation; a point's attributes live in a dict (an instance `__dict__`:
//! pyperformance's `Point` has `__slots__`, which this model has no type for), so dicts come
//! and go too.
//!
//! Known answer: CPython 3.11's final point for 100,000 points, to the bit.

use crate::model::{float_repr, Obj, Runtime};

/// Points per run, as pyperformance's `POINTS`.
pub(crate) const POINTS: usize = 100_000;

/// Runs of `POINTS` points per run of the command (about 0.2 s per mode on a 2-core VM).
pub(crate) const DEFAULT_LOOPS: usize = 3;

/// CPython 3.11's `benchmark(n)` result `(x, y, z)` as IEEE-754 bits, for a few sizes.
pub(crate) const KNOWN: [(usize, [u64; 3]); 3] = [
    (
        100,
        [0x3fec9aa16299adb6, 0x3ff0000000000000, 0x3fdc9e92d3124932],
    ),
    (
        1000,
        [0x3fec9ea8ac18215c, 0x3ff0000000000000, 0x3fdc9e96ccea7a67],
    ),
    (
        100_000,
        [0x3fec9f25c4bac6fc, 0x3ff0000000000000, 0x3fdc9f25c5b10397],
    ),
];

/// The attribute names, made once (CPython interns them).
struct Names<'r> {
    x: Obj<'r>,
    y: Obj<'r>,
    z: Obj<'r>,
    two: Obj<'r>,
    three: Obj<'r>,
}

/// `Point(i)`.
fn point<'r>(rt: &'r Runtime<'r>, n: &Names<'r>, i: usize) -> Obj<'r> {
    let p = rt.dict();
    let i = rt.int(i as i64).float();
    // self.x = x = sin(i)
    let x = rt.float(i.sin());
    p.set(&n.x, &x);
    // self.y = cos(i) * 3
    p.set(&n.y, &(&rt.float(i.cos()) * &n.three));
    // self.z = (x * x) / 2
    p.set(&n.z, &(&(&x * &x) / &n.two));
    p
}

/// `Point.normalize(self)`.
fn normalize<'r>(rt: &'r Runtime<'r>, n: &Names<'r>, p: &Obj<'r>) {
    let (x, y, z) = (p.getitem(&n.x), p.getitem(&n.y), p.getitem(&n.z));
    // norm = sqrt(x * x + y * y + z * z)
    let sum = &(&(&x * &x) + &(&y * &y)) + &(&z * &z);
    let norm = rt.float(sum.float().sqrt());
    // self.x /= norm; self.y /= norm; self.z /= norm
    p.set(&n.x, &(&p.getitem(&n.x) / &norm));
    p.set(&n.y, &(&p.getitem(&n.y) / &norm));
    p.set(&n.z, &(&p.getitem(&n.z) / &norm));
}

/// `Point.maximize(self, other)`.
fn maximize_point<'r>(n: &Names<'r>, p: Obj<'r>, other: &Obj<'r>) -> Obj<'r> {
    for attr in [&n.x, &n.y, &n.z] {
        // self.x = self.x if self.x > other.x else other.x
        let (a, b) = (p.getitem(attr), other.getitem(attr));
        p.set(attr, if a.gt(&b) { &a } else { &b });
    }
    p
}

/// `benchmark(n)`: the folded point.
pub(crate) fn benchmark<'r>(rt: &'r Runtime<'r>, points: usize) -> Obj<'r> {
    let n = Names {
        x: rt.str("x"),
        y: rt.str("y"),
        z: rt.str("z"),
        two: rt.int(2),
        three: rt.int(3),
    };
    // points = [None] * n; for i in range(n): points[i] = Point(i)
    let list = rt.list_repeat(&rt.none(), points);
    for i in 0..points {
        list.set_at(i as isize, &point(rt, &n, i));
    }
    for p in list.iter() {
        normalize(rt, &n, &p);
    }
    // next = points[0]; for p in points[1:]: next = next.maximize(p)
    let mut next = list.at(0);
    for p in list.slice(1, isize::MAX).iter() {
        next = maximize_point(&n, next, &p);
    }
    // Return (x, y, z) so the names die here, with the points.
    rt.tuple(&[
        &next.getitem(&n.x),
        &next.getitem(&n.y),
        &next.getitem(&n.z),
    ])
}

/// Checks `benchmark(points)`'s `(x, y, z)` against CPython's, when known; returns a summary.
pub(crate) fn check(points: usize, xyz: &Obj<'_>) -> Result<String, String> {
    let v: Vec<f64> = xyz.iter().map(|c| c.float()).collect();
    let summary = format!(
        "Point(x={}, y={}, z={})",
        float_repr(v[0]),
        float_repr(v[1]),
        float_repr(v[2])
    );
    if let Some((_, bits)) = KNOWN.iter().find(|(n, _)| *n == points) {
        let got = [v[0].to_bits(), v[1].to_bits(), v[2].to_bits()];
        if got != *bits {
            let want: Vec<String> = bits
                .iter()
                .map(|b| float_repr(f64::from_bits(*b)))
                .collect();
            return Err(format!(
                "float: got {summary} for {points} points; CPython gives Point(x={}, y={}, z={})",
                want[0], want[1], want[2]
            ));
        }
    }
    Ok(summary)
}

/// `loops` runs of `benchmark(POINTS)`, each checked.
pub(crate) fn run<'r>(rt: &'r Runtime<'r>, loops: usize) -> Result<String, String> {
    let mut summary = String::new();
    for _ in 0..loops.max(1) {
        let xyz = benchmark(rt, POINTS);
        summary = check(POINTS, &xyz)?;
    }
    Ok(format!("{summary} ×{}", loops.max(1)))
}
