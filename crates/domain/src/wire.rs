//! How numbers are read from clients: an integer field takes any JSON number with no
//! fractional part, written `2613` or `2613.0` (or `2.613e3`), as JSON Schema's `integer`
//! does and the older backend did; a fraction (`2613.5`) or a value outside 64-bit range is
//! refused.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// A 64-bit integer read from any integral JSON number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WholeNumber(pub i64);

/// Largest `f64` below 2^63: every integral `f64` up to it converts to `i64` exactly.
const F64_BELOW_2_POW_63: f64 = 9_223_372_036_854_774_784.0;

impl<'de> Deserialize<'de> for WholeNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct WholeVisitor;

        impl Visitor<'_> for WholeVisitor {
            type Value = WholeNumber;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer")
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<WholeNumber, E> {
                Ok(WholeNumber(v))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<WholeNumber, E> {
                i64::try_from(v)
                    .map(WholeNumber)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }

            #[allow(clippy::cast_possible_truncation)]
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<WholeNumber, E> {
                if v.is_finite() && v.fract() == 0.0 && v.abs() <= F64_BELOW_2_POW_63 {
                    // Integral and in range: the conversion is exact.
                    Ok(WholeNumber(v as i64))
                } else {
                    Err(E::invalid_value(de::Unexpected::Float(v), &self))
                }
            }
        }

        deserializer.deserialize_any(WholeVisitor)
    }
}

/// `deserialize_with` for an `Option<i64>` field (pair it with `#[serde(default)]`): null
/// or absent is `None`, any integral number is `Some`.
pub fn option_i64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    Ok(Option::<WholeNumber>::deserialize(deserializer)?.map(|n| n.0))
}

/// `deserialize_with` for an `i64` field.
pub fn i64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    Ok(WholeNumber::deserialize(deserializer)?.0)
}

/// `deserialize_with` for a `Vec<i64>` field.
pub fn vec_i64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<i64>, D::Error> {
    Ok(Vec::<WholeNumber>::deserialize(deserializer)?
        .into_iter()
        .map(|n| n.0)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Body {
        #[serde(default, deserialize_with = "option_i64")]
        n: Option<i64>,
        #[serde(default, deserialize_with = "vec_i64")]
        ids: Vec<i64>,
    }

    fn read(json: &str) -> Result<Body, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn integral_numbers_in_any_notation_are_integers() {
        assert_eq!(read(r#"{"n": 2613}"#).unwrap().n, Some(2613));
        assert_eq!(read(r#"{"n": 2613.0}"#).unwrap().n, Some(2613));
        assert_eq!(read(r#"{"n": 2.613e3}"#).unwrap().n, Some(2613));
        assert_eq!(read(r#"{"n": -0.0}"#).unwrap().n, Some(0));
        assert_eq!(read(r#"{"n": -7.0}"#).unwrap().n, Some(-7));
        assert_eq!(read(r#"{"n": null}"#).unwrap().n, None);
        assert_eq!(read("{}").unwrap().n, None);
        assert_eq!(
            read(r#"{"n": 9223372036854775807}"#).unwrap().n,
            Some(i64::MAX)
        );
        assert_eq!(read(r#"{"ids": [1, 2.0, -3e0]}"#).unwrap().ids, [1, 2, -3]);
    }

    #[test]
    fn fractions_out_of_range_and_non_numbers_are_refused() {
        for bad in [
            r#"{"n": 2613.5}"#,
            r#"{"n": 1e-3}"#,
            r#"{"n": 9223372036854775808}"#,
            r#"{"n": 1e19}"#,
            r#"{"n": -1e19}"#,
            r#"{"n": "7"}"#,
            r#"{"n": true}"#,
            r#"{"ids": [1, 0.5]}"#,
        ] {
            assert!(read(bad).is_err(), "{bad} was accepted");
        }
    }
}
