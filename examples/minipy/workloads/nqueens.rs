//! `nqueens`, after pyperformance's `bm_nqueens`: every permutation of the columns of an
//! 8×8 board as a tuple (a port of `itertools.permutations`' pure-Python recipe, which the
//! benchmark carries), kept when the queens' diagonals are all distinct, counted with sets.
//! Tuples of 8 come and go 40,320 times per solve; the index and cycle lists are sliced and
//! concatenated at every step; each candidate builds one or two small sets (dicts here: the
//! model has no `set`, and CPython's set is the same kind of open-addressed table).
//!
//! Known answer: 92 solutions, the first `(0, 4, 7, 5, 2, 6, 1, 3)`, and CPython 3.11's
//! `hash(tuple(solutions))`, which this model's tuple and int hashes reproduce.

use crate::model::{Obj, Runtime};

/// Solves per run of the command (about 0.3 s per mode on a 2-core VM).
pub(crate) const DEFAULT_LOOPS: usize = 8;

/// The board size pyperformance uses.
pub(crate) const QUEENS: usize = 8;

/// `len(list(n_queens(8)))`.
pub(crate) const SOLUTIONS: usize = 92;

/// CPython 3.11's `hash(tuple(n_queens(8)))`.
pub(crate) const SOLUTIONS_HASH: i64 = 2_910_252_418_303_274_577;

/// `itertools.permutations(iterable)`, as the recipe in its documentation (and the
/// benchmark) writes it.
pub(crate) struct Permutations<'r> {
    rt: &'r Runtime<'r>,
    pool: Obj<'r>,
    n: usize,
    r: usize,
    indices: Obj<'r>,
    cycles: Obj<'r>,
    started: bool,
    done: bool,
}

impl<'r> Permutations<'r> {
    /// `permutations(iterable)`, `iterable` a list or tuple.
    pub(crate) fn new(rt: &'r Runtime<'r>, iterable: &Obj<'r>) -> Self {
        let pool = rt.tuple_from(iterable.iter());
        let n = pool.len();
        let r = n;
        let indices = rt.list_from((0..n).map(|i| rt.int(i as i64)));
        // list(range(n - r + 1, n + 1))[::-1]
        let cycles = rt.list_from((n - r + 1..=n).rev().map(|i| rt.int(i as i64)));
        Permutations {
            rt,
            pool,
            n,
            r,
            indices,
            cycles,
            started: false,
            done: false,
        }
    }

    /// `tuple(pool[i] for i in indices[:r])`.
    fn current(&self) -> Obj<'r> {
        let head = self.indices.slice(0, self.r as isize);
        self.rt
            .tuple_from(head.iter().map(|i| self.pool.at(i.int() as isize)))
    }
}

impl<'r> Iterator for Permutations<'r> {
    type Item = Obj<'r>;

    fn next(&mut self) -> Option<Obj<'r>> {
        if !self.started {
            self.started = true;
            return Some(self.current());
        }
        if self.done || self.n == 0 {
            return None;
        }
        let rt = self.rt;
        let one = rt.int(1);
        for i in (0..self.r).rev() {
            let ii = i as isize;
            // cycles[i] -= 1
            let c = &self.cycles.at(ii) - &one;
            self.cycles.set_at(ii, &c);
            if c.int() == 0 {
                // indices[i:] = indices[i + 1:] + indices[i:i + 1]
                let rotated =
                    &self.indices.slice(ii + 1, isize::MAX) + &self.indices.slice(ii, ii + 1);
                self.indices.set_slice(ii, isize::MAX, &rotated);
                // cycles[i] = n - i
                self.cycles.set_at(ii, &rt.int((self.n - i) as i64));
            } else {
                // j = cycles[i]; indices[i], indices[-j] = indices[-j], indices[i]
                let j = c.int() as isize;
                let (a, b) = (self.indices.at(-j), self.indices.at(ii));
                self.indices.set_at(ii, &a);
                self.indices.set_at(-j, &b);
                return Some(self.current());
            }
        }
        self.done = true;
        None
    }
}

/// `set(items)`, as a dict of `None`s.
fn set_of<'r>(rt: &'r Runtime<'r>, items: impl Iterator<Item = Obj<'r>>) -> Obj<'r> {
    let set = rt.dict();
    let none = rt.none();
    for item in items {
        set.set(&item, &none);
    }
    set
}

/// `list(n_queens(queen_count))`.
pub(crate) fn n_queens<'r>(rt: &'r Runtime<'r>, queen_count: usize) -> Obj<'r> {
    let cols = rt.list_from((0..queen_count).map(|i| rt.int(i as i64))); // range(queen_count)
    let solutions = rt.list();
    for vec in Permutations::new(rt, &cols) {
        // queen_count == len(set(vec[i] + i for i in cols)) == len(set(vec[i] - i for i in cols))
        let sums = set_of(rt, cols.iter().map(|i| &vec.at(i.int() as isize) + &i));
        if sums.len() != queen_count {
            continue;
        }
        let diffs = set_of(rt, cols.iter().map(|i| &vec.at(i.int() as isize) - &i));
        if sums.len() == diffs.len() {
            solutions.append(&vec);
        }
    }
    solutions
}

/// Solves 8 queens `loops` times, checking each answer.
pub(crate) fn run<'r>(rt: &'r Runtime<'r>, loops: usize) -> Result<String, String> {
    let mut summary = String::new();
    for _ in 0..loops.max(1) {
        let solutions = n_queens(rt, QUEENS);
        summary = check(rt, &solutions)?;
    }
    Ok(format!("{summary} ×{}", loops.max(1)))
}

/// Checks a solution list against the known answer; returns its summary.
pub(crate) fn check<'r>(rt: &'r Runtime<'r>, solutions: &Obj<'r>) -> Result<String, String> {
    let count = solutions.len();
    let first = if count > 0 {
        solutions.at(0).repr()
    } else {
        "-".into()
    };
    let hash = rt.tuple_from(solutions.iter()).py_hash();
    let summary = format!("{count} solutions, first {first}, hash {hash}");
    if count != SOLUTIONS || first != "(0, 4, 7, 5, 2, 6, 1, 3)" || hash != SOLUTIONS_HASH {
        return Err(format!(
            "nqueens: got {summary}; expected {SOLUTIONS} solutions, first (0, 4, 7, 5, 2, 6, 1, 3), hash {SOLUTIONS_HASH}"
        ));
    }
    Ok(summary)
}
