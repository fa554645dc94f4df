//! numpy dtypes, arrays and scalars as they appear in pickles.
//!
//! Three array encodings are understood:
//! * joblib: `joblib.numpy_pickle.NumpyArrayWrapper` whose data the VM read inline;
//! * pickle protocols 2-4 (and object arrays in 5): `numpy._core.multiarray._reconstruct`
//!   + `BUILD (version, shape, dtype, is_fortran, rawdata bytes | list)`;
//! * pickle protocol 5: `numpy._core.numeric._frombuffer(buffer, dtype, shape, order)`.

use crate::pickle::{Node, Value, View};

/// Upper bound on the number of elements of one array (guards allocations).
const MAX_ELEMENTS: usize = 1 << 34;

/// A numpy dtype (the subset needed here).
#[derive(Debug, Clone, PartialEq)]
pub struct Dtype {
    /// numpy kind character: `f`, `i`, `u`, `b`, `O`, `U`, `S`, `V`.
    pub kind: char,
    /// Bytes per element.
    pub itemsize: usize,
    /// Big-endian data.
    pub big_endian: bool,
    /// Fields of a structured dtype: (name, dtype, offset).
    pub fields: Vec<(String, Dtype, usize)>,
}

impl Dtype {
    /// True for object dtypes (or structured dtypes containing objects).
    pub fn has_object(&self) -> bool {
        self.kind == 'O' || self.fields.iter().any(|(_, d, _)| d.has_object())
    }

    /// Parses a pickled `numpy.dtype` object.
    pub fn parse(v: View<'_>, value: Value, depth: usize) -> Result<Dtype, String> {
        if depth > 1 {
            return Err("dtype nested too deeply".into());
        }
        let obj = v.object(value).ok_or("dtype is not an object")?;
        match v.global(obj.class) {
            Some((_, "dtype")) => {}
            Some((m, n)) => return Err(format!("expected numpy.dtype, found {m}.{n}")),
            None => return Err("expected numpy.dtype".into()),
        }
        let spec = obj
            .args
            .first()
            .and_then(|a| v.str(*a))
            .ok_or("dtype without a type string")?;
        let mut chars = spec.chars();
        let kind = chars.next().ok_or("empty dtype string")?;
        let digits: String = chars.collect();
        let n: usize = if digits.is_empty() {
            0
        } else {
            digits.parse().map_err(|_| format!("bad dtype {spec:?}"))?
        };
        let mut itemsize = match kind {
            'f' | 'i' | 'u' | 'b' | 'S' | 'V' => n,
            'O' => 8,
            'U' => n.checked_mul(4).ok_or("dtype too large")?,
            _ => return Err(format!("unsupported dtype {spec:?}")),
        };
        let mut big_endian = false;
        let mut fields = Vec::new();
        if let Some(state) = obj.state
            && let Some(st) = v.seq(state)
        {
            if let Some(e) = st.get(1).and_then(|e| v.str(*e)) {
                big_endian = e == ">";
            }
            if let Some(size) = st.get(5).and_then(|s| v.int(*s))
                && size > 0
            {
                itemsize = usize::try_from(size).map_err(|_| "bad itemsize")?;
            }
            if let (Some(names), Some(fdict)) = (st.get(3), st.get(4))
                && let Some(names) = v.seq(*names)
            {
                if depth > 0 {
                    return Err("nested structured dtypes are not supported".into());
                }
                if names.len() > 256 {
                    return Err("structured dtype with too many fields".into());
                }
                for name in names {
                    let name_s = v.str(*name).ok_or("field name is not a string")?;
                    let entry = v
                        .get(*fdict, name_s)
                        .and_then(|e| v.seq(e))
                        .ok_or("structured dtype field missing")?;
                    let fd = Dtype::parse(v, *entry.first().ok_or("bad field")?, depth + 1)?;
                    let off = entry
                        .get(1)
                        .and_then(|o| v.int(*o))
                        .and_then(|o| usize::try_from(o).ok())
                        .ok_or("bad field offset")?;
                    if off
                        .checked_add(fd.itemsize)
                        .is_none_or(|end| end > itemsize)
                    {
                        return Err("structured field out of bounds".into());
                    }
                    fields.push((name_s.to_owned(), fd, off));
                }
            }
        }
        match (kind, itemsize) {
            ('f', 2 | 4 | 8) | ('i' | 'u', 1 | 2 | 4 | 8) | ('b', 1) | ('O', 8) => {}
            ('U' | 'S' | 'V', _) => {}
            _ => return Err(format!("unsupported dtype {spec:?} (itemsize {itemsize})")),
        }
        Ok(Dtype {
            kind,
            itemsize,
            big_endian,
            fields,
        })
    }

    /// Decodes one element at `b` (exactly `itemsize` bytes) as a float.
    pub fn read_f64(&self, b: &[u8]) -> Option<f64> {
        let mut a = [0u8; 8];
        let n = self.itemsize;
        if b.len() < n || n > 8 {
            return None;
        }
        if self.big_endian {
            for i in 0..n {
                a[i] = b[n - 1 - i];
            }
        } else {
            a[..n].copy_from_slice(&b[..n]);
        }
        Some(match (self.kind, n) {
            ('f', 8) => f64::from_le_bytes(a),
            ('f', 4) => f64::from(f32::from_le_bytes([a[0], a[1], a[2], a[3]])),
            ('f', 2) => f16_to_f64(u16::from_le_bytes([a[0], a[1]])),
            ('i', _) | ('u', _) | ('b', _) => self.read_i64(b)? as f64,
            _ => return None,
        })
    }

    /// Decodes one integer/bool element at `b`.
    pub fn read_i64(&self, b: &[u8]) -> Option<i64> {
        let n = self.itemsize;
        if b.len() < n || n > 8 || n == 0 {
            return None;
        }
        let mut a = [0u8; 8];
        if self.big_endian {
            for i in 0..n {
                a[i] = b[n - 1 - i];
            }
        } else {
            a[..n].copy_from_slice(&b[..n]);
        }
        match self.kind {
            'i' => {
                if a[n - 1] & 0x80 != 0 {
                    for x in a.iter_mut().skip(n) {
                        *x = 0xff;
                    }
                }
                Some(i64::from_le_bytes(a))
            }
            'u' | 'b' => {
                let u = u64::from_le_bytes(a);
                i64::try_from(u).ok()
            }
            'f' => {
                let f = self.read_f64(b)?;
                (f.fract() == 0.0 && f.abs() < 9.2e18).then_some(f as i64)
            }
            _ => None,
        }
    }
}

fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((h >> 10) & 0x1f);
    let frac = f64::from(h & 0x3ff);
    match exp {
        0 => sign * frac * 2f64.powi(-24),
        31 => {
            if frac == 0.0 {
                sign * f64::INFINITY
            } else {
                f64::NAN
            }
        }
        _ => sign * (1.0 + frac / 1024.0) * 2f64.powi(exp - 15),
    }
}

/// Array contents, always in C (row-major) order.
#[derive(Debug, Clone)]
pub enum Data {
    /// Floating point data (f2/f4/f8 widened).
    F64(Vec<f64>),
    /// Integer data (all widths, unsigned included when it fits).
    I64(Vec<i64>),
    /// Booleans.
    Bool(Vec<bool>),
    /// Unicode (`<U`) or byte (`S`) strings.
    Str(Vec<String>),
    /// Python objects.
    Object(Vec<Value>),
    /// Structured records: raw bytes, `itemsize` each.
    Records(Dtype, Vec<u8>),
}

/// A decoded numpy array.
#[derive(Debug, Clone)]
pub struct NdArray {
    /// Shape.
    pub shape: Vec<usize>,
    /// Contents in C order.
    pub data: Data,
}

impl NdArray {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match &self.data {
            Data::F64(v) => v.len(),
            Data::I64(v) => v.len(),
            Data::Bool(v) => v.len(),
            Data::Str(v) => v.len(),
            Data::Object(v) => v.len(),
            Data::Records(d, b) => b.len().checked_div(d.itemsize).unwrap_or(0),
        }
    }

    /// Converts numeric contents to f64.
    pub fn to_f64(&self) -> Option<Vec<f64>> {
        match &self.data {
            Data::F64(v) => Some(v.clone()),
            Data::I64(v) => Some(v.iter().map(|&x| x as f64).collect()),
            Data::Bool(v) => Some(v.iter().map(|&x| f64::from(u8::from(x))).collect()),
            _ => None,
        }
    }

    /// Converts integer contents to i64.
    pub fn to_i64(&self) -> Option<Vec<i64>> {
        match &self.data {
            Data::I64(v) => Some(v.clone()),
            Data::Bool(v) => Some(v.iter().map(|&x| i64::from(x)).collect()),
            Data::F64(v) => v
                .iter()
                .map(|&x| (x.fract() == 0.0 && x.abs() < 9.2e18).then_some(x as i64))
                .collect(),
            _ => None,
        }
    }
}

/// Parses a shape tuple (or a single int).
pub fn shape_of(v: View<'_>, value: Value) -> Result<Vec<usize>, String> {
    if let Some(i) = v.int(value) {
        return Ok(vec![usize::try_from(i).map_err(|_| "negative dimension")?]);
    }
    let items = v.seq(value).ok_or("shape is not a tuple")?;
    if items.len() > 32 {
        return Err("too many dimensions".into());
    }
    items
        .iter()
        .map(|d| {
            v.int(*d)
                .and_then(|d| usize::try_from(d).ok())
                .ok_or_else(|| "bad dimension".to_owned())
        })
        .collect()
}

/// `prod(shape)`, checked.
pub fn element_count(shape: &[usize]) -> Result<usize, String> {
    let mut n: usize = 1;
    for &d in shape {
        n = n.checked_mul(d).ok_or("array too large")?;
    }
    if n > MAX_ELEMENTS {
        return Err("array too large".into());
    }
    Ok(n)
}

/// Decodes a numpy scalar (`numpy._core.multiarray.scalar(dtype, bytes)`) to a plain value.
pub fn scalar(v: View<'_>, value: Value) -> Result<Value, String> {
    let obj = v.object(value).ok_or("not an object")?;
    match v.global(obj.class) {
        Some((m, "scalar")) if m.starts_with("numpy") => {}
        _ => return Err("not a numpy scalar".into()),
    }
    let dtype = Dtype::parse(v, *obj.args.first().ok_or("scalar without dtype")?, 0)?;
    let raw = obj.args.get(1).ok_or("scalar without data")?;
    let bytes = v.bytes(*raw).ok_or("scalar data is not bytes")?;
    if bytes.len() < dtype.itemsize {
        return Err("scalar data too short".into());
    }
    match dtype.kind {
        'f' => dtype
            .read_f64(bytes)
            .map(Value::Float)
            .ok_or_else(|| "bad float scalar".into()),
        'b' => Ok(Value::Bool(bytes[0] != 0)),
        'i' | 'u' => dtype
            .read_i64(bytes)
            .map(Value::Int)
            .ok_or_else(|| "bad integer scalar".into()),
        _ => Err(format!("unsupported scalar dtype {:?}", dtype.kind)),
    }
}

/// Decodes a pickled ndarray.
pub fn array(v: View<'_>, value: Value) -> Result<NdArray, String> {
    let a = array_depth(v, value, 0)?;
    v.charge(a.len())?;
    Ok(a)
}

fn array_depth(v: View<'_>, value: Value, depth: usize) -> Result<NdArray, String> {
    if depth > 4 {
        return Err("arrays nested too deeply".into());
    }
    let obj = v.object(value).ok_or("not an array")?;
    let (module, name) = v.global(obj.class).ok_or("not an array")?;
    match (module, name) {
        ("joblib.numpy_pickle", "NumpyArrayWrapper") => {
            let state = obj.state.ok_or("NumpyArrayWrapper without state")?;
            let shape = shape_of(v, v.get(state, "shape").ok_or("no shape")?)?;
            let dtype = Dtype::parse(v, v.get(state, "dtype").ok_or("no dtype")?, 0)?;
            let fortran = v.get(state, "order").and_then(|o| v.str(o)) == Some("F");
            let inline = obj.inline.ok_or("NumpyArrayWrapper without data")?;
            if dtype.has_object() {
                let inner = array_depth(v, inline, depth + 1)?;
                if inner.shape != shape {
                    return Err("object array shape mismatch".into());
                }
                return Ok(inner);
            }
            let bytes = v.bytes(inline).ok_or("array data is not bytes")?;
            from_bytes(shape, &dtype, fortran, bytes)
        }
        (m, "_reconstruct") if m.starts_with("numpy") => {
            let state = obj.state.ok_or("ndarray without state")?;
            let st = v.seq(state).ok_or("ndarray state is not a tuple")?;
            if st.len() < 5 {
                return Err("short ndarray state".into());
            }
            let shape = shape_of(v, st[1])?;
            let dtype = Dtype::parse(v, st[2], 0)?;
            let fortran = matches!(st[3], Value::Bool(true) | Value::Int(1));
            if let Some(bytes) = v.bytes(st[4]) {
                return from_bytes(shape, &dtype, fortran, bytes);
            }
            if let Some(str_data) = v.str(st[4]) {
                // Python 2 pickles (latin-1 decoded str)
                let bytes: Vec<u8> = str_data.chars().map(|c| c as u32 as u8).collect();
                return from_bytes(shape, &dtype, fortran, &bytes);
            }
            let items = v
                .seq(st[4])
                .ok_or("ndarray data is neither bytes nor list")?;
            let n = element_count(&shape)?;
            if items.len() != n {
                return Err(format!(
                    "object array has {} items, shape needs {n}",
                    items.len()
                ));
            }
            let mut items = items.to_vec();
            if fortran {
                items = f_to_c(&shape, &items);
            }
            Ok(NdArray {
                shape,
                data: Data::Object(items),
            })
        }
        (m, "_frombuffer") if m.starts_with("numpy") => {
            if obj.args.len() < 4 {
                return Err("short _frombuffer arguments".into());
            }
            let bytes = v.bytes(obj.args[0]).ok_or("buffer is not bytes")?;
            let dtype = Dtype::parse(v, obj.args[1], 0)?;
            let shape = shape_of(v, obj.args[2])?;
            let fortran = v.str(obj.args[3]) == Some("F");
            from_bytes(shape, &dtype, fortran, bytes)
        }
        _ => Err(format!("{module}.{name} is not an ndarray")),
    }
}

fn f_to_c<T: Clone>(shape: &[usize], f: &[T]) -> Vec<T> {
    if shape.len() < 2 {
        return f.to_vec();
    }
    // F-order strides (in elements)
    let mut fstride = vec![1usize; shape.len()];
    for i in 1..shape.len() {
        fstride[i] = fstride[i - 1] * shape[i - 1];
    }
    let mut out = Vec::with_capacity(f.len());
    let mut idx = vec![0usize; shape.len()];
    for _ in 0..f.len() {
        let off: usize = idx.iter().zip(&fstride).map(|(i, s)| i * s).sum();
        out.push(f[off].clone());
        // increment the C-order multi-index (last axis fastest)
        for ax in (0..shape.len()).rev() {
            idx[ax] += 1;
            if idx[ax] < shape[ax] {
                break;
            }
            idx[ax] = 0;
        }
    }
    out
}

/// Decodes raw array bytes.
pub fn from_bytes(
    shape: Vec<usize>,
    dtype: &Dtype,
    fortran: bool,
    bytes: &[u8],
) -> Result<NdArray, String> {
    let n = element_count(&shape)?;
    let need = n.checked_mul(dtype.itemsize).ok_or("array too large")?;
    if bytes.len() != need {
        return Err(format!(
            "array data has {} bytes, shape and dtype need {need}",
            bytes.len()
        ));
    }
    if dtype.has_object() {
        return Err("object array stored as raw bytes".into());
    }
    let size = dtype.itemsize;
    let chunks = || bytes.chunks_exact(size.max(1)).take(n);
    let data = match dtype.kind {
        'f' => Data::F64(
            chunks()
                .map(|c| dtype.read_f64(c).unwrap_or(f64::NAN))
                .collect(),
        ),
        'i' | 'u' => Data::I64(
            chunks()
                .map(|c| dtype.read_i64(c).ok_or("integer out of range"))
                .collect::<Result<_, _>>()?,
        ),
        'b' => Data::Bool(bytes.iter().map(|&b| b != 0).collect()),
        'U' => Data::Str(if size == 0 {
            vec![String::new(); n]
        } else {
            chunks()
                .map(|c| {
                    let mut s = String::new();
                    for w in c.chunks_exact(4) {
                        let cp = if dtype.big_endian {
                            u32::from_be_bytes([w[0], w[1], w[2], w[3]])
                        } else {
                            u32::from_le_bytes([w[0], w[1], w[2], w[3]])
                        };
                        if cp == 0 {
                            break;
                        }
                        s.push(char::from_u32(cp).unwrap_or('\u{fffd}'));
                    }
                    s
                })
                .collect()
        }),
        'S' => Data::Str(if size == 0 {
            vec![String::new(); n]
        } else {
            chunks()
                .map(|c| {
                    let end = c.iter().position(|&b| b == 0).unwrap_or(c.len());
                    String::from_utf8_lossy(&c[..end]).into_owned()
                })
                .collect()
        }),
        'V' => Data::Records(dtype.clone(), bytes.to_vec()),
        k => return Err(format!("unsupported dtype kind {k:?}")),
    };
    let data = if fortran && shape.len() >= 2 {
        match data {
            Data::F64(v) => Data::F64(f_to_c(&shape, &v)),
            Data::I64(v) => Data::I64(f_to_c(&shape, &v)),
            Data::Bool(v) => Data::Bool(f_to_c(&shape, &v)),
            Data::Str(v) => Data::Str(f_to_c(&shape, &v)),
            other => other,
        }
    } else {
        data
    };
    Ok(NdArray { shape, data })
}

/// Node helper used by tests and the estimator layer: is this value a `str`?
pub fn is_str(v: View<'_>, value: Value) -> bool {
    matches!(v.node(value), Some(Node::Str(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fortran_to_c() {
        // 2x3 array [[1,2,3],[4,5,6]] stored in F order: 1 4 2 5 3 6
        let f = [1, 4, 2, 5, 3, 6];
        assert_eq!(f_to_c(&[2, 3], &f), vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn half_floats() {
        assert_eq!(f16_to_f64(0x3c00), 1.0);
        assert_eq!(f16_to_f64(0xc000), -2.0);
    }
}
