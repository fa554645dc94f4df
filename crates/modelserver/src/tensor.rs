//! Tensors as the Open Inference Protocol (v2) defines them: a name, a shape, a datatype and
//! row-major data, converted from and to JSON and the binary tensor extension.

use std::fmt;

use serde_json::Value;

/// The v2 datatypes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    /// `BOOL`
    Bool,
    /// `UINT8`
    U8,
    /// `UINT16`
    U16,
    /// `UINT32`
    U32,
    /// `UINT64`
    U64,
    /// `INT8`
    I8,
    /// `INT16`
    I16,
    /// `INT32`
    I32,
    /// `INT64`
    I64,
    /// `FP16`
    F16,
    /// `FP32`
    F32,
    /// `FP64`
    F64,
    /// `BYTES`
    Bytes,
}

impl DataType {
    /// Every datatype, in the order the specification lists them.
    pub const ALL: [DataType; 13] = [
        DataType::Bool,
        DataType::U8,
        DataType::U16,
        DataType::U32,
        DataType::U64,
        DataType::I8,
        DataType::I16,
        DataType::I32,
        DataType::I64,
        DataType::F16,
        DataType::F32,
        DataType::F64,
        DataType::Bytes,
    ];

    /// Parses a datatype name (`FP32`, ...).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }

    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Bool => "BOOL",
            DataType::U8 => "UINT8",
            DataType::U16 => "UINT16",
            DataType::U32 => "UINT32",
            DataType::U64 => "UINT64",
            DataType::I8 => "INT8",
            DataType::I16 => "INT16",
            DataType::I32 => "INT32",
            DataType::I64 => "INT64",
            DataType::F16 => "FP16",
            DataType::F32 => "FP32",
            DataType::F64 => "FP64",
            DataType::Bytes => "BYTES",
        }
    }

    /// Bytes per element in the binary extension (`None` for BYTES, which is length-prefixed).
    pub fn size(self) -> Option<usize> {
        Some(match self {
            DataType::Bool | DataType::U8 | DataType::I8 => 1,
            DataType::U16 | DataType::I16 | DataType::F16 => 2,
            DataType::U32 | DataType::I32 | DataType::F32 => 4,
            DataType::U64 | DataType::I64 | DataType::F64 => 8,
            DataType::Bytes => return None,
        })
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Tensor elements, one vector per datatype.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum TensorData {
    Bool(Vec<bool>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F16(Vec<half::f16>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bytes(Vec<Vec<u8>>),
}

/// Why tensor data could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TensorError {
    /// An element has the wrong JSON type for the datatype.
    #[error(
        "element {index} of input '{name}' is {found}, but datatype {datatype} needs {expected}"
    )]
    ElementType {
        /// Tensor name.
        name: String,
        /// Flat element index.
        index: usize,
        /// What the datatype needs.
        expected: &'static str,
        /// What was found.
        found: String,
        /// The datatype.
        datatype: DataType,
    },
    /// An element does not fit the datatype.
    #[error("element {index} of input '{name}' ({value}) is out of range for datatype {datatype}")]
    OutOfRange {
        /// Tensor name.
        name: String,
        /// Flat element index.
        index: usize,
        /// The value.
        value: String,
        /// The datatype.
        datatype: DataType,
    },
    /// Element count does not match the shape.
    #[error(
        "input '{name}' has shape {shape:?} ({expected} elements) but {found} elements of data"
    )]
    Count {
        /// Tensor name.
        name: String,
        /// The shape.
        shape: Vec<i64>,
        /// Product of the shape.
        expected: usize,
        /// Elements given.
        found: usize,
    },
    /// A dimension is negative.
    #[error("input '{name}' has an invalid shape {shape:?}: dimensions must be non-negative")]
    Shape {
        /// Tensor name.
        name: String,
        /// The shape.
        shape: Vec<i64>,
    },
    /// Binary data length does not match.
    #[error(
        "input '{name}': binary data is {found} bytes, but shape {shape:?} of {datatype} needs {expected}"
    )]
    BinarySize {
        /// Tensor name.
        name: String,
        /// The shape.
        shape: Vec<i64>,
        /// The datatype.
        datatype: DataType,
        /// Needed bytes.
        expected: usize,
        /// Given bytes.
        found: usize,
    },
    /// Malformed BYTES element framing in binary data.
    #[error("input '{name}': malformed BYTES binary data at byte {offset}")]
    BytesFraming {
        /// Tensor name.
        name: String,
        /// Offset where framing broke.
        offset: usize,
    },
}

/// The element count a shape describes.
pub fn element_count(name: &str, shape: &[i64]) -> Result<usize, TensorError> {
    let mut n: usize = 1;
    for &d in shape {
        if d < 0 {
            return Err(TensorError::Shape {
                name: name.into(),
                shape: shape.to_vec(),
            });
        }
        n = n
            .checked_mul(d as usize)
            .ok_or_else(|| TensorError::Shape {
                name: name.into(),
                shape: shape.to_vec(),
            })?;
    }
    Ok(n)
}

fn json_kind(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// Visits the leaves of nested JSON arrays in row-major order.
fn for_each_leaf<'a>(
    v: &'a Value,
    f: &mut impl FnMut(&'a Value) -> Result<(), TensorError>,
) -> Result<(), TensorError> {
    match v {
        Value::Array(items) => items.iter().try_for_each(|x| for_each_leaf(x, f)),
        leaf => f(leaf),
    }
}

impl TensorData {
    /// The datatype of the data.
    pub fn datatype(&self) -> DataType {
        match self {
            TensorData::Bool(_) => DataType::Bool,
            TensorData::U8(_) => DataType::U8,
            TensorData::U16(_) => DataType::U16,
            TensorData::U32(_) => DataType::U32,
            TensorData::U64(_) => DataType::U64,
            TensorData::I8(_) => DataType::I8,
            TensorData::I16(_) => DataType::I16,
            TensorData::I32(_) => DataType::I32,
            TensorData::I64(_) => DataType::I64,
            TensorData::F16(_) => DataType::F16,
            TensorData::F32(_) => DataType::F32,
            TensorData::F64(_) => DataType::F64,
            TensorData::Bytes(_) => DataType::Bytes,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            TensorData::Bool(v) => v.len(),
            TensorData::U8(v) => v.len(),
            TensorData::U16(v) => v.len(),
            TensorData::U32(v) => v.len(),
            TensorData::U64(v) => v.len(),
            TensorData::I8(v) => v.len(),
            TensorData::I16(v) => v.len(),
            TensorData::I32(v) => v.len(),
            TensorData::I64(v) => v.len(),
            TensorData::F16(v) => v.len(),
            TensorData::F32(v) => v.len(),
            TensorData::F64(v) => v.len(),
            TensorData::Bytes(v) => v.len(),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads JSON `data` (nested or flat) as `datatype`, checking every element.
    pub fn from_json(
        name: &str,
        datatype: DataType,
        data: &Value,
    ) -> Result<TensorData, TensorError> {
        macro_rules! ints {
            ($variant:ident, $t:ty) => {{
                let mut out: Vec<$t> = Vec::new();
                let mut i = 0;
                for_each_leaf(data, &mut |v| {
                    let n = match v {
                        Value::Number(n) => n,
                        Value::Bool(b) => {
                            // Booleans as 0/1, as numpy would cast them.
                            out.push(*b as $t);
                            i += 1;
                            return Ok(());
                        }
                        other => {
                            return Err(TensorError::ElementType {
                                name: name.into(),
                                index: i,
                                expected: "an integer",
                                found: json_kind(other),
                                datatype,
                            });
                        }
                    };
                    let x = if let Some(x) = n.as_i64() {
                        <$t>::try_from(x).ok()
                    } else if let Some(x) = n.as_u64() {
                        <$t>::try_from(x).ok()
                    } else {
                        return Err(TensorError::ElementType {
                            name: name.into(),
                            index: i,
                            expected: "an integer",
                            found: json_kind(v),
                            datatype,
                        });
                    };
                    match x {
                        Some(x) => out.push(x),
                        None => {
                            return Err(TensorError::OutOfRange {
                                name: name.into(),
                                index: i,
                                value: n.to_string(),
                                datatype,
                            });
                        }
                    }
                    i += 1;
                    Ok(())
                })?;
                TensorData::$variant(out)
            }};
        }
        macro_rules! floats {
            ($conv:expr) => {{
                let mut out = Vec::new();
                let mut i = 0;
                for_each_leaf(data, &mut |v| {
                    let x = match v {
                        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
                        Value::Bool(b) => *b as u8 as f64,
                        // NaN and infinities, which JSON cannot spell as numbers.
                        Value::String(s)
                            if matches!(
                                s.as_str(),
                                "NaN" | "nan" | "Infinity" | "inf" | "-Infinity" | "-inf"
                            ) =>
                        {
                            s.replace("Infinity", "inf").parse().unwrap_or(f64::NAN)
                        }
                        other => {
                            return Err(TensorError::ElementType {
                                name: name.into(),
                                index: i,
                                expected: "a number",
                                found: json_kind(other),
                                datatype,
                            });
                        }
                    };
                    out.push($conv(x));
                    i += 1;
                    Ok(())
                })?;
                out
            }};
        }
        Ok(match datatype {
            DataType::Bool => {
                let mut out = Vec::new();
                let mut i = 0;
                for_each_leaf(data, &mut |v| {
                    match v {
                        Value::Bool(b) => out.push(*b),
                        Value::Number(n) if n.as_i64() == Some(0) || n.as_i64() == Some(1) => {
                            out.push(n.as_i64() == Some(1))
                        }
                        other => {
                            return Err(TensorError::ElementType {
                                name: name.into(),
                                index: i,
                                expected: "true or false",
                                found: json_kind(other),
                                datatype,
                            });
                        }
                    }
                    i += 1;
                    Ok(())
                })?;
                TensorData::Bool(out)
            }
            DataType::U8 => ints!(U8, u8),
            DataType::U16 => ints!(U16, u16),
            DataType::U32 => ints!(U32, u32),
            DataType::U64 => ints!(U64, u64),
            DataType::I8 => ints!(I8, i8),
            DataType::I16 => ints!(I16, i16),
            DataType::I32 => ints!(I32, i32),
            DataType::I64 => ints!(I64, i64),
            DataType::F16 => TensorData::F16(floats!(half::f16::from_f64)),
            DataType::F32 => TensorData::F32(floats!(|x: f64| x as f32)),
            DataType::F64 => TensorData::F64(floats!(|x: f64| x)),
            DataType::Bytes => {
                let mut out = Vec::new();
                let mut i = 0;
                for_each_leaf(data, &mut |v| {
                    match v {
                        Value::String(s) => out.push(s.as_bytes().to_vec()),
                        other => {
                            return Err(TensorError::ElementType {
                                name: name.into(),
                                index: i,
                                expected: "a string",
                                found: json_kind(other),
                                datatype,
                            });
                        }
                    }
                    i += 1;
                    Ok(())
                })?;
                TensorData::Bytes(out)
            }
        })
    }

    /// Reads the binary tensor extension's raw bytes (little-endian; BYTES elements each
    /// prefixed by a 4-byte little-endian length).
    pub fn from_binary(
        name: &str,
        datatype: DataType,
        shape: &[i64],
        raw: &[u8],
    ) -> Result<TensorData, TensorError> {
        let count = element_count(name, shape)?;
        if let Some(size) = datatype.size() {
            let expected = count.saturating_mul(size);
            if raw.len() != expected {
                return Err(TensorError::BinarySize {
                    name: name.into(),
                    shape: shape.to_vec(),
                    datatype,
                    expected,
                    found: raw.len(),
                });
            }
        }
        macro_rules! le {
            ($variant:ident, $t:ty) => {
                TensorData::$variant(
                    raw.chunks_exact(std::mem::size_of::<$t>())
                        .map(|c| <$t>::from_le_bytes(c.try_into().expect("exact chunk")))
                        .collect(),
                )
            };
        }
        Ok(match datatype {
            DataType::Bool => TensorData::Bool(raw.iter().map(|b| *b != 0).collect()),
            DataType::U8 => TensorData::U8(raw.to_vec()),
            DataType::I8 => TensorData::I8(raw.iter().map(|b| *b as i8).collect()),
            DataType::U16 => le!(U16, u16),
            DataType::U32 => le!(U32, u32),
            DataType::U64 => le!(U64, u64),
            DataType::I16 => le!(I16, i16),
            DataType::I32 => le!(I32, i32),
            DataType::I64 => le!(I64, i64),
            DataType::F16 => TensorData::F16(
                raw.chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]))
                    .collect(),
            ),
            DataType::F32 => le!(F32, f32),
            DataType::F64 => le!(F64, f64),
            DataType::Bytes => {
                let mut out = Vec::with_capacity(count.min(raw.len() / 4));
                let mut at = 0;
                while at < raw.len() {
                    let len_bytes: [u8; 4] = raw
                        .get(at..at + 4)
                        .and_then(|s| s.try_into().ok())
                        .ok_or_else(|| TensorError::BytesFraming {
                            name: name.into(),
                            offset: at,
                        })?;
                    let len = u32::from_le_bytes(len_bytes) as usize;
                    let item =
                        raw.get(at + 4..at + 4 + len)
                            .ok_or_else(|| TensorError::BytesFraming {
                                name: name.into(),
                                offset: at,
                            })?;
                    out.push(item.to_vec());
                    at += 4 + len;
                }
                if out.len() != count {
                    return Err(TensorError::Count {
                        name: name.into(),
                        shape: shape.to_vec(),
                        expected: count,
                        found: out.len(),
                    });
                }
                TensorData::Bytes(out)
            }
        })
    }

    /// The data as JSON (a flat array).
    pub fn to_json(&self) -> Value {
        fn float(x: f64) -> Value {
            serde_json::Number::from_f64(x).map_or_else(
                || {
                    Value::String(if x.is_nan() {
                        "NaN".into()
                    } else if x > 0.0 {
                        "Infinity".into()
                    } else {
                        "-Infinity".into()
                    })
                },
                Value::Number,
            )
        }
        match self {
            TensorData::Bool(v) => v.iter().map(|x| Value::Bool(*x)).collect(),
            TensorData::U8(v) => v.iter().map(|x| Value::from(*x)).collect(),
            TensorData::U16(v) => v.iter().map(|x| Value::from(*x)).collect(),
            TensorData::U32(v) => v.iter().map(|x| Value::from(*x)).collect(),
            TensorData::U64(v) => v.iter().map(|x| Value::from(*x)).collect(),
            TensorData::I8(v) => v.iter().map(|x| Value::from(*x)).collect(),
            TensorData::I16(v) => v.iter().map(|x| Value::from(*x)).collect(),
            TensorData::I32(v) => v.iter().map(|x| Value::from(*x)).collect(),
            TensorData::I64(v) => v.iter().map(|x| Value::from(*x)).collect(),
            TensorData::F16(v) => v.iter().map(|x| float(x.to_f64())).collect(),
            TensorData::F32(v) => v.iter().map(|x| float(*x as f64)).collect(),
            TensorData::F64(v) => v.iter().map(|x| float(*x)).collect(),
            TensorData::Bytes(v) => v
                .iter()
                .map(|x| Value::String(String::from_utf8_lossy(x).into_owned()))
                .collect(),
        }
    }

    /// The data in the binary tensor extension's layout.
    pub fn to_binary(&self) -> Vec<u8> {
        macro_rules! le {
            ($v:expr) => {
                $v.iter().flat_map(|x| x.to_le_bytes()).collect()
            };
        }
        match self {
            TensorData::Bool(v) => v.iter().map(|b| *b as u8).collect(),
            TensorData::U8(v) => v.clone(),
            TensorData::I8(v) => v.iter().map(|x| *x as u8).collect(),
            TensorData::U16(v) => le!(v),
            TensorData::U32(v) => le!(v),
            TensorData::U64(v) => le!(v),
            TensorData::I16(v) => le!(v),
            TensorData::I32(v) => le!(v),
            TensorData::I64(v) => le!(v),
            TensorData::F16(v) => le!(v),
            TensorData::F32(v) => le!(v),
            TensorData::F64(v) => le!(v),
            TensorData::Bytes(v) => {
                let mut out = Vec::with_capacity(v.iter().map(|x| x.len() + 4).sum());
                for x in v {
                    out.extend_from_slice(&(x.len() as u32).to_le_bytes());
                    out.extend_from_slice(x);
                }
                out
            }
        }
    }

    /// Numeric data as `f64` (what scikit-learn models consume); `None` for BYTES.
    pub fn to_f64(&self) -> Option<Vec<f64>> {
        Some(match self {
            TensorData::Bool(v) => v.iter().map(|x| *x as u8 as f64).collect(),
            TensorData::U8(v) => v.iter().map(|x| *x as f64).collect(),
            TensorData::U16(v) => v.iter().map(|x| *x as f64).collect(),
            TensorData::U32(v) => v.iter().map(|x| *x as f64).collect(),
            TensorData::U64(v) => v.iter().map(|x| *x as f64).collect(),
            TensorData::I8(v) => v.iter().map(|x| *x as f64).collect(),
            TensorData::I16(v) => v.iter().map(|x| *x as f64).collect(),
            TensorData::I32(v) => v.iter().map(|x| *x as f64).collect(),
            TensorData::I64(v) => v.iter().map(|x| *x as f64).collect(),
            TensorData::F16(v) => v.iter().map(|x| x.to_f64()).collect(),
            TensorData::F32(v) => v.iter().map(|x| *x as f64).collect(),
            TensorData::F64(v) => v.clone(),
            TensorData::Bytes(_) => return None,
        })
    }
}

/// A named tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Name.
    pub name: String,
    /// Shape.
    pub shape: Vec<i64>,
    /// Elements, row-major.
    pub data: TensorData,
    /// Parameters as sent (or to send).
    pub parameters: serde_json::Map<String, Value>,
}

impl Tensor {
    /// The datatype.
    pub fn datatype(&self) -> DataType {
        self.data.datatype()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_and_flat_data_read_the_same() {
        let nested = TensorData::from_json("x", DataType::F32, &json!([[1, 2.5], [3, 4]])).unwrap();
        let flat = TensorData::from_json("x", DataType::F32, &json!([1, 2.5, 3, 4])).unwrap();
        assert_eq!(nested, flat);
        assert_eq!(nested, TensorData::F32(vec![1.0, 2.5, 3.0, 4.0]));
    }

    #[test]
    fn every_datatype_round_trips_through_json_and_binary() {
        let cases = [
            (DataType::Bool, json!([true, false])),
            (DataType::U8, json!([0, 255])),
            (DataType::U16, json!([0, 65535])),
            (DataType::U32, json!([0, 4294967295u64])),
            (DataType::U64, json!([0, 18446744073709551615u64])),
            (DataType::I8, json!([-128, 127])),
            (DataType::I16, json!([-32768, 32767])),
            (DataType::I32, json!([-2147483648i64, 2147483647])),
            (
                DataType::I64,
                json!([-9223372036854775808i64, 9223372036854775807i64]),
            ),
            (DataType::F16, json!([0.5, -2.0])),
            (DataType::F32, json!([0.25, -1.5])),
            (DataType::F64, json!([0.1, -1e300])),
            (DataType::Bytes, json!(["ab", ""])),
        ];
        for (dt, data) in cases {
            let t = TensorData::from_json("x", dt, &data).unwrap();
            assert_eq!(t.datatype(), dt);
            assert_eq!(t.to_json(), data, "{dt} JSON round trip");
            let back = TensorData::from_binary("x", dt, &[2], &t.to_binary()).unwrap();
            assert_eq!(back, t, "{dt} binary round trip");
        }
    }

    #[test]
    fn wrong_elements_are_named() {
        let e = TensorData::from_json("input-0", DataType::I64, &json!([[1, 2], [3, "x"]]))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "element 3 of input 'input-0' is the string \"x\", but datatype INT64 needs an integer"
        );
        let e = TensorData::from_json("input-0", DataType::U8, &json!([256])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "element 0 of input 'input-0' (256) is out of range for datatype UINT8"
        );
        let e = TensorData::from_json("input-0", DataType::I32, &json!([1.5])).unwrap_err();
        assert!(e.to_string().contains("needs an integer"), "{e}");
        let e = TensorData::from_binary("b", DataType::F32, &[3], &[0; 8]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "input 'b': binary data is 8 bytes, but shape [3] of FP32 needs 12"
        );
        let e = TensorData::from_binary("b", DataType::Bytes, &[1], &[9, 0, 0, 0, 1]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "input 'b': malformed BYTES binary data at byte 0"
        );
    }
}
