//! `float`, with CPython's 100-slot free list (layer 3 of pyalloc, by derive).

use pyalloc::FreeListed;

use super::int::{int_hash, HASH_MODULUS};
use super::object::{Header, Kind, PyObject, RawObj};

/// A `float` object: CPython's `PyFloatObject`, 24 bytes, in a 32-byte block.
#[derive(FreeListed)]
#[free_list(capacity = 100, name = "PyFloatObject")]
#[repr(C)]
pub(crate) struct PyFloatObject {
    head: Header,
    value: f64,
}

// SAFETY: `#[repr(C)]` with the header first.
unsafe impl PyObject for PyFloatObject {
    const KIND: Kind = Kind::Float;
}

impl PyFloatObject {
    /// A new float holding `value`.
    pub(super) fn new(value: f64) -> PyFloatObject {
        PyFloatObject {
            head: Header::new(Kind::Float),
            value,
        }
    }
}

impl RawObj {
    /// The value of a `float` object; `None` for other kinds.
    #[inline(always)]
    pub(super) fn float_value(self) -> Option<f64> {
        self.downcast::<PyFloatObject>().map(|f| f.value)
    }
}

/// CPython's `_Py_HashDouble`: equal to the int's hash for integral values, so that
/// `hash(2.0) == hash(2)`; infinities hash to ±314159 and NaN to 0 here.
pub(super) fn float_hash(v: f64) -> i64 {
    if v.is_nan() {
        return 0;
    }
    if v.is_infinite() {
        return if v > 0.0 { 314159 } else { -314159 };
    }
    if v.fract() == 0.0 && v.abs() < 9.2e18 {
        return int_hash(v as i64);
    }
    // CPython's algorithm: the value as a fraction reduced modulo 2^61 - 1.
    let (mut m, mut e) = frexp(v.abs());
    let sign: i64 = if v < 0.0 { -1 } else { 1 };
    let mut x: u64 = 0;
    while m != 0.0 {
        x = ((x << 28) & HASH_MODULUS) | (x >> (61 - 28));
        m *= 268_435_456.0; // 2**28
        e -= 28;
        let y = m as u64;
        m -= y as f64;
        x += y;
        if x >= HASH_MODULUS {
            x -= HASH_MODULUS;
        }
    }
    let e = if e >= 0 {
        e % 61
    } else {
        61 - 1 - ((-1 - e) % 61)
    } as u32;
    x = ((x << e) & HASH_MODULUS) | (x >> (61 - e));
    let h = x as i64 * sign;
    if h == -1 {
        -2
    } else {
        h
    }
}

/// C's `frexp` for finite non-zero positive `v`: `v == m * 2^e` with `m` in [0.5, 1).
fn frexp(v: f64) -> (f64, i32) {
    if v == 0.0 {
        return (0.0, 0);
    }
    let bits = v.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    if exp == 0 {
        // Subnormal: scale into the normal range first.
        let (m, e) = frexp(v * f64::from_bits(0x4350_0000_0000_0000)); // 2^54
        return (m, e - 54);
    }
    let m = f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52));
    (m, exp - 1022)
}

/// Python's `repr(float)`: the shortest digits that round-trip, in fixed notation when the
/// decimal exponent is in -4..16, else in scientific notation with a signed two-digit
/// exponent (`1e+16`, `1.5e-05`); integral values keep a `.0`.
pub(crate) fn float_repr(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.into();
    }
    // Rust's `{:e}` prints the shortest round-trip digits: "d.ddde<exp>".
    let sci = format!("{:e}", v);
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` has an exponent");
    let exp: i32 = exp.parse().expect("the exponent is an integer");
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::from(sign);
    if (-4..16).contains(&exp) {
        if exp < 0 {
            out.push_str("0.");
            out.extend(core::iter::repeat_n('0', (-exp - 1) as usize));
            out.push_str(&digits);
        } else {
            let point = exp as usize + 1;
            if digits.len() <= point {
                out.push_str(&digits);
                out.extend(core::iter::repeat_n('0', point - digits.len()));
                out.push_str(".0");
            } else {
                out.push_str(&digits[..point]);
                out.push('.');
                out.push_str(&digits[point..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push_str(&format!(
            "e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        ));
    }
    out
}
