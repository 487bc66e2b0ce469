//! `json_dumps`, after pyperformance's `bm_json_dumps`: `json.dumps` of its four cases,
//! `EMPTY` (`{}`, 2000 times), `SIMPLE` (a flat dict, 1000 times), `NESTED` (a dict holding
//! `SIMPLE` three times, 1000 times) and `HUGE` (a list of 1000 references to `NESTED`, once).
//!
//! The encoder follows CPython's C encoder with its default arguments (`ensure_ascii`,
//! `check_circular`, separators `", "` and `": "`): every scalar becomes a new string chunk,
//! chunks gather in a list that grows and is joined at the end, and each container is marked
//! in a `markers` dict keyed by `id()` while it is being encoded.
//!
//! The input data is parsed from JSON text first. That parse tree lives in a bump arena
//! (bumpalo): it is built once, read once to make the runtime's objects, and then all of it
//! dies at the same moment, so one pointer increment per allocation and one free for the
//! whole arena is the cheapest correct choice. The runtime's objects are the opposite case:
//! each dies on its own, in no predictable order, when its reference count reaches zero,
//! which is what pymalloc's size-class pools and free lists are for.
//!
//! Known answer: every output is byte-identical to CPython 3.11's `json.dumps` of the same
//! data.

use bumpalo::Bump;
use pyalloc::Vec as AVec;
use smallvec::SmallVec;

use crate::model::{float_repr, Kind, Obj, Runtime};

/// Passes over the four cases per run of the command (about 0.25 s per mode on a 2-core VM).
pub(crate) const DEFAULT_LOOPS: usize = 25;

/// pyperformance's `SIMPLE_DATA`, as text; `json.dumps` gives the same text back.
pub(crate) const SIMPLE_TEXT: &str =
    r#"{"key1": 0, "key2": true, "key3": "value", "key4": "foo", "key5": "string"}"#;

/// pyperformance's `NESTED_DATA` with `null` where it holds `SIMPLE_DATA` (filled in after
/// parsing, so that the three are one object as in the benchmark).
const NESTED_TEMPLATE: &str = r#"{"key1": 0, "key2": null, "key3": "value", "key4": null, "key5": null, "key": "\u0105\u0107\u017c"}"#;

/// CPython 3.11's `json.dumps(NESTED_DATA)`.
pub(crate) const NESTED_JSON: &str = concat!(
    r#"{"key1": 0, "key2": {"key1": 0, "key2": true, "key3": "value", "key4": "foo", "key5": "string"}, "#,
    r#""key3": "value", "key4": {"key1": 0, "key2": true, "key3": "value", "key4": "foo", "key5": "string"}, "#,
    r#""key5": {"key1": 0, "key2": true, "key3": "value", "key4": "foo", "key5": "string"}, "#,
    r#""key": "\u0105\u0107\u017c"}"#
);

/// How many references to `NESTED` `HUGE` holds.
const HUGE_LEN: usize = 1000;

// ------------------------------------------------------------------------------------------
// Parsing, into a bump arena

/// A parsed JSON value; every part of it lives in the arena `'b`.
#[derive(Debug)]
pub(crate) enum Json<'b> {
    /// `null`.
    Null,
    /// `true`, `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A number with a fraction or exponent.
    Float(f64),
    /// A string, unescaped.
    Str(&'b str),
    /// An array.
    List(AVec<Json<'b>, &'b Bump>),
    /// An object, in order.
    Dict(AVec<(&'b str, Json<'b>), &'b Bump>),
}

/// A recursive-descent JSON parser allocating its tree in `bump`.
struct Parser<'b, 't> {
    bump: &'b Bump,
    text: &'t [u8],
    pos: usize,
}

/// Parses `text` into a tree allocated in `bump`.
pub(crate) fn parse<'b>(bump: &'b Bump, text: &str) -> Result<Json<'b>, String> {
    let mut p = Parser {
        bump,
        text: text.as_bytes(),
        pos: 0,
    };
    let v = p.value()?;
    p.ws();
    if p.pos != p.text.len() {
        return Err(p.error("trailing data"));
    }
    Ok(v)
}

impl<'b> Parser<'b, '_> {
    fn error(&self, what: &str) -> String {
        format!("JSON parse error at byte {}: {what}", self.pos)
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.text.get(self.pos) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, lit: &str) -> bool {
        if self.text[self.pos..].starts_with(lit.as_bytes()) {
            self.pos += lit.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Result<Json<'b>, String> {
        self.ws();
        match self.text.get(self.pos) {
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => Ok(Json::Str(self.string()?)),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ if self.eat("null") => Ok(Json::Null),
            _ if self.eat("true") => Ok(Json::Bool(true)),
            _ if self.eat("false") => Ok(Json::Bool(false)),
            _ => Err(self.error("expected a value")),
        }
    }

    fn object(&mut self) -> Result<Json<'b>, String> {
        self.pos += 1; // {
        let mut items = AVec::new_in(self.bump);
        self.ws();
        if self.eat("}") {
            return Ok(Json::Dict(items));
        }
        loop {
            self.ws();
            if self.text.get(self.pos) != Some(&b'"') {
                return Err(self.error("expected a key"));
            }
            let key = self.string()?;
            self.ws();
            if !self.eat(":") {
                return Err(self.error("expected ':'"));
            }
            items.push((key, self.value()?));
            self.ws();
            if self.eat("}") {
                return Ok(Json::Dict(items));
            }
            if !self.eat(",") {
                return Err(self.error("expected ',' or '}'"));
            }
        }
    }

    fn array(&mut self) -> Result<Json<'b>, String> {
        self.pos += 1; // [
        let mut items = AVec::new_in(self.bump);
        self.ws();
        if self.eat("]") {
            return Ok(Json::List(items));
        }
        loop {
            items.push(self.value()?);
            self.ws();
            if self.eat("]") {
                return Ok(Json::List(items));
            }
            if !self.eat(",") {
                return Err(self.error("expected ',' or ']'"));
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self
            .text
            .get(self.pos..self.pos + 4)
            .and_then(|d| core::str::from_utf8(d).ok())
            .and_then(|d| u32::from_str_radix(d, 16).ok())
            .ok_or_else(|| self.error("bad \\u escape"))?;
        self.pos += 4;
        Ok(digits)
    }

    /// A string literal, unescaped into the arena.
    fn string(&mut self) -> Result<&'b str, String> {
        self.pos += 1; // "
        let mut out: AVec<u8, &Bump> = AVec::new_in(self.bump);
        loop {
            let Some(&b) = self.text.get(self.pos) else {
                return Err(self.error("unterminated string"));
            };
            self.pos += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = self.text.get(self.pos) else {
                        return Err(self.error("unterminated escape"));
                    };
                    self.pos += 1;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let mut cp = self.hex4()?;
                            if (0xd800..0xdc00).contains(&cp) && self.eat("\\u") {
                                let low = self.hex4()?;
                                cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
                            }
                            char::from_u32(cp).ok_or_else(|| self.error("bad code point"))?
                        }
                        _ => return Err(self.error("bad escape")),
                    };
                    out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                }
                b => out.push(b),
            }
        }
        let s = core::str::from_utf8(&out).map_err(|_| self.error("invalid UTF-8"))?;
        Ok(self.bump.alloc_str(s))
    }

    fn number(&mut self) -> Result<Json<'b>, String> {
        let start = self.pos;
        while let Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') = self.text.get(self.pos) {
            self.pos += 1;
        }
        let s = core::str::from_utf8(&self.text[start..self.pos]).expect("ASCII");
        if let Ok(i) = s.parse::<i64>() {
            return Ok(Json::Int(i));
        }
        s.parse::<f64>()
            .map(Json::Float)
            .map_err(|_| self.error("bad number"))
    }
}

/// The runtime object for a parsed value (strings are copied out of the arena).
pub(crate) fn build<'r>(rt: &'r Runtime<'r>, v: &Json<'_>) -> Obj<'r> {
    match v {
        Json::Null => rt.none(),
        Json::Bool(b) => rt.bool(*b),
        Json::Int(i) => rt.int(*i),
        Json::Float(f) => rt.float(*f),
        Json::Str(s) => rt.str(s),
        Json::List(items) => rt.list_from(items.iter().map(|item| build(rt, item))),
        Json::Dict(items) => {
            let d = rt.dict();
            for (k, v) in items.iter() {
                d.set(&rt.str(k), &build(rt, v));
            }
            d
        }
    }
}

// ------------------------------------------------------------------------------------------
// Encoding, in the runtime

/// `json.JSONEncoder()` with its default arguments, and its constant chunks.
pub(crate) struct Encoder<'r> {
    rt: &'r Runtime<'r>,
    null: Obj<'r>,
    true_: Obj<'r>,
    false_: Obj<'r>,
    open_list: Obj<'r>,
    close_list: Obj<'r>,
    empty_list: Obj<'r>,
    open_dict: Obj<'r>,
    close_dict: Obj<'r>,
    empty_dict: Obj<'r>,
    item_separator: Obj<'r>,
    key_separator: Obj<'r>,
    /// `check_circular`: the containers being encoded, by `id()`.
    markers: Obj<'r>,
}

impl<'r> Encoder<'r> {
    /// An encoder for `rt`.
    pub(crate) fn new(rt: &'r Runtime<'r>) -> Self {
        Encoder {
            rt,
            null: rt.str("null"),
            true_: rt.str("true"),
            false_: rt.str("false"),
            open_list: rt.str("["),
            close_list: rt.str("]"),
            empty_list: rt.str("[]"),
            open_dict: rt.str("{"),
            close_dict: rt.str("}"),
            empty_dict: rt.str("{}"),
            item_separator: rt.str(", "),
            key_separator: rt.str(": "),
            markers: rt.dict(),
        }
    }

    /// `json.dumps(obj)`.
    ///
    /// # Panics
    ///
    /// `ValueError` on a circular structure, `TypeError` on a value JSON cannot hold.
    pub(crate) fn dumps(&self, obj: &Obj<'r>) -> Obj<'r> {
        let chunks = self.rt.list();
        self.encode(obj, &chunks);
        self.rt.join("", &chunks)
    }

    fn encode(&self, obj: &Obj<'r>, chunks: &Obj<'r>) {
        match obj.kind() {
            Kind::None => chunks.append(&self.null),
            Kind::Bool => chunks.append(if obj.truthy() {
                &self.true_
            } else {
                &self.false_
            }),
            Kind::Int => chunks.append(&int_str(self.rt, obj.int())),
            Kind::Float => chunks.append(&self.float_str(obj.float())),
            Kind::Str => chunks.append(&encode_str(self.rt, obj.as_str().unwrap_or_default())),
            Kind::List | Kind::Tuple => self.encode_list(obj, chunks),
            Kind::Dict => self.encode_dict(obj, chunks),
        }
    }

    fn float_str(&self, f: f64) -> Obj<'r> {
        if f.is_nan() {
            self.rt.str("NaN")
        } else if f.is_infinite() {
            self.rt.str(if f > 0.0 { "Infinity" } else { "-Infinity" })
        } else {
            self.rt.str(&float_repr(f))
        }
    }

    /// Marks a container as being encoded; returns its marker key.
    fn mark(&self, obj: &Obj<'r>) -> Obj<'r> {
        let ident = self.rt.int(obj.id());
        if self.markers.contains(&ident) {
            panic!("ValueError: Circular reference detected");
        }
        self.markers.set(&ident, obj);
        ident
    }

    fn encode_list(&self, seq: &Obj<'r>, chunks: &Obj<'r>) {
        if seq.len() == 0 {
            chunks.append(&self.empty_list);
            return;
        }
        let ident = self.mark(seq);
        chunks.append(&self.open_list);
        for (i, item) in seq.iter().enumerate() {
            if i > 0 {
                chunks.append(&self.item_separator);
            }
            self.encode(&item, chunks);
        }
        chunks.append(&self.close_list);
        self.markers.del(&ident);
    }

    fn encode_dict(&self, dict: &Obj<'r>, chunks: &Obj<'r>) {
        if dict.len() == 0 {
            chunks.append(&self.empty_dict);
            return;
        }
        let ident = self.mark(dict);
        chunks.append(&self.open_dict);
        for (i, (key, value)) in dict.items().enumerate() {
            if i > 0 {
                chunks.append(&self.item_separator);
            }
            let key = match key.kind() {
                Kind::Str => encode_str(self.rt, key.as_str().unwrap_or_default()),
                Kind::Int => encode_str(self.rt, &key.int().to_string()),
                Kind::Bool => encode_str(self.rt, if key.truthy() { "true" } else { "false" }),
                Kind::None => encode_str(self.rt, "null"),
                Kind::Float => encode_str(self.rt, &float_repr(key.float())),
                k => panic!(
                    "TypeError: keys must be str, int, float, bool or None, not {}",
                    k.name()
                ),
            };
            chunks.append(&key);
            chunks.append(&self.key_separator);
            self.encode(&value, chunks);
        }
        chunks.append(&self.close_dict);
        self.markers.del(&ident);
    }
}

/// `str(i)`, formatted on the stack.
fn int_str<'r>(rt: &'r Runtime<'r>, i: i64) -> Obj<'r> {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    let mut v = i.unsigned_abs();
    loop {
        at -= 1;
        buf[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let digits = core::str::from_utf8(&buf[at..]).expect("ASCII digits");
    if i < 0 {
        rt.str_concat(&["-", digits])
    } else {
        rt.str(digits)
    }
}

/// `py_encode_basestring_ascii`: the string quoted, with `"`, `\` and control characters
/// escaped and everything beyond ASCII as `\uXXXX` (surrogate pairs above U+FFFF). Built on
/// the stack (a `SmallVec` of 64 inline bytes holds all but long strings), then copied into
/// one string object.
fn encode_str<'r>(rt: &'r Runtime<'r>, s: &str) -> Obj<'r> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out: SmallVec<[u8; 64]> = SmallVec::with_capacity(s.len() + 2);
    out.push(b'"');
    let push_u = |out: &mut SmallVec<[u8; 64]>, unit: u16| {
        out.extend_from_slice(b"\\u");
        for shift in [12, 8, 4, 0] {
            out.push(HEX[((unit >> shift) & 0xf) as usize]);
        }
    };
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            ' '..='~' => out.push(c as u8),
            c => {
                let mut units = [0u16; 2];
                for &unit in c.encode_utf16(&mut units).iter() {
                    push_u(&mut out, unit);
                }
            }
        }
    }
    out.push(b'"');
    rt.str(core::str::from_utf8(&out).expect("ASCII"))
}

// ------------------------------------------------------------------------------------------
// The benchmark

/// pyperformance's four cases, made from text.
pub(crate) struct Cases<'r> {
    /// `(data, repetitions, expected json.dumps output)`.
    pub(crate) cases: [(Obj<'r>, usize, String); 4],
}

/// Parses the benchmark's data (in a bump arena, dropped at once) and builds its objects.
pub(crate) fn cases<'r>(rt: &'r Runtime<'r>) -> Result<Cases<'r>, String> {
    let (simple, nested) = {
        let bump = Bump::new();
        let simple = build(rt, &parse(&bump, SIMPLE_TEXT)?);
        let nested = build(rt, &parse(&bump, NESTED_TEMPLATE)?);
        (simple, nested)
        // The whole parse tree goes here, in one free of the arena's chunks.
    };
    for key in ["key2", "key4", "key5"] {
        nested.set(&rt.str(key), &simple);
    }
    let huge = rt.list_repeat(&nested, HUGE_LEN);
    let huge_json = format!("[{}]", vec![NESTED_JSON; HUGE_LEN].join(", "));
    Ok(Cases {
        cases: [
            (rt.dict(), 2000, "{}".into()),
            (simple, 1000, SIMPLE_TEXT.into()),
            (nested, 1000, NESTED_JSON.into()),
            (huge, 1, huge_json),
        ],
    })
}

/// `loops` passes of pyperformance's `bench_json_dumps`, every output compared with
/// CPython's.
pub(crate) fn run<'r>(rt: &'r Runtime<'r>, loops: usize) -> Result<String, String> {
    let cases = cases(rt)?;
    let encoder = Encoder::new(rt);
    let (mut dumps, mut bytes, mut digest) = (0usize, 0usize, 0xcbf2_9ce4_8422_2325u64);
    for pass in 0..loops.max(1) {
        for (obj, count, expected) in &cases.cases {
            for _ in 0..*count {
                let text = encoder.dumps(obj);
                let text = text.as_str().unwrap_or_default();
                if text != expected {
                    return Err(format!(
                        "json_dumps: output differs from CPython's json.dumps:\n got      {:.200}\n expected {:.200}",
                        text, expected
                    ));
                }
                dumps += 1;
                bytes += text.len();
                if pass == 0 {
                    for &b in text.as_bytes() {
                        digest = (digest ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
                    }
                }
            }
        }
    }
    Ok(format!(
        "{dumps} dumps, {bytes} bytes, all equal to CPython's, first pass FNV-1a {digest:016x}"
    ))
}
