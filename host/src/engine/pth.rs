//! Checkpoints written by PyTorch's `torch.save` (the zip container of PyTorch 1.6 and
//! later), read without Python: what the official OGM-GE code saves (`{'model':
//! state_dict, 'optimizer': ..., 'fusion': ..., ...}`) or a bare state_dict.
//!
//! The container holds `<name>/data.pkl`, a pickle of the saved object whose tensors refer to
//! storages by key, and `<name>/data/<key>`, each storage's raw little-endian bytes. The
//! pickle is run by a small machine that knows the opcodes `torch.save` emits (protocols 2
//! to 5) and builds only plain values: containers, numbers, strings, and tensors (from
//! `torch._utils._rebuild_tensor_v2` and `_rebuild_parameter`). Any other class becomes an
//! [`Value::Object`] naming it: nothing in the file is ever executed. Every length, index and
//! shape is checked against the bytes present; a bad file gives an error naming what is
//! wrong, never a panic.

use std::collections::HashMap;
use std::io::{Cursor, Read};

/// A value of the saved object.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `None`.
    None,
    /// A bool.
    Bool(bool),
    /// An int (those beyond 64 bits are refused).
    Int(i64),
    /// A float.
    Float(f64),
    /// A str.
    Str(String),
    /// bytes.
    Bytes(Vec<u8>),
    /// A tuple.
    Tuple(Vec<Value>),
    /// A list.
    List(Vec<Value>),
    /// A dict or `OrderedDict`, in insertion order.
    Dict(Vec<(Value, Value)>),
    /// A tensor (its values read on demand by [`Checkpoint::tensor`]).
    Tensor(TensorRef),
    /// An instance of a class this reader does not build: `module.name`.
    Object(String),
}

impl Value {
    /// The value under the string key `key`, for a dict.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(items) => items
                .iter()
                .find(|(k, _)| matches!(k, Value::Str(s) if s == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

/// A tensor of the file: a view of a storage.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    /// The storage's type name (`FloatStorage`, `LongStorage`, ...).
    pub storage: String,
    /// The storage's key (its entry `data/<key>`).
    pub key: String,
    /// First element, in elements of the storage.
    pub offset: usize,
    /// Sizes.
    pub shape: Vec<usize>,
    /// Strides, in elements.
    pub stride: Vec<usize>,
}

/// A tensor's values, in row-major order of its shape.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// Floating point (`float16`, `bfloat16`, `float32` widened; `float64` as is).
    Float(Vec<f64>),
    /// Integer (`int32`, `int64`).
    Int(Vec<i64>),
}

/// A `torch.save` file opened: the saved object and the storages it refers to.
pub struct Checkpoint {
    root: Value,
    prefix: String,
    archive: zip::ZipArchive<Cursor<Vec<u8>>>,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// The most nested containers the reader follows: far beyond any checkpoint, low enough that
/// a list holding itself is an error, not a stack overflow.
const MAX_DEPTH: usize = 64;

/// The most elements a tensor whose view repeats its storage's elements may have (2^26:
/// 512 MiB once decoded; the paper model's largest tensor has 2.4 million).
const MAX_REPEATED_VIEW: usize = 1 << 26;

impl Checkpoint {
    /// Parses the bytes of a `torch.save` file. The error says what is wrong.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Checkpoint, String> {
        // The legacy format is a run of pickles (the first opens with PROTO); the zip
        // container opens with a local file header.
        if bytes.starts_with(&[0x80]) {
            return Err(
                "a checkpoint in PyTorch's legacy format (saved by PyTorch before 1.6 \
                 or with _use_new_zipfile_serialization=False); load it and save it again \
                 with a current PyTorch"
                    .into(),
            );
        }
        let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
            .map_err(|e| format!("not a PyTorch checkpoint (zip container): {e}"))?;
        let pkl = archive
            .file_names()
            .filter_map(Result::ok)
            .filter(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
            .map(|n| n.to_string())
            .min()
            .ok_or("not a PyTorch checkpoint: no <name>/data.pkl in the zip container")?;
        let prefix = pkl.trim_end_matches("data.pkl").to_string();
        if let Ok(order) = read_entry(&mut archive, &format!("{prefix}byteorder")) {
            if order.trim_ascii() != b"little" {
                return Err(format!(
                    "storages saved {}-endian; only little-endian is read",
                    String::from_utf8_lossy(order.trim_ascii())
                ));
            }
        }
        let pickle = read_entry(&mut archive, &pkl)?;
        let root = Machine::default().run(&pickle)?;
        Ok(Checkpoint {
            root,
            prefix,
            archive,
        })
    }

    /// The saved object.
    pub fn root(&self) -> &Value {
        &self.root
    }

    /// The values of `t`, read from its storage.
    pub fn tensor(&mut self, t: &TensorRef) -> Result<TensorData, String> {
        let (size, decode): (usize, fn(&[u8]) -> Elem) = match t.storage.as_str() {
            "FloatStorage" => (4, |b| Elem::F(f32::from_le_bytes(arr(b)) as f64)),
            "DoubleStorage" => (8, |b| Elem::F(f64::from_le_bytes(arr(b)))),
            "HalfStorage" => (2, |b| Elem::F(f16_to_f64(u16::from_le_bytes(arr(b))))),
            "BFloat16Storage" => (2, |b| {
                Elem::F(f32::from_bits((u16::from_le_bytes(arr(b)) as u32) << 16) as f64)
            }),
            "LongStorage" => (8, |b| Elem::I(i64::from_le_bytes(arr(b)))),
            "IntStorage" => (4, |b| Elem::I(i32::from_le_bytes(arr(b)) as i64)),
            other => return Err(format!("tensor of {other}: not a type this reader decodes")),
        };
        let bytes = read_entry(&mut self.archive, &format!("{}data/{}", self.prefix, t.key))?;
        if bytes.len() % size != 0 {
            return Err(format!(
                "storage {} holds {} bytes, not whole {}-byte elements",
                t.key,
                bytes.len(),
                size
            ));
        }
        let len = bytes.len() / size;
        let count = t
            .shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or("tensor size overflows")?;
        // A view may repeat elements (stride 0), but not so many that decoding it would
        // exhaust memory: checkpoints hold plain weights, never huge broadcast views.
        if count > len.max(MAX_REPEATED_VIEW) {
            return Err(format!(
                "tensor of {count} elements viewing storage {} of {len}: too large a view",
                t.key
            ));
        }
        // The last element the view reaches must lie inside the storage.
        if count > 0 {
            let reach = t
                .shape
                .iter()
                .zip(&t.stride)
                .try_fold(t.offset, |a, (&d, &s)| {
                    a.checked_add((d - 1).checked_mul(s)?)
                })
                .ok_or("tensor view overflows")?;
            if reach >= len {
                return Err(format!(
                    "tensor view reaches element {reach} of storage {}, which holds {len}",
                    t.key
                ));
            }
        }
        let mut index = vec![0usize; t.shape.len()];
        let mut floats = Vec::new();
        let mut ints = Vec::new();
        for _ in 0..count {
            let at = t.offset
                + index
                    .iter()
                    .zip(&t.stride)
                    .map(|(i, s)| i * s)
                    .sum::<usize>();
            match decode(&bytes[at * size..(at + 1) * size]) {
                Elem::F(v) => floats.push(v),
                Elem::I(v) => ints.push(v),
            }
            // Row-major order: the last index moves fastest.
            for (i, &d) in index.iter_mut().zip(&t.shape).rev() {
                *i += 1;
                if *i < d {
                    break;
                }
                *i = 0;
            }
        }
        // One of the two is empty: a storage type decodes to one kind.
        Ok(if ints.is_empty() {
            TensorData::Float(floats)
        } else {
            TensorData::Int(ints)
        })
    }
}

enum Elem {
    F(f64),
    I(i64),
}

fn arr<const N: usize>(b: &[u8]) -> [u8; N] {
    b.try_into().expect("slice of the element size")
}

/// IEEE binary16 to f64 (subnormals, infinities and NaN included).
fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let frac = (h & 0x3ff) as f64;
    sign * match exp {
        0 => frac * 2f64.powi(-24),
        31 if frac == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        e => (1.0 + frac / 1024.0) * 2f64.powi(e - 15),
    }
}

fn read_entry(
    archive: &mut zip::ZipArchive<Cursor<Vec<u8>>>,
    name: &str,
) -> Result<Vec<u8>, String> {
    let mut f = archive
        .by_name(name)
        .map_err(|e| format!("entry {name} of the zip container: {e}"))?;
    let mut out = Vec::new();
    f.read_to_end(&mut out)
        .map_err(|e| format!("entry {name} of the zip container: {e}"))?;
    Ok(out)
}

/// A node of the machine's heap: containers are mutated in place (pickles fill a dict or list
/// after memoising it, and may refer to it again later).
#[derive(Debug, Clone)]
enum Node {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<usize>),
    List(Vec<usize>),
    Dict(Vec<(usize, usize)>),
    Global(String, String),
    Storage(String, String),
    Tensor(TensorRef),
    Object(String),
}

/// An item of the pickle stack: a mark or a node of the heap.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Item {
    Mark,
    At(usize),
}

#[derive(Default)]
struct Machine {
    heap: Vec<Node>,
    stack: Vec<Item>,
    memo: HashMap<u32, usize>,
}

/// Reads from a pickle, failing on truncation.
struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| format!("pickle truncated at byte {}", self.pos))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(arr(self.take(4)?)))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(arr(self.take(8)?)))
    }
    fn line(&mut self) -> Result<String, String> {
        let rest = &self.b[self.pos..];
        let n = rest
            .iter()
            .position(|&c| c == b'\n')
            .ok_or("pickle truncated in a GLOBAL")?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }
    fn text(&mut self, n: usize) -> Result<String, String> {
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "a str not in UTF-8".to_string())
    }
}

impl Machine {
    fn push(&mut self, n: Node) {
        self.heap.push(n);
        self.stack.push(Item::At(self.heap.len() - 1));
    }

    fn pop(&mut self) -> Result<usize, String> {
        match self.stack.pop() {
            Some(Item::At(i)) => Ok(i),
            Some(Item::Mark) => Err("pickle: a mark where a value was expected".into()),
            None => Err("pickle: stack underflow".into()),
        }
    }

    fn top(&self) -> Result<usize, String> {
        match self.stack.last() {
            Some(Item::At(i)) => Ok(*i),
            _ => Err("pickle: no value on the stack".into()),
        }
    }

    /// The values above the topmost mark, which is removed.
    fn pop_mark(&mut self) -> Result<Vec<usize>, String> {
        let m = self
            .stack
            .iter()
            .rposition(|&i| i == Item::Mark)
            .ok_or("pickle: no mark")?;
        let items = self.stack.split_off(m + 1);
        self.stack.pop();
        Ok(items
            .into_iter()
            .map(|i| match i {
                Item::At(i) => i,
                Item::Mark => unreachable!("the topmost mark is at m"),
            })
            .collect())
    }

    fn memo_get(&mut self, k: u32) -> Result<(), String> {
        let i = *self
            .memo
            .get(&k)
            .ok_or_else(|| format!("pickle: memo {k} read before it was written"))?;
        self.stack.push(Item::At(i));
        Ok(())
    }

    fn str_of(&self, i: usize) -> Option<&str> {
        match &self.heap[i] {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    fn int_of(&self, i: usize) -> Result<usize, String> {
        match self.heap[i] {
            Node::Int(v) if v >= 0 => Ok(v as usize),
            _ => Err("pickle: a tensor's size, stride or offset is not a non-negative int".into()),
        }
    }

    fn ints_of(&self, i: usize) -> Result<Vec<usize>, String> {
        match &self.heap[i] {
            Node::Tuple(v) | Node::List(v) => v.iter().map(|&j| self.int_of(j)).collect(),
            _ => Err("pickle: a tensor's size or stride is not a tuple".into()),
        }
    }

    fn set_items(&mut self, dict: usize, kv: &[usize]) -> Result<(), String> {
        if !kv.len().is_multiple_of(2) {
            return Err("pickle: SETITEMS with an odd number of values".into());
        }
        match &mut self.heap[dict] {
            Node::Dict(items) => {
                for p in kv.chunks_exact(2) {
                    items.push((p[0], p[1]));
                }
                Ok(())
            }
            // Items set on an object this reader does not build: dropped with it.
            Node::Object(_) => Ok(()),
            _ => Err("pickle: SETITEM on a value that is not a dict".into()),
        }
    }

    fn append(&mut self, list: usize, vals: &[usize]) -> Result<(), String> {
        match &mut self.heap[list] {
            Node::List(items) => {
                items.extend_from_slice(vals);
                Ok(())
            }
            Node::Object(_) => Ok(()),
            _ => Err("pickle: APPEND on a value that is not a list".into()),
        }
    }

    /// `callable(*args)` for the callables a checkpoint uses; anything else is an object.
    fn reduce(&mut self, f: usize, args: usize) -> Result<Node, String> {
        let Node::Global(module, name) = self.heap[f].clone() else {
            return Ok(Node::Object("<result of a call>".into()));
        };
        let args = match &self.heap[args] {
            Node::Tuple(a) => a.clone(),
            _ => return Err("pickle: REDUCE arguments are not a tuple".into()),
        };
        Ok(match (module.as_str(), name.as_str()) {
            ("collections", "OrderedDict") => Node::Dict(Vec::new()),
            ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") => {
                if args.len() < 4 {
                    return Err("pickle: _rebuild_tensor_v2 with too few arguments".into());
                }
                let Node::Storage(storage, key) = self.heap[args[0]].clone() else {
                    return Err("pickle: a tensor whose storage is not a saved storage".into());
                };
                let (shape, stride) = (self.ints_of(args[2])?, self.ints_of(args[3])?);
                if shape.len() != stride.len() {
                    return Err("pickle: a tensor's size and stride differ in length".into());
                }
                Node::Tensor(TensorRef {
                    storage,
                    key,
                    offset: self.int_of(args[1])?,
                    shape,
                    stride,
                })
            }
            ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
                match args.first().map(|&a| &self.heap[a]) {
                    Some(t @ Node::Tensor(_)) => t.clone(),
                    _ => return Err("pickle: a parameter that does not hold a tensor".into()),
                }
            }
            _ => Node::Object(format!("{module}.{name}")),
        })
    }

    fn run(mut self, pickle: &[u8]) -> Result<Value, String> {
        let mut r = Reader { b: pickle, pos: 0 };
        loop {
            let op = r.u8()?;
            match op {
                0x80 => {
                    let p = r.u8()?;
                    if p > 5 {
                        return Err(format!("pickle protocol {p}: at most 5 is read"));
                    }
                }
                0x95 => {
                    r.u64()?; // FRAME: a length hint
                }
                b'.' => {
                    let top = self.pop()?;
                    // Each reference expands once: at most one per byte of the pickle for any
                    // file, so more means containers shared over and over (a bomb).
                    let mut budget = pickle.len() + 1024;
                    return self.value(top, 0, &mut budget);
                }
                b'(' => self.stack.push(Item::Mark),
                b'N' => self.push(Node::None),
                0x88 => self.push(Node::Bool(true)),
                0x89 => self.push(Node::Bool(false)),
                b'K' => {
                    let v = r.u8()? as i64;
                    self.push(Node::Int(v))
                }
                b'M' => {
                    let v = u16::from_le_bytes(arr(r.take(2)?)) as i64;
                    self.push(Node::Int(v))
                }
                b'J' => {
                    let v = i32::from_le_bytes(arr(r.take(4)?)) as i64;
                    self.push(Node::Int(v))
                }
                0x8a => {
                    let n = r.u8()? as usize;
                    if n > 8 {
                        return Err("pickle: an int beyond 64 bits".into());
                    }
                    let b = r.take(n)?;
                    let mut v: i64 = 0;
                    for (k, &byte) in b.iter().enumerate() {
                        v |= (byte as i64) << (8 * k);
                    }
                    if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n); // two's complement of n bytes
                    }
                    self.push(Node::Int(v))
                }
                b'G' => {
                    let v = f64::from_be_bytes(arr(r.take(8)?));
                    self.push(Node::Float(v))
                }
                b'X' => {
                    let n = r.u32()? as usize;
                    let s = r.text(n)?;
                    self.push(Node::Str(s))
                }
                0x8c => {
                    let n = r.u8()? as usize;
                    let s = r.text(n)?;
                    self.push(Node::Str(s))
                }
                0x8d => {
                    let n = usize::try_from(r.u64()?).map_err(|_| "pickle: str too long")?;
                    let s = r.text(n)?;
                    self.push(Node::Str(s))
                }
                b'T' | b'B' => {
                    let n = r.u32()? as usize;
                    let b = r.take(n)?.to_vec();
                    self.push(Node::Bytes(b))
                }
                b'U' | b'C' => {
                    let n = r.u8()? as usize;
                    let b = r.take(n)?.to_vec();
                    self.push(Node::Bytes(b))
                }
                b'}' => self.push(Node::Dict(Vec::new())),
                b']' => self.push(Node::List(Vec::new())),
                b')' => self.push(Node::Tuple(Vec::new())),
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Node::Tuple(items))
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = (0..n).map(|_| self.pop()).collect::<Result<Vec<_>, _>>()?;
                    items.reverse();
                    self.push(Node::Tuple(items))
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Node::List(items))
                }
                b'd' => {
                    let kv = self.pop_mark()?;
                    self.push(Node::Dict(Vec::new()));
                    let d = self.top()?;
                    self.set_items(d, &kv)?;
                }
                b'q' => {
                    let k = r.u8()? as u32;
                    self.memo.insert(k, self.top()?);
                }
                b'r' => {
                    let k = r.u32()?;
                    self.memo.insert(k, self.top()?);
                }
                0x94 => {
                    let k = self.memo.len() as u32;
                    self.memo.insert(k, self.top()?);
                }
                b'h' => {
                    let k = r.u8()? as u32;
                    self.memo_get(k)?
                }
                b'j' => {
                    let k = r.u32()?;
                    self.memo_get(k)?
                }
                b'c' => {
                    let (m, n) = (r.line()?, r.line()?);
                    self.push(Node::Global(m, n))
                }
                0x93 => {
                    let n = self.pop()?;
                    let m = self.pop()?;
                    let (Some(m), Some(n)) = (self.str_of(m), self.str_of(n)) else {
                        return Err("pickle: STACK_GLOBAL of values that are not str".into());
                    };
                    let g = Node::Global(m.to_string(), n.to_string());
                    self.push(g)
                }
                b'Q' => {
                    // A persistent id: ('storage', storage type, key, location, size).
                    let pid = self.pop()?;
                    let Node::Tuple(parts) = self.heap[pid].clone() else {
                        return Err("pickle: a persistent id that is not a tuple".into());
                    };
                    let storage = match parts.as_slice() {
                        [tag, ty, key, ..] if self.str_of(*tag) == Some("storage") => {
                            let ty = match &self.heap[*ty] {
                                Node::Global(_, name) => name.clone(),
                                _ => return Err("pickle: a storage of unknown type".into()),
                            };
                            let key = self
                                .str_of(*key)
                                .ok_or("pickle: a storage key that is not a str")?
                                .to_string();
                            if key.contains('/') || key.contains("..") {
                                return Err(format!("pickle: storage key `{key}`"));
                            }
                            Node::Storage(ty, key)
                        }
                        _ => return Err("pickle: a persistent id that is not a storage".into()),
                    };
                    self.push(storage)
                }
                b'R' => {
                    let args = self.pop()?;
                    let f = self.pop()?;
                    let n = self.reduce(f, args)?;
                    self.push(n)
                }
                0x81 => {
                    let _args = self.pop()?;
                    let cls = self.pop()?;
                    let name = match &self.heap[cls] {
                        Node::Global(m, n) => format!("{m}.{n}"),
                        _ => "<object>".into(),
                    };
                    self.push(Node::Object(name))
                }
                b'b' => {
                    // BUILD: state set on the object below (an OrderedDict's _metadata, an
                    // object's attributes): dropped; the object stays.
                    self.pop()?;
                    self.top()?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let d = self.top()?;
                    self.set_items(d, &[k, v])?;
                }
                b'u' => {
                    let kv = self.pop_mark()?;
                    let d = self.top()?;
                    self.set_items(d, &kv)?;
                }
                b'a' => {
                    let v = self.pop()?;
                    let l = self.top()?;
                    self.append(l, &[v])?;
                }
                b'e' => {
                    let vals = self.pop_mark()?;
                    let l = self.top()?;
                    self.append(l, &vals)?;
                }
                b'0' => {
                    self.stack.pop().ok_or("pickle: POP of an empty stack")?;
                }
                b'2' => {
                    let t = *self.stack.last().ok_or("pickle: DUP of an empty stack")?;
                    self.stack.push(t);
                }
                other => {
                    return Err(format!(
                        "pickle: opcode 0x{other:02x} at byte {} is not one torch.save writes",
                        r.pos - 1
                    ))
                }
            }
        }
    }

    /// The heap node `i` as a value tree.
    fn value(&self, i: usize, depth: usize, budget: &mut usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err(format!("pickle: containers nested over {MAX_DEPTH} deep"));
        }
        *budget = budget
            .checked_sub(1)
            .ok_or("pickle: the same containers referred to over and over")?;
        let mut all = |v: &[usize]| {
            v.iter()
                .map(|&j| self.value(j, depth + 1, budget))
                .collect::<Result<Vec<_>, String>>()
        };
        Ok(match &self.heap[i] {
            Node::None => Value::None,
            Node::Bool(b) => Value::Bool(*b),
            Node::Int(v) => Value::Int(*v),
            Node::Float(v) => Value::Float(*v),
            Node::Str(s) => Value::Str(s.clone()),
            Node::Bytes(b) => Value::Bytes(b.clone()),
            Node::Tuple(v) => Value::Tuple(all(v)?),
            Node::List(v) => Value::List(all(v)?),
            Node::Dict(kv) => {
                let mut items = Vec::with_capacity(kv.len());
                for &(k, v) in kv {
                    let k = self.value(k, depth + 1, budget)?;
                    items.push((k, self.value(v, depth + 1, budget)?));
                }
                Value::Dict(items)
            }
            Node::Tensor(t) => Value::Tensor(t.clone()),
            Node::Global(m, n) => Value::Object(format!("{m}.{n}")),
            Node::Storage(ty, _) => Value::Object(format!("torch.{ty}")),
            Node::Object(name) => Value::Object(name.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pickle of a checkpoint PyTorch wrote (the official script's saved_dict).
    fn official_pickle() -> Vec<u8> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/engine/official_concat.pth"
        );
        let bytes = std::fs::read(path).unwrap();
        let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
        read_entry(&mut archive, "official_concat/data.pkl").unwrap()
    }

    #[test]
    fn official_pickle_gives_its_dict() {
        let root = Machine::default().run(&official_pickle()).unwrap();
        assert_eq!(root.get("fusion"), Some(&Value::Str("concat".into())));
        assert_eq!(root.get("saved_epoch"), Some(&Value::Int(3)));
        let Some(Value::Dict(sd)) = root.get("model") else {
            panic!("no state_dict under 'model'");
        };
        assert_eq!(sd.len(), 146);
        let (_, v) = sd
            .iter()
            .find(|(k, _)| k == &Value::Str("module.audio_net.conv1.weight".into()))
            .expect("the audio stem's weight");
        let Value::Tensor(t) = v else {
            panic!("not a tensor: {v:?}")
        };
        assert_eq!(
            (t.storage.as_str(), t.shape.as_slice()),
            ("FloatStorage", &[2, 1, 7, 7][..])
        );
        assert_eq!(t.stride, [49, 49, 7, 1]);
    }

    /// Truncated or altered pickles give a value or an error, never a panic or a hang:
    /// every cut, and one byte flipped at a time all along the pickle.
    #[test]
    fn damaged_pickles_never_panic() {
        let p = official_pickle();
        let mut errors = 0;
        for cut in (0..p.len()).step_by(13) {
            errors += usize::from(Machine::default().run(&p[..cut]).is_err());
        }
        assert_eq!(errors, p.len().div_ceil(13), "every cut pickle is an error");
        for at in (0..p.len()).step_by(11) {
            for flip in [0xff, 0x01] {
                let mut q = p.clone();
                q[at] ^= flip;
                let _ = Machine::default().run(&q);
            }
        }
    }

    /// A list holding itself, and containers shared over and over, are errors.
    #[test]
    fn cycles_and_bombs_are_errors() {
        // ] q0 h0 a . : a list appended to itself.
        let cycle = [b']', b'q', 0, b'h', 0, b'a', b'.'];
        let e = Machine::default().run(&cycle).unwrap_err();
        assert!(e.contains("nested"), "{e}");
        // A list of the same list twice, 40 times over: 2^40 references.
        let mut bomb = vec![b']'];
        for _ in 0..40 {
            bomb.extend_from_slice(&[b'q', 0, b'(', b'h', 0, b'h', 0, b'l']);
        }
        bomb.push(b'.');
        let e = Machine::default().run(&bomb).unwrap_err();
        assert!(e.contains("over and over"), "{e}");
    }

    /// Views past the end of their storage, or repeating it without bound, are errors; the
    /// view as saved reads, and reads in row-major order of its strides.
    #[test]
    fn tensor_views_are_checked() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/engine/official_concat.pth"
        );
        let mut ck = Checkpoint::from_bytes(std::fs::read(path).unwrap()).unwrap();
        let Some(Value::Tensor(t)) = ck
            .root()
            .get("model")
            .and_then(|m| m.get("module.audio_net.conv1.weight"))
            .cloned()
        else {
            panic!("no audio stem weight");
        };
        let TensorData::Float(w) = ck.tensor(&t).unwrap() else {
            panic!("a float tensor read as ints");
        };
        assert_eq!(w.len(), 2 * 49);
        // The transpose of its two output channels: element [i][o] is w[o][i].
        let tr = TensorRef {
            shape: vec![49, 2],
            stride: vec![1, 49],
            ..t.clone()
        };
        let TensorData::Float(wt) = ck.tensor(&tr).unwrap() else {
            panic!("a float tensor read as ints");
        };
        assert_eq!((wt[1], wt[2 * 48]), (w[49], w[48]));
        let past = TensorRef {
            offset: 1,
            ..t.clone()
        };
        let e = ck.tensor(&past).unwrap_err();
        assert!(e.contains("reaches element 98"), "{e}");
        let repeated = TensorRef {
            shape: vec![1 << 40],
            stride: vec![0],
            ..t
        };
        let e = ck.tensor(&repeated).unwrap_err();
        assert!(e.contains("too large a view"), "{e}");
    }

    #[test]
    fn half_precision_values() {
        assert_eq!(f16_to_f64(0x3c00), 1.0);
        assert_eq!(f16_to_f64(0xc000), -2.0);
        assert_eq!(f16_to_f64(0x0001), 2f64.powi(-24));
        assert_eq!(f16_to_f64(0x7bff), 65504.0);
        assert_eq!(f16_to_f64(0x7c00), f64::INFINITY);
        assert!(f16_to_f64(0x7e00).is_nan());
    }
}
