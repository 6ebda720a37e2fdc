//! Python's `repr` of any serde item, so that a flow prints what Bytewax prints.
//!
//! Bytewax's `StdOutSink` prints `str(item)`, which for the tuples, lists and dicts
//! flows emit is the `repr` of their parts: `('a', [1.0, None])`. [`to_repr`] writes
//! the same text for the Rust values serde maps onto them: strings (`'a'`, quoted and
//! escaped as Python does), integers, floats (`1.0`, `1e+16`, `inf`, `nan`), `bool`
//! (`True`), `Option` (`None` or the value), tuples (`(1,)`, `(1, 2)`), sequences
//! (`[1, 2]`), maps (`{'k': 1}`), structs as dataclasses (`Point(x=1, y=2)`), unit
//! (`None`), bytes (`b'..'`) and enum variants (`Name`, `Name(..)`). Non-printable
//! characters are escaped with `\x`, `\u` or `\U` like Python, which decides
//! printability from the Unicode database; this uses `char::is_control` plus the
//! separators U+2028/U+2029, so a string of other unprintable code points (unassigned
//! ones, say) prints them as they are where Python would escape them.
//!
//! ```
//! use waxfast::connectors::repr::to_repr;
//! assert_eq!(to_repr(&("123", (1.0, Some(2), None::<u8>))), "('123', (1.0, 2, None))");
//! assert_eq!(to_repr(&vec!["it's"]), r#"["it's"]"#);
//! ```

use std::fmt::{self, Write};

use serde::ser::{self, Serialize};

/// The Python `repr` of `value`. Never fails for the types serde's derive produces; a
/// `Serialize` impl that reports its own error gets `<error: ..>` in its place.
pub fn to_repr<T: Serialize + ?Sized>(value: &T) -> String {
    let mut out = String::new();
    write_repr(value, &mut out);
    out
}

/// Appends the Python `repr` of `value` to `out`.
pub fn write_repr<T: Serialize + ?Sized>(value: &T, out: &mut String) {
    let start = out.len();
    if let Err(e) = value.serialize(Repr { out: &mut *out }) {
        out.truncate(start);
        let _ = write!(out, "<error: {e}>");
    }
}

/// A `Serialize` impl's own error.
#[derive(Debug)]
pub struct ReprError(String);

impl fmt::Display for ReprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ReprError {}

impl ser::Error for ReprError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ReprError(msg.to_string())
    }
}

/// Python's repr of a float: the shortest digits that round-trip (as Rust's), in fixed
/// notation when the decimal exponent is in `-4..16`, else `d.ddde+XX`.
fn float_repr(x: f64, out: &mut String) {
    if x.is_nan() {
        out.push_str("nan");
        return;
    }
    if x.is_infinite() {
        out.push_str(if x > 0.0 { "inf" } else { "-inf" });
        return;
    }
    let sci = format!("{x:e}"); // e.g. "-1.25e-7", "1e16", "0e0"
    let (mant, exp) = sci.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("{:e}'s exponent is an integer");
    let (neg, mant) = match mant.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mant),
    };
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    if neg {
        out.push('-');
    }
    if (-4..16).contains(&exp) {
        if exp < 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
            out.push_str(&digits);
        } else {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                out.push_str(&digits);
                out.extend(std::iter::repeat_n('0', int_len - digits.len()));
                out.push_str(".0");
            } else {
                out.push_str(&digits[..int_len]);
                out.push('.');
                out.push_str(&digits[int_len..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
}

/// Python's repr of a string: single quotes unless it holds `'` and no `"`.
fn str_repr(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                let n = c as u32;
                let _ = match n {
                    0..=0xff => write!(out, "\\x{n:02x}"),
                    0x100..=0xffff => write!(out, "\\u{n:04x}"),
                    _ => write!(out, "\\U{n:08x}"),
                };
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

fn bytes_repr(b: &[u8], out: &mut String) {
    let quote = if b.contains(&b'\'') && !b.contains(&b'"') {
        b'"'
    } else {
        b'\''
    };
    out.push('b');
    out.push(quote as char);
    for &c in b {
        match c {
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c as char);
            }
            0x20..=0x7e => out.push(c as char),
            c => {
                let _ = write!(out, "\\x{c:02x}");
            }
        }
    }
    out.push(quote as char);
}

#[derive(Debug)]
struct Repr<'a> {
    out: &'a mut String,
}

/// A sequence, tuple, map or struct being written.
#[doc(hidden)]
#[derive(Debug)]
pub struct Compound<'a> {
    out: &'a mut String,
    /// No element written yet.
    first: bool,
    close: &'static str,
    /// A 1-tuple, which needs its trailing comma: `(1,)`.
    one_tuple: bool,
}

impl Compound<'_> {
    fn sep(&mut self) {
        if !self.first {
            self.out.push_str(", ");
        }
        self.first = false;
    }
}

impl<'a> Repr<'a> {
    fn open(self, open: &str, close: &'static str) -> Compound<'a> {
        self.out.push_str(open);
        Compound {
            out: self.out,
            first: true,
            close,
            one_tuple: false,
        }
    }
}

impl<'a> ser::Serializer for Repr<'a> {
    type Ok = ();
    type Error = ReprError;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    fn serialize_bool(self, v: bool) -> Result<(), ReprError> {
        self.out.push_str(if v { "True" } else { "False" });
        Ok(())
    }
    fn serialize_i64(self, v: i64) -> Result<(), ReprError> {
        let _ = write!(self.out, "{v}");
        Ok(())
    }
    fn serialize_i128(self, v: i128) -> Result<(), ReprError> {
        let _ = write!(self.out, "{v}");
        Ok(())
    }
    fn serialize_u64(self, v: u64) -> Result<(), ReprError> {
        let _ = write!(self.out, "{v}");
        Ok(())
    }
    fn serialize_u128(self, v: u128) -> Result<(), ReprError> {
        let _ = write!(self.out, "{v}");
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), ReprError> {
        self.serialize_i64(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result<(), ReprError> {
        self.serialize_i64(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result<(), ReprError> {
        self.serialize_i64(v.into())
    }
    fn serialize_u8(self, v: u8) -> Result<(), ReprError> {
        self.serialize_u64(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<(), ReprError> {
        self.serialize_u64(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<(), ReprError> {
        self.serialize_u64(v.into())
    }
    fn serialize_f32(self, v: f32) -> Result<(), ReprError> {
        // Through its shortest decimal form, so 0.1f32 prints 0.1 as Python would
        // print the float the user wrote.
        let x: f64 = v.to_string().parse().unwrap_or(f64::from(v));
        float_repr(x, self.out);
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> Result<(), ReprError> {
        float_repr(v, self.out);
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), ReprError> {
        str_repr(v.encode_utf8(&mut [0; 4]), self.out);
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), ReprError> {
        str_repr(v, self.out);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), ReprError> {
        bytes_repr(v, self.out);
        Ok(())
    }
    fn serialize_none(self) -> Result<(), ReprError> {
        self.out.push_str("None");
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), ReprError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), ReprError> {
        self.out.push_str("None");
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), ReprError> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), ReprError> {
        self.out.push_str(variant);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), ReprError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), ReprError> {
        self.out.push_str(variant);
        self.out.push('(');
        value.serialize(Repr { out: self.out })?;
        self.out.push(')');
        Ok(())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'a>, ReprError> {
        Ok(self.open("[", "]"))
    }
    fn serialize_tuple(self, len: usize) -> Result<Compound<'a>, ReprError> {
        let mut c = self.open("(", ")");
        c.one_tuple = len == 1;
        Ok(c)
    }
    fn serialize_tuple_struct(
        self,
        name: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, ReprError> {
        self.out.push_str(name);
        Ok(self.open("(", ")"))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, ReprError> {
        self.out.push_str(variant);
        Ok(self.open("(", ")"))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'a>, ReprError> {
        Ok(self.open("{", "}"))
    }
    fn serialize_struct(self, name: &'static str, _len: usize) -> Result<Compound<'a>, ReprError> {
        self.out.push_str(name);
        Ok(self.open("(", ")"))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, ReprError> {
        self.out.push_str(variant);
        Ok(self.open("(", ")"))
    }
}

impl Compound<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ReprError> {
        self.sep();
        value.serialize(Repr { out: self.out })
    }
    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), ReprError> {
        self.sep();
        self.out.push_str(key);
        self.out.push('=');
        value.serialize(Repr { out: self.out })
    }
    fn end_it(self) -> Result<(), ReprError> {
        if self.one_tuple && !self.first {
            self.out.push(',');
        }
        self.out.push_str(self.close);
        Ok(())
    }
}

impl ser::SerializeSeq for Compound<'_> {
    type Ok = ();
    type Error = ReprError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ReprError> {
        self.element(value)
    }
    fn end(self) -> Result<(), ReprError> {
        self.end_it()
    }
}

impl ser::SerializeTuple for Compound<'_> {
    type Ok = ();
    type Error = ReprError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ReprError> {
        self.element(value)
    }
    fn end(self) -> Result<(), ReprError> {
        self.end_it()
    }
}

impl ser::SerializeTupleStruct for Compound<'_> {
    type Ok = ();
    type Error = ReprError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ReprError> {
        self.element(value)
    }
    fn end(self) -> Result<(), ReprError> {
        self.end_it()
    }
}

impl ser::SerializeTupleVariant for Compound<'_> {
    type Ok = ();
    type Error = ReprError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ReprError> {
        self.element(value)
    }
    fn end(self) -> Result<(), ReprError> {
        self.end_it()
    }
}

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = ReprError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), ReprError> {
        self.element(key)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ReprError> {
        self.out.push_str(": ");
        value.serialize(Repr { out: self.out })
    }
    fn end(self) -> Result<(), ReprError> {
        self.end_it()
    }
}

impl ser::SerializeStruct for Compound<'_> {
    type Ok = ();
    type Error = ReprError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), ReprError> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), ReprError> {
        self.end_it()
    }
}

impl ser::SerializeStructVariant for Compound<'_> {
    type Ok = ();
    type Error = ReprError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), ReprError> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), ReprError> {
        self.end_it()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Each expected text is what Python 3.11 prints for the corresponding value
    /// (`repr(x)`), checked by hand with the interpreter.
    #[test]
    fn matches_python_repr() {
        assert_eq!(to_repr(&1.0f64), "1.0");
        assert_eq!(to_repr(&18.5f64), "18.5");
        assert_eq!(to_repr(&0.1f64), "0.1");
        assert_eq!(to_repr(&0.1f32), "0.1");
        assert_eq!(to_repr(&1e16f64), "1e+16");
        assert_eq!(to_repr(&123456789012345.6f64), "123456789012345.6");
        assert_eq!(to_repr(&1.5e-7f64), "1.5e-07");
        assert_eq!(to_repr(&0.0001f64), "0.0001");
        assert_eq!(to_repr(&-0.0f64), "-0.0");
        assert_eq!(to_repr(&1e300f64), "1e+300");
        assert_eq!(to_repr(&f64::NAN), "nan");
        assert_eq!(to_repr(&f64::NEG_INFINITY), "-inf");
        assert_eq!(to_repr("it's"), "\"it's\"");
        assert_eq!(to_repr("a'b\"c"), "'a\\'b\"c'");
        assert_eq!(to_repr("tab\there\n\u{1}é"), "'tab\\there\\n\\x01é'");
        assert_eq!(to_repr(&(1,)), "(1,)");
        assert_eq!(to_repr(&()), "None");
        assert_eq!(to_repr(&(true, None::<u8>, Some("x"))), "(True, None, 'x')");
        assert_eq!(to_repr(&vec![vec![1, 2], vec![]]), "[[1, 2], []]");
        let m: BTreeMap<&str, i32> = [("a", 1), ("b", 2)].into_iter().collect();
        assert_eq!(to_repr(&m), "{'a': 1, 'b': 2}");
        assert_eq!(to_repr(&serde_bytes_like()), "b\"a\\x00'\"");
    }

    struct Bytes;
    impl Serialize for Bytes {
        fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(b"a\0'")
        }
    }
    fn serde_bytes_like() -> Bytes {
        Bytes
    }

    #[derive(serde::Serialize)]
    struct Point {
        x: i32,
        y: f64,
    }
    #[derive(serde::Serialize)]
    enum Shape {
        Dot,
        Circle(f64),
        Rect { w: u8, h: u8 },
    }

    #[test]
    fn structs_print_as_dataclasses_and_variants_by_name() {
        assert_eq!(to_repr(&Point { x: 1, y: 2.5 }), "Point(x=1, y=2.5)");
        assert_eq!(to_repr(&Shape::Dot), "Dot");
        assert_eq!(to_repr(&Shape::Circle(1.0)), "Circle(1.0)");
        assert_eq!(to_repr(&Shape::Rect { w: 1, h: 2 }), "Rect(w=1, h=2)");
    }
}
