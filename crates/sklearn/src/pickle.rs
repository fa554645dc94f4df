//! A small pickle virtual machine (protocols 0-5, the opcodes CPython and joblib emit).
//!
//! Objects live in an arena ([`Pickle::nodes`]) and are referred to by index
//! ([`Value::Ref`]), so that `BUILD` mutates an object in place and every memo
//! reference sees the built object, cycles cannot leak, and dropping a deeply
//! nested graph never recurses.
//!
//! Nothing is ever *called*: `REDUCE`/`NEWOBJ` record the class and arguments in
//! an [`Object`] node, `BUILD` stores the state on it. A handful of callables whose
//! result is plain data are evaluated (`_codecs.encode`, `builtins.set`,
//! `builtins.frozenset`, `builtins.bytearray`), everything else is interpreted
//! later by the scikit-learn layer.
//!
//! joblib support: when `BUILD` targets a `joblib.numpy_pickle.NumpyArrayWrapper`,
//! the raw array bytes that joblib writes inline right after the `BUILD` opcode
//! are consumed from the stream (alignment padding, then `prod(shape) * itemsize`
//! bytes) or, for object arrays, a nested complete pickle is run; the result is
//! stored in [`Object::inline`].

use std::collections::HashMap;

use crate::error::Error;
use crate::numpy;

/// A value on the pickle stack: scalars inline, everything else in the arena.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum Value {
    /// Python `None`.
    #[default]
    None,
    /// Python `bool`.
    Bool(bool),
    /// Python `int` that fits in an `i64`.
    Int(i64),
    /// Python `int` too large for an `i64` (value not kept).
    BigInt,
    /// Python `float`.
    Float(f64),
    /// Index of a [`Node`] in [`Pickle::nodes`].
    Ref(usize),
}

/// A heap object of the unpickled graph.
#[derive(Debug, Clone)]
pub enum Node {
    /// `str`.
    Str(String),
    /// `bytes` / `bytearray`.
    Bytes(Vec<u8>),
    /// `list`.
    List(Vec<Value>),
    /// `tuple`.
    Tuple(Vec<Value>),
    /// `dict`, in insertion order; a later duplicate key wins on lookup.
    Dict(Vec<(Value, Value)>),
    /// `set` / `frozenset`.
    Set(Vec<Value>),
    /// A global reference (`GLOBAL` / `STACK_GLOBAL`): a class or function.
    Global {
        /// Module path, e.g. `sklearn.svm._classes`.
        module: String,
        /// Qualified name, e.g. `SVC`.
        name: String,
    },
    /// An instance built with `REDUCE`, `NEWOBJ` or `NEWOBJ_EX`.
    Object(Object),
}

/// An instance: the callable/class, its arguments and the `BUILD` state.
#[derive(Debug, Clone)]
pub struct Object {
    /// The callable or class (normally a [`Node::Global`]).
    pub class: Value,
    /// Positional arguments.
    pub args: Vec<Value>,
    /// The state given by `BUILD` (usually a dict), if any.
    pub state: Option<Value>,
    /// joblib inline array payload: a [`Node::Bytes`] or the root of a nested pickle.
    pub inline: Option<Value>,
}

/// The result of unpickling: the arena and the root value.
#[derive(Debug, Default)]
pub struct Pickle {
    /// All heap objects.
    pub nodes: Vec<Node>,
    /// The object `STOP` returned.
    pub root: Value,
}

/// Maximum nesting of pickles inside pickles (joblib object arrays).
const MAX_NESTED: usize = 4;

/// Parses a complete pickle (or joblib stream) from `data`.
pub fn parse(data: &[u8]) -> Result<Pickle, Error> {
    let mut vm = Vm {
        data,
        pos: 0,
        nodes: Vec::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        depth: 0,
        copy_budget: data.len().saturating_mul(4).saturating_add(1 << 20),
    };
    let root = vm.run()?;
    Ok(Pickle {
        nodes: vm.nodes,
        root,
    })
}

struct Vm<'a> {
    data: &'a [u8],
    pos: usize,
    nodes: Vec<Node>,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u64, Value>,
    depth: usize,
    /// Values that may still be copied by REDUCE/NEWOBJ/BUILD (anti-amplification).
    copy_budget: usize,
}

type R<T> = Result<T, Error>;

fn opcode_name(op: u8) -> &'static str {
    match op {
        b'(' => "MARK",
        b'.' => "STOP",
        b'0' => "POP",
        b'1' => "POP_MARK",
        b'2' => "DUP",
        b'F' => "FLOAT",
        b'I' => "INT",
        b'J' => "BININT",
        b'K' => "BININT1",
        b'L' => "LONG",
        b'M' => "BININT2",
        b'N' => "NONE",
        b'R' => "REDUCE",
        b'S' => "STRING",
        b'T' => "BINSTRING",
        b'U' => "SHORT_BINSTRING",
        b'V' => "UNICODE",
        b'X' => "BINUNICODE",
        b'a' => "APPEND",
        b'b' => "BUILD",
        b'c' => "GLOBAL",
        b'd' => "DICT",
        b'}' => "EMPTY_DICT",
        b'e' => "APPENDS",
        b'g' => "GET",
        b'h' => "BINGET",
        b'j' => "LONG_BINGET",
        b'l' => "LIST",
        b']' => "EMPTY_LIST",
        b'p' => "PUT",
        b'q' => "BINPUT",
        b'r' => "LONG_BINPUT",
        b's' => "SETITEM",
        b't' => "TUPLE",
        b')' => "EMPTY_TUPLE",
        b'u' => "SETITEMS",
        b'G' => "BINFLOAT",
        0x80 => "PROTO",
        0x81 => "NEWOBJ",
        0x85 => "TUPLE1",
        0x86 => "TUPLE2",
        0x87 => "TUPLE3",
        0x88 => "NEWTRUE",
        0x89 => "NEWFALSE",
        0x8a => "LONG1",
        0x8b => "LONG4",
        b'B' => "BINBYTES",
        b'C' => "SHORT_BINBYTES",
        0x8c => "SHORT_BINUNICODE",
        0x8d => "BINUNICODE8",
        0x8e => "BINBYTES8",
        0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        0x92 => "NEWOBJ_EX",
        0x93 => "STACK_GLOBAL",
        0x94 => "MEMOIZE",
        0x95 => "FRAME",
        0x96 => "BYTEARRAY8",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        _ => "?",
    }
}

impl<'a> Vm<'a> {
    fn err(&self, offset: usize, op: u8, message: impl Into<String>) -> Error {
        Error::Pickle {
            offset,
            opcode: opcode_name(op),
            message: message.into(),
        }
    }

    fn take(&mut self, n: usize, at: usize, op: u8) -> R<&'a [u8]> {
        let data: &'a [u8] = self.data;
        match self.pos.checked_add(n) {
            Some(end) if end <= data.len() => {
                let s = &data[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            _ => Err(self.err(
                at,
                op,
                format!(
                    "needs {n} more bytes but only {} remain",
                    data.len().saturating_sub(self.pos)
                ),
            )),
        }
    }

    fn u8(&mut self, at: usize, op: u8) -> R<u8> {
        Ok(self.take(1, at, op)?[0])
    }

    fn le_len(&mut self, width: usize, at: usize, op: u8) -> R<usize> {
        let b = self.take(width, at, op)?;
        let mut v: u64 = 0;
        for (i, &x) in b.iter().enumerate() {
            v |= u64::from(x) << (8 * i);
        }
        usize::try_from(v).map_err(|_| self.err(at, op, "length does not fit in memory"))
    }

    fn line(&mut self, at: usize, op: u8) -> R<&'a [u8]> {
        let data: &'a [u8] = self.data;
        let rest = &data[self.pos.min(data.len())..];
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                self.pos += i + 1;
                Ok(&rest[..i])
            }
            None => Err(self.err(at, op, "missing newline")),
        }
    }

    fn alloc(&mut self, node: Node) -> Value {
        self.nodes.push(node);
        Value::Ref(self.nodes.len() - 1)
    }

    fn pop(&mut self, at: usize, op: u8) -> R<Value> {
        if let Some(&m) = self.marks.last()
            && self.stack.len() <= m
        {
            return Err(self.err(at, op, "stack underflow (hit a MARK)"));
        }
        self.stack
            .pop()
            .ok_or_else(|| self.err(at, op, "stack underflow"))
    }

    fn top(&self, at: usize, op: u8) -> R<Value> {
        match (self.stack.last(), self.marks.last()) {
            (Some(_), Some(&m)) if self.stack.len() <= m => {
                Err(self.err(at, op, "stack underflow (hit a MARK)"))
            }
            (Some(v), _) => Ok(*v),
            (None, _) => Err(self.err(at, op, "stack underflow")),
        }
    }

    fn pop_mark(&mut self, at: usize, op: u8) -> R<Vec<Value>> {
        let m = self
            .marks
            .pop()
            .ok_or_else(|| self.err(at, op, "no MARK on the stack"))?;
        if m > self.stack.len() {
            return Err(self.err(at, op, "corrupt MARK"));
        }
        Ok(self.stack.split_off(m))
    }

    fn node_mut(&mut self, v: Value, at: usize, op: u8) -> R<&mut Node> {
        match v {
            Value::Ref(i) if i < self.nodes.len() => Ok(&mut self.nodes[i]),
            other => Err(self.err(at, op, format!("expected an object, found {other:?}"))),
        }
    }

    fn str_of(&self, v: Value) -> Option<&str> {
        match v {
            Value::Ref(i) => match self.nodes.get(i) {
                Some(Node::Str(s)) => Some(s),
                _ => None,
            },
            _ => None,
        }
    }

    fn global_of(&self, v: Value) -> Option<(&str, &str)> {
        match v {
            Value::Ref(i) => match self.nodes.get(i) {
                Some(Node::Global { module, name }) => Some((module, name)),
                _ => None,
            },
            _ => None,
        }
    }

    fn utf8(&self, b: &[u8], at: usize, op: u8) -> R<String> {
        String::from_utf8(b.to_vec()).map_err(|_| self.err(at, op, "invalid UTF-8"))
    }

    fn memo_get(&self, key: u64, at: usize, op: u8) -> R<Value> {
        self.memo
            .get(&key)
            .copied()
            .ok_or_else(|| self.err(at, op, format!("memo key {key} not found")))
    }

    fn memo_put(&mut self, key: u64, at: usize, op: u8) -> R<()> {
        let v = self.top(at, op)?;
        self.memo.insert(key, v);
        Ok(())
    }

    /// Runs until `STOP`, returning the value on top of the stack.
    fn run(&mut self) -> R<Value> {
        loop {
            let at = self.pos;
            let op = match self.data.get(self.pos) {
                Some(&b) => b,
                None => {
                    return Err(Error::Pickle {
                        offset: at,
                        opcode: "STOP",
                        message: "unexpected end of data (no STOP opcode)".into(),
                    });
                }
            };
            self.pos += 1;
            match op {
                0x80 => {
                    let proto = self.u8(at, op)?;
                    if proto > 5 {
                        return Err(self.err(at, op, format!("unsupported protocol {proto}")));
                    }
                }
                0x95 => {
                    // FRAME: the 8-byte frame length is only a buffering hint.
                    self.take(8, at, op)?;
                }
                b'.' => {
                    let v = self.pop(at, op)?;
                    return Ok(v);
                }
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    // POP: discards the top item, or a MARK if the top is a mark.
                    if self.marks.last() == Some(&self.stack.len()) {
                        self.marks.pop();
                    } else {
                        self.pop(at, op)?;
                    }
                }
                b'1' => {
                    self.pop_mark(at, op)?;
                }
                b'2' => {
                    let v = self.top(at, op)?;
                    self.stack.push(v);
                }
                // ---- numbers
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'J' => {
                    let b = self.take(4, at, op)?;
                    let v = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    self.stack.push(Value::Int(i64::from(v)));
                }
                b'K' => {
                    let v = self.u8(at, op)?;
                    self.stack.push(Value::Int(i64::from(v)));
                }
                b'M' => {
                    let b = self.take(2, at, op)?;
                    self.stack
                        .push(Value::Int(i64::from(u16::from_le_bytes([b[0], b[1]]))));
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a {
                        usize::from(self.u8(at, op)?)
                    } else {
                        self.le_len(4, at, op)?
                    };
                    let b = self.take(n, at, op)?;
                    self.stack.push(long_from_le(b));
                }
                b'G' => {
                    let b = self.take(8, at, op)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.stack.push(Value::Float(f64::from_be_bytes(a)));
                }
                b'I' => {
                    let l = self.line(at, op)?;
                    let s = std::str::from_utf8(l).map_err(|_| self.err(at, op, "bad INT"))?;
                    let v = match s {
                        "01" => Value::Bool(true),
                        "00" => Value::Bool(false),
                        _ => parse_int_text(s).ok_or_else(|| self.err(at, op, "bad INT"))?,
                    };
                    self.stack.push(v);
                }
                b'L' => {
                    let l = self.line(at, op)?;
                    let s = std::str::from_utf8(l).map_err(|_| self.err(at, op, "bad LONG"))?;
                    let s = s.strip_suffix('L').unwrap_or(s);
                    let v = parse_int_text(s).ok_or_else(|| self.err(at, op, "bad LONG"))?;
                    self.stack.push(v);
                }
                b'F' => {
                    let l = self.line(at, op)?;
                    let v = std::str::from_utf8(l)
                        .ok()
                        .and_then(|s| s.trim().parse::<f64>().ok())
                        .ok_or_else(|| self.err(at, op, "bad FLOAT"))?;
                    self.stack.push(Value::Float(v));
                }
                // ---- strings and bytes
                b'X' | 0x8c | 0x8d => {
                    let n = match op {
                        0x8c => usize::from(self.u8(at, op)?),
                        b'X' => self.le_len(4, at, op)?,
                        _ => self.le_len(8, at, op)?,
                    };
                    let b = self.take(n, at, op)?;
                    let s = self.utf8(b, at, op)?;
                    let v = self.alloc(Node::Str(s));
                    self.stack.push(v);
                }
                b'V' => {
                    let l = self.line(at, op)?;
                    let s =
                        unescape_raw_unicode(l).ok_or_else(|| self.err(at, op, "bad UNICODE"))?;
                    let v = self.alloc(Node::Str(s));
                    self.stack.push(v);
                }
                b'C' | b'B' | 0x8e | 0x96 => {
                    let n = match op {
                        b'C' => usize::from(self.u8(at, op)?),
                        b'B' => self.le_len(4, at, op)?,
                        _ => self.le_len(8, at, op)?,
                    };
                    let b = self.take(n, at, op)?.to_vec();
                    let v = self.alloc(Node::Bytes(b));
                    self.stack.push(v);
                }
                b'U' | b'T' => {
                    // Python 2 str: decoded as latin-1 text (what Python 3 does with encoding='latin1').
                    let n = if op == b'U' {
                        usize::from(self.u8(at, op)?)
                    } else {
                        self.le_len(4, at, op)?
                    };
                    let b = self.take(n, at, op)?;
                    let s: String = b.iter().map(|&c| char::from(c)).collect();
                    let v = self.alloc(Node::Str(s));
                    self.stack.push(v);
                }
                b'S' => {
                    let l = self.line(at, op)?;
                    let s = unquote_python_string(l)
                        .ok_or_else(|| self.err(at, op, "bad STRING literal"))?;
                    let v = self.alloc(Node::Str(s));
                    self.stack.push(v);
                }
                // ---- containers
                b']' => {
                    let v = self.alloc(Node::List(Vec::new()));
                    self.stack.push(v);
                }
                b'l' => {
                    let items = self.pop_mark(at, op)?;
                    let v = self.alloc(Node::List(items));
                    self.stack.push(v);
                }
                b'a' => {
                    let item = self.pop(at, op)?;
                    let list = self.top(at, op)?;
                    self.append(list, vec![item], at, op)?;
                }
                b'e' => {
                    let items = self.pop_mark(at, op)?;
                    let list = self.top(at, op)?;
                    self.append(list, items, at, op)?;
                }
                b'}' => {
                    let v = self.alloc(Node::Dict(Vec::new()));
                    self.stack.push(v);
                }
                b'd' => {
                    let items = self.pop_mark(at, op)?;
                    let pairs = pairs(items).ok_or_else(|| self.err(at, op, "odd item count"))?;
                    let v = self.alloc(Node::Dict(pairs));
                    self.stack.push(v);
                }
                b's' => {
                    let val = self.pop(at, op)?;
                    let key = self.pop(at, op)?;
                    let d = self.top(at, op)?;
                    self.set_items(d, vec![(key, val)], at, op)?;
                }
                b'u' => {
                    let items = self.pop_mark(at, op)?;
                    let pairs = pairs(items).ok_or_else(|| self.err(at, op, "odd item count"))?;
                    let d = self.top(at, op)?;
                    self.set_items(d, pairs, at, op)?;
                }
                b')' => {
                    let v = self.alloc(Node::Tuple(Vec::new()));
                    self.stack.push(v);
                }
                b't' => {
                    let items = self.pop_mark(at, op)?;
                    let v = self.alloc(Node::Tuple(items));
                    self.stack.push(v);
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop(at, op)?);
                    }
                    items.reverse();
                    let v = self.alloc(Node::Tuple(items));
                    self.stack.push(v);
                }
                0x8f => {
                    let v = self.alloc(Node::Set(Vec::new()));
                    self.stack.push(v);
                }
                0x90 => {
                    let items = self.pop_mark(at, op)?;
                    let s = self.top(at, op)?;
                    match self.node_mut(s, at, op)? {
                        Node::Set(v) => v.extend(items),
                        _ => return Err(self.err(at, op, "ADDITEMS target is not a set")),
                    }
                }
                0x91 => {
                    let items = self.pop_mark(at, op)?;
                    let v = self.alloc(Node::Set(items));
                    self.stack.push(v);
                }
                // ---- memo
                0x94 => {
                    let key = self.memo.len() as u64;
                    self.memo_put(key, at, op)?;
                }
                b'q' => {
                    let k = u64::from(self.u8(at, op)?);
                    self.memo_put(k, at, op)?;
                }
                b'r' => {
                    let k = self.le_len(4, at, op)? as u64;
                    self.memo_put(k, at, op)?;
                }
                b'p' => {
                    let l = self.line(at, op)?;
                    let k = parse_memo_key(l).ok_or_else(|| self.err(at, op, "bad PUT key"))?;
                    self.memo_put(k, at, op)?;
                }
                b'h' => {
                    let k = u64::from(self.u8(at, op)?);
                    let v = self.memo_get(k, at, op)?;
                    self.stack.push(v);
                }
                b'j' => {
                    let k = self.le_len(4, at, op)? as u64;
                    let v = self.memo_get(k, at, op)?;
                    self.stack.push(v);
                }
                b'g' => {
                    let l = self.line(at, op)?;
                    let k = parse_memo_key(l).ok_or_else(|| self.err(at, op, "bad GET key"))?;
                    let v = self.memo_get(k, at, op)?;
                    self.stack.push(v);
                }
                // ---- globals and objects
                b'c' => {
                    let module = self.line(at, op)?;
                    let module = self.utf8(module, at, op)?;
                    let name = self.line(at, op)?;
                    let name = self.utf8(name, at, op)?;
                    let v = self.alloc(Node::Global { module, name });
                    self.stack.push(v);
                }
                0x93 => {
                    let name = self.pop(at, op)?;
                    let module = self.pop(at, op)?;
                    let (Some(module), Some(name)) = (self.str_of(module), self.str_of(name))
                    else {
                        return Err(self.err(at, op, "module and name must be strings"));
                    };
                    let node = Node::Global {
                        module: module.to_owned(),
                        name: name.to_owned(),
                    };
                    self.charge(1 + (module.len() + name.len()) / 16, at, op)?;
                    let v = self.alloc(node);
                    self.stack.push(v);
                }
                b'R' => {
                    let args = self.pop(at, op)?;
                    let class = self.pop(at, op)?;
                    let args = self.tuple_items(args, at, op)?;
                    let v = self.reduce(class, args, at, op)?;
                    self.stack.push(v);
                }
                0x81 => {
                    let args = self.pop(at, op)?;
                    let class = self.pop(at, op)?;
                    let args = self.tuple_items(args, at, op)?;
                    let v = self.alloc(Node::Object(Object {
                        class,
                        args,
                        state: None,
                        inline: None,
                    }));
                    self.stack.push(v);
                }
                0x92 => {
                    let _kwargs = self.pop(at, op)?;
                    let args = self.pop(at, op)?;
                    let class = self.pop(at, op)?;
                    let args = self.tuple_items(args, at, op)?;
                    let v = self.alloc(Node::Object(Object {
                        class,
                        args,
                        state: None,
                        inline: None,
                    }));
                    self.stack.push(v);
                }
                b'b' => {
                    let state = self.pop(at, op)?;
                    let target = self.top(at, op)?;
                    self.build(target, state, at, op)?;
                }
                0x97 | 0x98 => {
                    return Err(self.err(
                        at,
                        op,
                        "out-of-band buffers (pickle protocol 5 buffer_callback) are not supported",
                    ));
                }
                _ => {
                    return Err(Error::UnsupportedOpcode {
                        opcode: op,
                        offset: at,
                    });
                }
            }
        }
    }

    fn charge(&mut self, n: usize, at: usize, op: u8) -> R<()> {
        match self.copy_budget.checked_sub(n) {
            Some(rest) => {
                self.copy_budget = rest;
                Ok(())
            }
            None => Err(self.err(at, op, "pickle expands to too much data")),
        }
    }

    fn tuple_items(&mut self, v: Value, at: usize, op: u8) -> R<Vec<Value>> {
        let len = match v {
            Value::Ref(i) => match self.nodes.get(i) {
                Some(Node::Tuple(items)) | Some(Node::List(items)) => items.len(),
                _ => 0,
            },
            _ => 0,
        };
        self.charge(len, at, op)?;
        match v {
            Value::Ref(i) => match self.nodes.get(i) {
                Some(Node::Tuple(items)) | Some(Node::List(items)) => Ok(items.clone()),
                _ => Err(self.err(at, op, "arguments are not a tuple")),
            },
            _ => Err(self.err(at, op, "arguments are not a tuple")),
        }
    }

    fn append(&mut self, list: Value, items: Vec<Value>, at: usize, op: u8) -> R<()> {
        match self.node_mut(list, at, op)? {
            Node::List(v) => {
                v.extend(items);
                Ok(())
            }
            // list subclasses / objects with extend(): keep the items as state-less args
            Node::Object(o) => {
                o.args.extend(items);
                Ok(())
            }
            _ => Err(self.err(at, op, "append target is not a list")),
        }
    }

    fn set_items(&mut self, d: Value, items: Vec<(Value, Value)>, at: usize, op: u8) -> R<()> {
        match self.node_mut(d, at, op)? {
            Node::Dict(v) => {
                v.extend(items);
                Ok(())
            }
            // dict subclasses (e.g. OrderedDict built with REDUCE): store flat key/value args
            Node::Object(o) => {
                for (k, v) in items {
                    o.args.push(k);
                    o.args.push(v);
                }
                Ok(())
            }
            _ => Err(self.err(at, op, "SETITEM target is not a dict")),
        }
    }

    /// `REDUCE`: evaluates a few pure-data callables, records everything else.
    fn reduce(&mut self, class: Value, args: Vec<Value>, at: usize, op: u8) -> R<Value> {
        let global = self
            .global_of(class)
            .map(|(m, n)| (m.to_owned(), n.to_owned()));
        if let Some((module, name)) = global {
            match (module.as_str(), name.as_str()) {
                ("_codecs", "encode") => {
                    // Protocol 2 encodes bytes as _codecs.encode(str, 'latin1').
                    let text = args.first().and_then(|v| self.str_of(*v));
                    let enc = args.get(1).and_then(|v| self.str_of(*v)).unwrap_or("utf-8");
                    let Some(text) = text else {
                        return Err(self.err(at, op, "_codecs.encode needs a str"));
                    };
                    let bytes: Vec<u8> = match enc {
                        "latin1" | "latin-1" | "iso-8859-1" => {
                            let mut out = Vec::with_capacity(text.len());
                            for c in text.chars() {
                                let c = u32::from(c);
                                if c > 0xff {
                                    return Err(self.err(at, op, "non latin-1 character"));
                                }
                                out.push(c as u8);
                            }
                            out
                        }
                        _ => text.as_bytes().to_vec(),
                    };
                    self.charge(1 + bytes.len() / 16, at, op)?;
                    return Ok(self.alloc(Node::Bytes(bytes)));
                }
                ("builtins" | "__builtin__", "set" | "frozenset") => {
                    let items = match args.first() {
                        Some(v) => self.tuple_items(*v, at, op)?,
                        None => Vec::new(),
                    };
                    return Ok(self.alloc(Node::Set(items)));
                }
                ("builtins" | "__builtin__", "bytearray" | "bytes") => {
                    let b = match args.first() {
                        None => Vec::new(),
                        Some(Value::Ref(i)) => match self.nodes.get(*i) {
                            Some(Node::Bytes(b)) => {
                                let b = b.clone();
                                self.charge(b.len() / 16, at, op)?;
                                b
                            }
                            _ => return Err(self.err(at, op, "bytearray needs bytes")),
                        },
                        Some(_) => return Err(self.err(at, op, "bytearray needs bytes")),
                    };
                    return Ok(self.alloc(Node::Bytes(b)));
                }
                _ => {}
            }
        }
        Ok(self.alloc(Node::Object(Object {
            class,
            args,
            state: None,
            inline: None,
        })))
    }

    fn build(&mut self, target: Value, state: Value, at: usize, op: u8) -> R<()> {
        let is_wrapper = match self.node_mut(target, at, op)? {
            Node::Object(o) => {
                o.state = Some(state);
                let class = o.class;
                matches!(
                    self.global_of(class),
                    Some(("joblib.numpy_pickle", "NumpyArrayWrapper"))
                )
            }
            // BUILD on a dict/list (rare): merge dict state, ignore otherwise.
            Node::Dict(_) => {
                if let Value::Ref(i) = state
                    && let Some(Node::Dict(items)) = self.nodes.get(i)
                {
                    let items = items.clone();
                    self.charge(items.len(), at, op)?;
                    self.set_items(target, items, at, op)?;
                }
                false
            }
            _ => false,
        };
        if is_wrapper {
            let payload = self.read_joblib_array(state, at, op)?;
            if let Node::Object(o) = self.node_mut(target, at, op)? {
                o.inline = Some(payload);
            }
        }
        Ok(())
    }

    /// Reads the array data joblib writes right after a `NumpyArrayWrapper`'s `BUILD`.
    fn read_joblib_array(&mut self, state: Value, at: usize, op: u8) -> R<Value> {
        let budget = std::cell::Cell::new(u64::MAX);
        let view = View {
            nodes: &self.nodes,
            budget: &budget,
        };
        let info = view
            .joblib_wrapper_info(state)
            .map_err(|m| self.err(at, op, format!("bad NumpyArrayWrapper state: {m}")))?;
        if info.is_object {
            if self.depth >= MAX_NESTED {
                return Err(self.err(at, op, "pickles nested too deeply"));
            }
            // A complete nested pickle with its own memo and stack.
            let saved_stack = std::mem::take(&mut self.stack);
            let saved_marks = std::mem::take(&mut self.marks);
            let saved_memo = std::mem::take(&mut self.memo);
            self.depth += 1;
            let result = self.run();
            self.depth -= 1;
            self.stack = saved_stack;
            self.marks = saved_marks;
            self.memo = saved_memo;
            return result;
        }
        if info.aligned {
            let pad = usize::from(self.u8(at, op)?);
            self.take(pad, at, op)?;
        }
        let n = info
            .count
            .checked_mul(info.itemsize)
            .ok_or_else(|| self.err(at, op, "array too large"))?;
        let bytes = self.take(n, at, op)?.to_vec();
        Ok(self.alloc(Node::Bytes(bytes)))
    }
}

fn pairs(items: Vec<Value>) -> Option<Vec<(Value, Value)>> {
    if !items.len().is_multiple_of(2) {
        return None;
    }
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Some(out)
}

fn long_from_le(b: &[u8]) -> Value {
    if b.is_empty() {
        return Value::Int(0);
    }
    if b.len() > 8 {
        // Fits in i64 only if the extra bytes are pure sign extension.
        let neg = b[b.len() - 1] & 0x80 != 0;
        let fill = if neg { 0xff } else { 0 };
        if b[8..].iter().any(|&x| x != fill) || ((b[7] & 0x80 != 0) != neg) {
            return Value::BigInt;
        }
        return long_from_le(&b[..8]);
    }
    let neg = b[b.len() - 1] & 0x80 != 0;
    let mut a = if neg { [0xffu8; 8] } else { [0u8; 8] };
    a[..b.len()].copy_from_slice(b);
    Value::Int(i64::from_le_bytes(a))
}

fn parse_int_text(s: &str) -> Option<Value> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    match s.parse::<i64>() {
        Ok(v) => Some(Value::Int(v)),
        Err(_) => {
            let digits = s.strip_prefix('-').unwrap_or(s);
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                Some(Value::BigInt)
            } else {
                None
            }
        }
    }
}

fn parse_memo_key(l: &[u8]) -> Option<u64> {
    std::str::from_utf8(l).ok()?.trim().parse().ok()
}

/// Decodes protocol-0 `raw-unicode-escape` text (`\uXXXX` / `\UXXXXXXXX`).
fn unescape_raw_unicode(l: &[u8]) -> Option<String> {
    let s: Vec<char> = l.iter().map(|&b| char::from(b)).collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == '\\' && i + 1 < s.len() && (s[i + 1] == 'u' || s[i + 1] == 'U') {
            let n = if s[i + 1] == 'u' { 4 } else { 8 };
            let hex: String = s.get(i + 2..i + 2 + n)?.iter().collect();
            let c = char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?;
            out.push(c);
            i += 2 + n;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Decodes a protocol-0 `STRING` argument: a quoted Python literal with escapes.
fn unquote_python_string(l: &[u8]) -> Option<String> {
    let l = l.strip_suffix(b"\r").unwrap_or(l);
    if l.len() < 2 {
        return None;
    }
    let q = l[0];
    if (q != b'\'' && q != b'"') || l[l.len() - 1] != q {
        return None;
    }
    let body = &l[1..l.len() - 1];
    let mut out = String::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let c = body[i];
        if c == b'\\' && i + 1 < body.len() {
            let e = body[i + 1];
            i += 2;
            match e {
                b'n' => out.push('\n'),
                b't' => out.push('\t'),
                b'r' => out.push('\r'),
                b'\\' => out.push('\\'),
                b'\'' => out.push('\''),
                b'"' => out.push('"'),
                b'x' => {
                    let h = std::str::from_utf8(body.get(i..i + 2)?).ok()?;
                    out.push(char::from(u8::from_str_radix(h, 16).ok()?));
                    i += 2;
                }
                _ => {
                    out.push('\\');
                    out.push(char::from(e));
                }
            }
        } else {
            out.push(char::from(c));
            i += 1;
        }
    }
    Some(out)
}

/// Read-only helpers over an arena (shared by the VM and the sklearn layer).
#[derive(Clone, Copy)]
pub struct View<'p> {
    /// The arena.
    pub nodes: &'p [Node],
    /// Remaining number of array elements that may be decoded (guards against
    /// one shared array being referenced a million times).
    pub budget: &'p std::cell::Cell<u64>,
}

/// What the VM needs to know about a `NumpyArrayWrapper` to consume its data.
pub(crate) struct WrapperInfo {
    pub count: usize,
    pub itemsize: usize,
    pub is_object: bool,
    pub aligned: bool,
}

impl<'p> View<'p> {
    /// Takes `n` elements from the decoding budget.
    pub fn charge(&self, n: usize) -> Result<(), String> {
        let left = self.budget.get();
        match left.checked_sub(n as u64) {
            Some(rest) => {
                self.budget.set(rest);
                Ok(())
            }
            None => {
                Err("model expands to too much data (shared arrays referenced too often)".into())
            }
        }
    }

    /// The node a value refers to.
    pub fn node(&self, v: Value) -> Option<&'p Node> {
        match v {
            Value::Ref(i) => self.nodes.get(i),
            _ => None,
        }
    }

    /// The string a value refers to.
    pub fn str(&self, v: Value) -> Option<&'p str> {
        match self.node(v)? {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The bytes a value refers to.
    pub fn bytes(&self, v: Value) -> Option<&'p [u8]> {
        match self.node(v)? {
            Node::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// Items of a tuple or list.
    pub fn seq(&self, v: Value) -> Option<&'p [Value]> {
        match self.node(v)? {
            Node::Tuple(t) | Node::List(t) => Some(t),
            _ => None,
        }
    }

    /// Key/value pairs of a dict.
    pub fn dict(&self, v: Value) -> Option<&'p [(Value, Value)]> {
        match self.node(v)? {
            Node::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// Looks up a string key in a dict (the last duplicate wins).
    pub fn get(&self, dict: Value, key: &str) -> Option<Value> {
        self.dict(dict)?
            .iter()
            .rev()
            .find(|(k, _)| self.str(*k) == Some(key))
            .map(|(_, v)| *v)
    }

    /// The object node a value refers to.
    pub fn object(&self, v: Value) -> Option<&'p Object> {
        match self.node(v)? {
            Node::Object(o) => Some(o),
            _ => None,
        }
    }

    /// `(module, name)` of a global.
    pub fn global(&self, v: Value) -> Option<(&'p str, &'p str)> {
        match self.node(v)? {
            Node::Global { module, name } => Some((module, name)),
            _ => None,
        }
    }

    /// `(module, name)` of an object's class.
    #[cfg(test)]
    pub fn class_of(&self, v: Value) -> Option<(&'p str, &'p str)> {
        self.global(self.object(v)?.class)
    }

    /// An integer (Python int or bool, or a numpy integer scalar).
    pub fn int(&self, v: Value) -> Option<i64> {
        match v {
            Value::Int(i) => Some(i),
            Value::Bool(b) => Some(i64::from(b)),
            Value::Ref(_) => match numpy::scalar(*self, v).ok()? {
                Value::Int(i) => Some(i),
                Value::Bool(b) => Some(i64::from(b)),
                _ => None,
            },
            _ => None,
        }
    }

    /// A float (Python float or int, or a numpy scalar).
    pub fn float(&self, v: Value) -> Option<f64> {
        match v {
            Value::Float(f) => Some(f),
            Value::Int(i) => Some(i as f64),
            Value::Bool(b) => Some(f64::from(u8::from(b))),
            Value::Ref(_) => match numpy::scalar(*self, v).ok()? {
                Value::Float(f) => Some(f),
                Value::Int(i) => Some(i as f64),
                Value::Bool(b) => Some(f64::from(u8::from(b))),
                _ => None,
            },
            _ => None,
        }
    }

    fn joblib_wrapper_info(&self, state: Value) -> Result<WrapperInfo, String> {
        let shape = self.get(state, "shape").ok_or("no shape")?;
        let shape = numpy::shape_of(*self, shape)?;
        let count = numpy::element_count(&shape)?;
        let dtype = self.get(state, "dtype").ok_or("no dtype")?;
        let dtype = numpy::Dtype::parse(*self, dtype, 0)?;
        let aligned = match self.get(state, "numpy_array_alignment_bytes") {
            None | Some(Value::None) => false,
            Some(_) => true,
        };
        Ok(WrapperInfo {
            count,
            itemsize: dtype.itemsize,
            is_object: dtype.has_object(),
            aligned,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(bytes: &[u8]) -> Result<Pickle, Error> {
        parse(bytes)
    }

    #[test]
    fn ints_and_floats() {
        // PROTO 2, MARK, BININT1 7, BININT2 0x0102, BININT -2, LONG1 (3 bytes), BINFLOAT 1.5, TUPLE, STOP
        let mut b = vec![0x80, 2, b'(', b'K', 7, b'M', 2, 1, b'J'];
        b.extend((-2i32).to_le_bytes());
        b.extend([0x8a, 3, 0x00, 0x00, 0x80]); // 0x800000 as 3-byte two's complement -> negative
        b.push(b'G');
        b.extend(1.5f64.to_be_bytes());
        b.extend([0x8b, 9, 0, 0, 0]);
        b.extend([0u8, 0, 0, 0, 0, 0, 0, 0, 1]); // 2**64: too big
        b.extend([b'I']);
        b.extend(b"-12\n");
        b.extend(b"F0.25\n");
        b.extend([b't', b'.']);
        let p = run(&b).unwrap();
        let b = std::cell::Cell::new(u64::MAX);
        let v = View {
            nodes: &p.nodes,
            budget: &b,
        };
        let t = v.seq(p.root).unwrap();
        assert_eq!(
            t,
            &[
                Value::Int(7),
                Value::Int(0x0102),
                Value::Int(-2),
                Value::Int(-0x800000),
                Value::Float(1.5),
                Value::BigInt,
                Value::Int(-12),
                Value::Float(0.25)
            ]
        );
    }

    #[test]
    fn strings_bytes_and_containers() {
        let mut b = vec![0x80, 4, b'}', 0x94, b'('];
        b.extend([0x8c, 1, b'a', b']', 0x94]);
        b.extend([b'X', 2, 0, 0, 0, b'b', b'c']);
        b.extend([b'C', 2, 0xff, 0x00]);
        b.extend([b'u', b'h', 1, b'N', b'a', b'(', 0x88, 0x89, b'e', b'0']);
        b.extend([0x8c, 1, b's', 0x8f, b'(', b'K', 1, b'K', 2, 0x90, b's']);
        b.extend([0x8c, 1, b't', b'N', b'N', 0x86, b's', b'.']);
        let p = run(&b).unwrap();
        let b = std::cell::Cell::new(u64::MAX);
        let v = View {
            nodes: &p.nodes,
            budget: &b,
        };
        let a = v.get(p.root, "a").unwrap();
        assert_eq!(
            v.seq(a).unwrap(),
            &[Value::None, Value::Bool(true), Value::Bool(false)]
        );
        assert_eq!(v.bytes(v.get(p.root, "bc").unwrap()).unwrap(), &[0xff, 0]);
        assert!(matches!(v.node(v.get(p.root, "s").unwrap()), Some(Node::Set(s)) if s.len() == 2));
        assert_eq!(v.seq(v.get(p.root, "t").unwrap()).unwrap().len(), 2);
    }

    #[test]
    fn memo_sees_built_object() {
        // c__main__\nK\n ) NEWOBJ MEMOIZE } (X k 1 ) u... then BUILD, then list [memo0, memo0]
        let mut b = vec![0x80, 4];
        b.extend(b"c__main__\nThing\n");
        b.extend([b')', 0x81, 0x94]); // obj, memo 0
        b.extend([b'}', 0x8c, 1, b'k', b'K', 42, b's', b'b']); // BUILD {'k': 42}
        b.extend([b'0', b'(', b'h', 0, b'g']);
        b.extend(b"0\n");
        b.extend([b'l', b'.']);
        let p = run(&b).unwrap();
        let b = std::cell::Cell::new(u64::MAX);
        let v = View {
            nodes: &p.nodes,
            budget: &b,
        };
        let items = v.seq(p.root).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0], items[1]);
        let o = v.object(items[0]).unwrap();
        assert_eq!(v.global(o.class), Some(("__main__", "Thing")));
        assert_eq!(v.get(o.state.unwrap(), "k"), Some(Value::Int(42)));
    }

    #[test]
    fn stack_global_reduce_and_codecs() {
        let mut b = vec![0x80, 2];
        b.extend(b"c_codecs\nencode\n");
        b.extend([b'X', 2, 0, 0, 0, 0xc3, 0xbf]); // 'ÿ'
        b.extend([b'X', 6, 0, 0, 0]);
        b.extend(b"latin1");
        b.extend([0x86, b'R', b'.']);
        let p = run(&b).unwrap();
        let b = std::cell::Cell::new(u64::MAX);
        let v = View {
            nodes: &p.nodes,
            budget: &b,
        };
        assert_eq!(v.bytes(p.root).unwrap(), &[0xff]);

        let mut b = vec![0x80, 4, 0x8c, 3];
        b.extend(b"mod");
        b.extend([0x8c, 3]);
        b.extend(b"Cls");
        b.extend([0x93, b'K', 1, 0x85, b'R', b'.']);
        let p = run(&b).unwrap();
        let b = std::cell::Cell::new(u64::MAX);
        let v = View {
            nodes: &p.nodes,
            budget: &b,
        };
        assert_eq!(v.class_of(p.root), Some(("mod", "Cls")));
        assert_eq!(v.object(p.root).unwrap().args, vec![Value::Int(1)]);
    }

    #[test]
    fn errors_name_offset_and_opcode() {
        let e = run(&[0x80, 4, b'N', b'P']).unwrap_err().to_string();
        assert_eq!(e, "unsupported pickle opcode 0x50 ('P') at byte 3");
        let e = run(&[0x80, 4, b'X', 9, 0, 0, 0, b'a'])
            .unwrap_err()
            .to_string();
        assert!(e.contains("at byte 2 (opcode BINUNICODE)"), "{e}");
        let e = run(&[0x80, 4, b'h', 3]).unwrap_err().to_string();
        assert!(e.contains("memo key 3 not found"), "{e}");
        let e = run(&[0x80, 4, b'a']).unwrap_err().to_string();
        assert!(e.contains("stack underflow"), "{e}");
        let e = run(&[0x80, 4, b'N']).unwrap_err().to_string();
        assert!(e.contains("no STOP"), "{e}");
        let e = run(&[0x80, 5, 0x97]).unwrap_err().to_string();
        assert!(e.contains("NEXT_BUFFER"), "{e}");
        let e = run(b"(.").unwrap_err().to_string();
        assert!(e.contains("MARK"), "{e}");
    }

    #[test]
    fn huge_lengths_do_not_allocate() {
        let mut b = vec![0x80, 4, 0x8e];
        b.extend(u64::MAX.to_le_bytes());
        assert!(run(&b).is_err());
        let mut b = vec![0x80, 4, 0x8b];
        b.extend(u32::MAX.to_le_bytes());
        assert!(run(&b).is_err());
    }
}
