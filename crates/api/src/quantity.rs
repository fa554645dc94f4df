//! Kubernetes resource quantities (`500m`, `2Gi`, `1e3`), parsed exactly.
//!
//! KServe compares quantities (memory targets must be at least 1Mi), the HPA renders them in their
//! canonical form, and the autoscaler divides by them. Values are kept as an integer count of
//! nano-units so that `0.1Ki`, `1500m` and `10Gi` all compare and print exactly.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The regular expression Kubernetes names in its own parse error.
pub const QUANTITY_PATTERN: &str = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$";

/// How a quantity was written; decides how it prints in canonical form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantityFormat {
    /// Powers of 1024: `Ki`, `Mi`, `Gi`, ...
    BinarySi,
    /// Powers of 1000: `m`, `k`, `M`, ...
    DecimalSi,
    /// Scientific: `1e3`.
    DecimalExponent,
}

/// A parsed Kubernetes quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    /// The value in units of 10^-9 (rounded up, as Kubernetes rounds sub-nano values).
    nanos: i128,
    format: QuantityFormat,
}

/// A string that is not a Kubernetes quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("quantities must match the regular expression '{QUANTITY_PATTERN}'")]
pub struct QuantityError;

const NANO: i128 = 1_000_000_000;

impl Quantity {
    /// Builds a quantity from a whole number of units.
    pub fn from_units(units: i64) -> Self {
        Quantity {
            nanos: units as i128 * NANO,
            format: QuantityFormat::DecimalSi,
        }
    }

    /// Builds a quantity from thousandths of a unit (what Kubernetes calls milli-values).
    pub fn from_millis(millis: i64) -> Self {
        Quantity {
            nanos: millis as i128 * 1_000_000,
            format: QuantityFormat::DecimalSi,
        }
    }

    /// The value as a float, for arithmetic where exactness no longer matters.
    pub fn as_f64(&self) -> f64 {
        self.nanos as f64 / NANO as f64
    }

    /// The value in thousandths, rounded up like Kubernetes' `MilliValue`.
    pub fn millis(&self) -> i128 {
        div_ceil(self.nanos, 1_000_000)
    }

    /// The value in whole units, rounded up like Kubernetes' `Value`.
    pub fn units(&self) -> i128 {
        div_ceil(self.nanos, NANO)
    }

    /// How the quantity was written.
    pub fn format(&self) -> QuantityFormat {
        self.format
    }

    /// The canonical string Kubernetes prints for this quantity (`1024Mi` → `1Gi`, `0.5` → `500m`).
    pub fn canonical(&self) -> String {
        let n = self.nanos;
        if n == 0 {
            return "0".to_string();
        }
        let mut format = self.format;
        if format == QuantityFormat::BinarySi && (n.abs() < 1024 * NANO || n % NANO != 0) {
            format = QuantityFormat::DecimalSi;
        }
        match format {
            QuantityFormat::BinarySi => {
                const SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
                let mut units = n / NANO;
                let mut i = 0;
                while i < 6 && units % 1024 == 0 {
                    units /= 1024;
                    i += 1;
                }
                format!("{units}{}", SUFFIXES[i])
            }
            QuantityFormat::DecimalSi | QuantityFormat::DecimalExponent => {
                // Largest exponent (a multiple of 3, from -9) that leaves an integer mantissa.
                let mut exp = -9i32;
                let mut mantissa = n;
                while exp < 18 && mantissa % 1000 == 0 {
                    mantissa /= 1000;
                    exp += 3;
                }
                if format == QuantityFormat::DecimalExponent {
                    if exp == 0 {
                        format!("{mantissa}")
                    } else {
                        format!("{mantissa}e{exp}")
                    }
                } else {
                    let suffix = match exp {
                        -9 => "n",
                        -6 => "u",
                        -3 => "m",
                        0 => "",
                        3 => "k",
                        6 => "M",
                        9 => "G",
                        12 => "T",
                        15 => "P",
                        _ => "E",
                    };
                    format!("{mantissa}{suffix}")
                }
            }
        }
    }
}

fn div_ceil(a: i128, b: i128) -> i128 {
    let q = a / b;
    if a % b != 0 && (a > 0) == (b > 0) {
        q + 1
    } else {
        q
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bytes = s.as_bytes();
        let mut i = 0;
        let negative = match bytes.first() {
            Some(b'-') => {
                i = 1;
                true
            }
            Some(b'+') => {
                i = 1;
                false
            }
            _ => false,
        };
        let num_start = i;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        let number = &s[num_start..i];
        let suffix = &s[i..];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(QuantityError);
        }
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));

        // Scale: value = digits * 10^dec_exp * 1024^bin_exp.
        let (format, dec_exp, bin_exp): (QuantityFormat, i32, u32) = match suffix {
            "" => (QuantityFormat::DecimalSi, 0, 0),
            "n" => (QuantityFormat::DecimalSi, -9, 0),
            "u" => (QuantityFormat::DecimalSi, -6, 0),
            "m" => (QuantityFormat::DecimalSi, -3, 0),
            "k" => (QuantityFormat::DecimalSi, 3, 0),
            "M" => (QuantityFormat::DecimalSi, 6, 0),
            "G" => (QuantityFormat::DecimalSi, 9, 0),
            "T" => (QuantityFormat::DecimalSi, 12, 0),
            "P" => (QuantityFormat::DecimalSi, 15, 0),
            "E" => (QuantityFormat::DecimalSi, 18, 0),
            "Ki" => (QuantityFormat::BinarySi, 0, 1),
            "Mi" => (QuantityFormat::BinarySi, 0, 2),
            "Gi" => (QuantityFormat::BinarySi, 0, 3),
            "Ti" => (QuantityFormat::BinarySi, 0, 4),
            "Pi" => (QuantityFormat::BinarySi, 0, 5),
            "Ei" => (QuantityFormat::BinarySi, 0, 6),
            other => {
                let rest = other.strip_prefix(['e', 'E']).ok_or(QuantityError)?;
                let exp: i32 = rest.parse().map_err(|_| QuantityError)?;
                if rest.is_empty() || !(-30..=30).contains(&exp) {
                    return Err(QuantityError);
                }
                (QuantityFormat::DecimalExponent, exp, 0)
            }
        };

        // digits as an integer, with the decimal point moved into dec_exp.
        let digits = format!("{int_part}{frac_part}");
        let digits = digits.trim_start_matches('0');
        if digits.len() > 30 {
            return Err(QuantityError);
        }
        let mantissa: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().map_err(|_| QuantityError)?
        };
        let exp10 = dec_exp - frac_part.len() as i32 + 9; // to nano-units
        let mut value = mantissa
            .checked_mul(1024i128.pow(bin_exp))
            .ok_or(QuantityError)?;
        if exp10 >= 0 {
            value = value
                .checked_mul(10i128.checked_pow(exp10 as u32).ok_or(QuantityError)?)
                .ok_or(QuantityError)?;
        } else {
            let div = 10i128.checked_pow((-exp10) as u32).ok_or(QuantityError)?;
            value = div_ceil(value, div);
        }
        Ok(Quantity {
            nanos: if negative { -value } else { value },
            format,
        })
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

/// A metric target value that remembers exactly what the user typed.
///
/// KServe keeps the original JSON text of `value` / `averageValue` (`"100.9"` stays `"100.9"`,
/// `50` becomes `"50"`) and copies it into KEDA trigger metadata; the parsed quantity is kept
/// beside it for comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricQuantity {
    original: String,
    quantity: Quantity,
    typed_as_integer: bool,
}

impl MetricQuantity {
    /// Parses a value as if the user had written it as a YAML string.
    pub fn parse(original: &str) -> Result<Self, QuantityError> {
        Ok(MetricQuantity {
            quantity: original.parse()?,
            original: original.to_string(),
            typed_as_integer: false,
        })
    }

    /// A value the user wrote as a bare integer.
    pub fn from_integer(v: i64) -> Self {
        MetricQuantity {
            original: v.to_string(),
            quantity: Quantity::from_units(v),
            typed_as_integer: true,
        }
    }

    /// The text exactly as written (integers in decimal).
    pub fn original(&self) -> &str {
        &self.original
    }

    /// The parsed value.
    pub fn quantity(&self) -> Quantity {
        self.quantity
    }
}

impl Serialize for MetricQuantity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match (self.typed_as_integer, self.original.parse::<i64>()) {
            (true, Ok(v)) => s.serialize_i64(v),
            _ => s.serialize_str(&self.original),
        }
    }
}

impl<'de> Deserialize<'de> for MetricQuantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = MetricQuantity;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a quantity as a string or an integer")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<MetricQuantity, E> {
                MetricQuantity::parse(v).map_err(|e| E::custom(format!("invalid value {v:?}: {e}")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<MetricQuantity, E> {
                Ok(MetricQuantity::from_integer(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<MetricQuantity, E> {
                i64::try_from(v)
                    .map(MetricQuantity::from_integer)
                    .map_err(|_| E::custom("value out of range"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<MetricQuantity, E> {
                Err(E::custom(format!(
                    "value must be string or integer (write \"{v}\" in quotes to keep the decimal)"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

/// A resource quantity as written in `resources.requests` / `limits`: a string, an integer or a
/// float in the YAML (Kubernetes' int-or-string), validated on read and printed as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceQuantity(MetricQuantity);

impl ResourceQuantity {
    /// Parses `s` as a quantity.
    pub fn parse(s: &str) -> Result<Self, QuantityError> {
        MetricQuantity::parse(s).map(ResourceQuantity)
    }
    /// The text as written.
    pub fn original(&self) -> &str {
        self.0.original()
    }
    /// The parsed value.
    pub fn quantity(&self) -> Quantity {
        self.0.quantity()
    }
}

impl Serialize for ResourceQuantity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.original())
    }
}

impl<'de> Deserialize<'de> for ResourceQuantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ResourceQuantity;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a quantity such as \"500m\" or \"2Gi\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ResourceQuantity, E> {
                ResourceQuantity::parse(v)
                    .map_err(|e| E::custom(format!("invalid value {v:?}: {e}")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ResourceQuantity, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ResourceQuantity, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ResourceQuantity, E> {
                self.visit_str(&v.to_string())
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        s.parse().unwrap_or_else(|_| panic!("{s} should parse"))
    }

    #[test]
    fn canonical_forms_match_kubernetes() {
        let cases = [
            ("10Gi", "10Gi"),
            ("1024Mi", "1Gi"),
            ("1536Mi", "1536Mi"),
            ("512Ki", "512Ki"),
            ("100.9", "100900m"),
            ("0.5", "500m"),
            ("1.5", "1500m"),
            ("1000", "1k"),
            ("1500", "1500"),
            ("150m", "150m"),
            ("1e3", "1e3"),
            ("0", "0"),
            ("0.1Ki", "102400m"),
            ("2", "2"),
            ("-3k", "-3k"),
        ];
        for (input, want) in cases {
            assert_eq!(q(input).canonical(), want, "canonical form of {input}");
        }
    }

    #[test]
    fn comparisons_are_exact_across_suffixes() {
        assert!(q("1Mi") > q("1M"));
        assert_eq!(q("1024Ki"), q("1Mi"));
        assert!(q("512Ki") < q("1Mi"));
        assert_eq!(q("1.5").millis(), 1500);
        assert_eq!(q("1n").millis(), 1, "milli-values round up");
        assert_eq!(q("2Gi").units(), 2 * 1024 * 1024 * 1024);
    }

    #[test]
    fn rejects_what_kubernetes_rejects() {
        for bad in [
            "", "abc", "1.2.3", "10Gb", "1..", "Mi", "1e", "--1", "5 Gi", "1x",
        ] {
            assert!(
                bad.parse::<Quantity>().is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn metric_quantity_keeps_the_original_text() {
        let from_str: MetricQuantity = serde_json::from_str("\"100.9\"").unwrap();
        assert_eq!(from_str.original(), "100.9");
        let from_int: MetricQuantity = serde_json::from_str("50").unwrap();
        assert_eq!(from_int.original(), "50");
        assert_eq!(serde_json::to_string(&from_int).unwrap(), "50");
        assert_eq!(serde_json::to_string(&from_str).unwrap(), "\"100.9\"");
        let err = serde_json::from_str::<MetricQuantity>("1.5")
            .unwrap_err()
            .to_string();
        assert!(err.contains("value must be string or integer"), "{err}");
        let err = serde_json::from_str::<MetricQuantity>("\"ten\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("quantities must match"), "{err}");
    }
}
