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
}
