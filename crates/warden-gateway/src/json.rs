//! JSON parsing that also reports duplicate object keys. `serde_json::Value` keeps the
//! last of duplicate keys silently; a consumer that keeps the first would then see a
//! different document than the gateway checked. Bytes that parse without duplicates can
//! be forwarded as they are once the checks are done, instead of being re-serialised.

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::cell::Cell;
use std::fmt;

/// A parsed document and whether some object in it repeated a key.
#[derive(Debug)]
pub struct Parsed {
    /// The document (duplicate keys: the last one wins, as with `serde_json::from_slice`).
    pub value: Value,
    /// Some object held the same key twice.
    pub duplicate_keys: bool,
}

/// Parse `raw` as `serde_json::from_slice::<Value>` does, noting duplicate keys.
pub fn parse(raw: &[u8]) -> Result<Parsed, serde_json::Error> {
    let dup = Cell::new(false);
    let mut de = serde_json::Deserializer::from_slice(raw);
    let value = Seed(&dup).deserialize(&mut de)?;
    de.end()?;
    Ok(Parsed {
        value,
        duplicate_keys: dup.get(),
    })
}

/// Field lookups that do not hash small objects. `serde_json`'s map here is an
/// `IndexMap` with std's randomised SipHash, so every `get` hashes its key, even to
/// find nothing; request and response objects have a handful of keys, which a scan
/// compares faster. Same answers as `get`/`get_mut` (a map's keys are unique); objects
/// with more than [`Fields::SCAN_MAX`] keys are looked up by hash as before.
pub trait Fields {
    /// Most keys an object may have to be scanned instead of hashed.
    const SCAN_MAX: usize = 16;
    /// The value of `key`, if this is an object holding it.
    fn field(&self, key: &str) -> Option<&Value>;
    /// The value of `key`, mutably.
    fn field_mut(&mut self, key: &str) -> Option<&mut Value>;
}

impl Fields for Map<String, Value> {
    fn field(&self, key: &str) -> Option<&Value> {
        if self.len() > Self::SCAN_MAX {
            return self.get(key);
        }
        self.iter().find(|(k, _)| k.as_str() == key).map(|(_, v)| v)
    }

    fn field_mut(&mut self, key: &str) -> Option<&mut Value> {
        if self.len() > Self::SCAN_MAX {
            return self.get_mut(key);
        }
        self.iter_mut()
            .find(|(k, _)| k.as_str() == key)
            .map(|(_, v)| v)
    }
}

impl Fields for Value {
    fn field(&self, key: &str) -> Option<&Value> {
        self.as_object()?.field(key)
    }

    fn field_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.as_object_mut()?.field_mut(key)
    }
}

/// One step of a path into a JSON document: an object's member or an array's element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'a> {
    /// The member named so.
    Key(&'a str),
    /// The element at this position.
    Index(usize),
}

/// Where, in the bytes of a JSON document that `serde_json` accepted, the string at
/// `path` is: the byte range of its token, quotes included. `None` when the path leads
/// elsewhere or to something other than a string, and whenever the bytes alone could
/// disagree with the parsed document about which token that is: a key on the way that
/// appears twice in its object (the parse keeps the last), or any key of an object on
/// the way written with an escape (`"c\u006fntent"` is `content` to the parse).
///
/// Only for bytes that parsed: the scan skips values by counting brackets outside
/// strings, which is right for valid JSON and merely gives up (or finds no string)
/// otherwise. Every access is bounded; it never panics.
pub fn string_span(raw: &[u8], path: &[Step<'_>]) -> Option<(usize, usize)> {
    let mut s = Scan { b: raw, i: 0 };
    s.ws();
    for step in path {
        match *step {
            Step::Key(k) => {
                s.eat(b'{')?;
                let mut found = None;
                s.ws();
                if s.peek()? == b'}' {
                    return None;
                }
                loop {
                    s.ws();
                    let (ks, ke) = s.string()?;
                    let key = raw.get(ks + 1..ke - 1)?;
                    if key.contains(&b'\\') {
                        return None;
                    }
                    s.ws();
                    s.eat(b':')?;
                    s.ws();
                    if key == k.as_bytes() {
                        if found.is_some() {
                            return None;
                        }
                        found = Some(s.i);
                    }
                    s.value()?;
                    s.ws();
                    match s.next()? {
                        b',' => {}
                        b'}' => break,
                        _ => return None,
                    }
                }
                s.i = found?;
            }
            Step::Index(n) => {
                s.eat(b'[')?;
                for _ in 0..n {
                    s.ws();
                    s.value()?;
                    s.ws();
                    s.eat(b',')?;
                }
                s.ws();
            }
        }
    }
    if s.peek()? != b'"' {
        return None;
    }
    s.string()
}

/// A cursor over JSON bytes for [`string_span`].
struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scan<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }
    fn eat(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }
    /// A string token starting here: its range, quotes included.
    fn string(&mut self) -> Option<(usize, usize)> {
        let start = self.i;
        self.eat(b'"')?;
        loop {
            match self.next()? {
                b'"' => return Some((start, self.i)),
                b'\\' => {
                    self.next()?;
                }
                _ => {}
            }
        }
    }
    /// Skips the value starting here (valid JSON: brackets balance outside strings).
    fn value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth = depth.checked_sub(1)?;
                            if depth == 0 {
                                self.i += 1;
                                return Some(());
                            }
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
            }
            _ => {
                // A number or literal: up to the next delimiter.
                let start = self.i;
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                ) {
                    self.i += 1;
                }
                (self.i > start).then_some(())
            }
        }
    }
}

#[derive(Clone, Copy)]
struct Seed<'a>(&'a Cell<bool>);

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(x) = seq.next_element_seed(self)? {
            v.push(x);
        }
        Ok(Value::Array(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut m = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            let v = map.next_value_seed(self)?;
            if m.insert(k, v).is_some() {
                self.0.set(true);
            }
        }
        Ok(Value::Object(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_answer_as_get_does() {
        // Objects on both sides of the scan limit, keys present and absent, and keys that
        // share prefixes.
        for n in [0usize, 1, 5, Map::<String, Value>::SCAN_MAX, 17, 40] {
            let mut o = Map::new();
            for i in 0..n {
                o.insert(format!("k{i}"), Value::from(i));
            }
            let mut v = Value::Object(o.clone());
            for i in 0..n + 3 {
                for key in [
                    format!("k{i}"),
                    format!("k{i}x"),
                    format!("k{i}")[..1].to_owned(),
                ] {
                    assert_eq!(o.field(&key), o.get(&key), "{n} {key}");
                    assert_eq!(v.field(&key), v.get(&key), "{n} {key}");
                    let want = o.get(&key).cloned();
                    assert_eq!(o.field_mut(&key).map(|x| x.clone()), want);
                    if let Some(x) = v.field_mut(&key) {
                        *x = Value::Null;
                        assert_eq!(v.get(&key), Some(&Value::Null));
                    }
                }
            }
        }
        assert_eq!(Value::from(3).field("k0"), None);
    }

    #[test]
    fn same_value_as_serde_json_and_duplicates_noticed() {
        for doc in [
            r#"{"a":1,"b":[true,null,-3,2.5,"x\u00e9\n"],"c":{"d":{}},"e":18446744073709551615}"#,
            r#"[1,{"k":"v"},[]]"#,
            r#""s""#,
            "1e400",
            "  {\"a\" : 1 }  ",
        ] {
            let want: Result<Value, _> = serde_json::from_slice(doc.as_bytes());
            match parse(doc.as_bytes()) {
                Ok(p) => {
                    assert_eq!(Some(p.value), want.ok(), "{doc}");
                    assert!(!p.duplicate_keys, "{doc}");
                }
                Err(_) => assert!(want.is_err(), "{doc}"),
            }
        }
        for doc in [
            r#"{"a":1,"a":2}"#,
            r#"{"x":[{"m":1,"n":2,"m":3}]}"#,
            r#"{"o":{"k":{},"k":{}}}"#,
        ] {
            let p = parse(doc.as_bytes()).unwrap();
            assert!(p.duplicate_keys, "{doc}");
            assert_eq!(p.value, serde_json::from_str::<Value>(doc).unwrap());
        }
        for bad in ["{", "{\"a\":1} x", "[1,]", "{\"a\" 1}", "\"\\ud800\""] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn string_span_finds_the_token_the_parse_keeps_or_nothing() {
        let path = [
            Step::Key("choices"),
            Step::Index(0),
            Step::Key("delta"),
            Step::Key("content"),
        ];
        let span = |doc: &str| -> Option<String> {
            let (a, b) = string_span(doc.as_bytes(), &path)?;
            Some(doc[a..b].to_owned())
        };
        // Found, whatever surrounds it: other members before and after, nested values
        // with brackets and quotes inside strings, whitespace anywhere.
        for (doc, want) in [
            (r#"{"choices":[{"delta":{"content":"hi"}}]}"#, r#""hi""#),
            (
                r#" { "id" : "x]}" , "choices" : [ { "index" : 0 , "delta" : { "role" : "assistant" , "content" : "a\"b\\" } , "finish_reason" : null } ] , "n" : -1.5e3 } "#,
                r#""a\"b\\""#,
            ),
            (
                r#"{"m":{"x":[1,{"y":"}]"}],"z":true},"choices":[{"logprobs":{"content":[{"t":"]"}]},"delta":{"content":"\u00e9"}}],"u":null}"#,
                r#""\u00e9""#,
            ),
        ] {
            assert_eq!(span(doc).as_deref(), Some(want), "{doc}");
            // And it is what the parse holds at that path.
            let v: Value = serde_json::from_str(doc).unwrap();
            let tok: String = serde_json::from_str(want).unwrap();
            assert_eq!(
                v.pointer("/choices/0/delta/content"),
                Some(&Value::String(tok))
            );
        }
        // Nothing: duplicates on the way (the parse keeps the last), escaped keys in an
        // object on the way (they may name the same member), other shapes or positions.
        for doc in [
            r#"{"choices":[{"delta":{"content":"a","content":"b"}}]}"#,
            r#"{"choices":[{"delta":{"content":"a"}}],"choices":[{"delta":{"content":"b"}}]}"#,
            r#"{"choices":[{"delta":{"content":"a","c\u006fntent":"b"}}]}"#,
            r#"{"choices":[{"d\u0065lta":{"content":"b"},"delta":{"content":"a"}}]}"#,
            r#"{"choices":[{"delta":{"content":1}}]}"#,
            r#"{"choices":[{"delta":{"content":null}}]}"#,
            r#"{"choices":[{"delta":{}}]}"#,
            r#"{"choices":[]}"#,
            r#"{"choices":{"0":{"delta":{"content":"a"}}}}"#,
            r#"[{"choices":[{"delta":{"content":"a"}}]}]"#,
            r#""choices""#,
            "",
            "{",
            r#"{"choices":[{"delta":{"content":"a"#,
        ] {
            assert_eq!(span(doc), None, "{doc}");
        }
        // The second element of an array.
        let doc = r#"{"a":[{"s":"x"},{"s":"y, z"}]}"#;
        let (a, b) = string_span(
            doc.as_bytes(),
            &[Step::Key("a"), Step::Index(1), Step::Key("s")],
        )
        .unwrap();
        assert_eq!(&doc[a..b], r#""y, z""#);
        assert_eq!(
            string_span(
                doc.as_bytes(),
                &[Step::Key("a"), Step::Index(2), Step::Key("s")]
            ),
            None
        );
    }
}
