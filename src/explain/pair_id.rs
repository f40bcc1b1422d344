//! A pair's id, kept as the JSON text it was given in: an integer past 64 bits, or a float
//! written `1.50`, comes back exactly as sent (parsed into a `serde_json::Value`, it would come
//! back as `1.2345678901234568e+29` or `1.5`).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Any JSON value but `null` (no id), as its text.
#[derive(Debug, Clone)]
pub struct PairId(Box<RawValue>);

impl PairId {
    /// The id whose JSON text is `text`; `None` when it is `null`.
    pub fn from_json(text: &str) -> serde_json::Result<Option<Self>> {
        let raw = RawValue::from_string(text.trim().to_string())?;
        Ok((raw.get() != "null").then_some(Self(raw)))
    }

    /// The JSON text, as given.
    pub fn json(&self) -> &str {
        self.0.get()
    }

    /// As a JSON value (an integer past 64 bits becomes a float).
    pub fn value(&self) -> serde_json::Value {
        serde_json::from_str(self.json()).expect("an id is valid JSON")
    }
}

impl From<serde_json::Value> for PairId {
    fn from(value: serde_json::Value) -> Self {
        Self(RawValue::from_string(value.to_string()).expect("a value is valid JSON"))
    }
}

impl PartialEq for PairId {
    fn eq(&self, other: &Self) -> bool {
        self.json() == other.json()
    }
}

impl std::fmt::Display for PairId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.json())
    }
}

impl Serialize for PairId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// Read from JSON text only: a `serde_json::Value` has already lost the text.
impl<'de> Deserialize<'de> for PairId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Box::<RawValue>::deserialize(deserializer).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_text() {
        #[derive(Deserialize, Serialize)]
        struct Holder {
            #[serde(default)]
            id: Option<PairId>,
        }
        for text in [
            "123456789012345678901234567890",
            "1.50",
            "-0",
            "1e400",
            r#""\u00e9""#,
            r#"{"a":[1,2.0]}"#,
        ] {
            let line = format!(r#"{{"id":{text}}}"#);
            let held: Holder = serde_json::from_str(&line).unwrap();
            assert_eq!(serde_json::to_string(&held).unwrap(), line);
        }
        let none: Holder = serde_json::from_str(r#"{"id":null}"#).unwrap();
        assert!(none.id.is_none());
        assert!(PairId::from_json(" null ").unwrap().is_none());
        assert_eq!(
            PairId::from_json("7").unwrap().unwrap(),
            PairId::from(serde_json::json!(7))
        );
    }
}
