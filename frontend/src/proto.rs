//! Reading ONNX protobuf files, and converting `TensorProto` to and from
//! [`Tensor`] (every storage form ONNX allows: `raw_data`, the typed fields,
//! packed sub-byte types, fp8/fp4 codes, external data files).

use crate::error::ImportError;
use half::{bf16, f16};
use onnx_protobuf::tensor_proto::DataLocation;
use onnx_protobuf::{Message, ModelProto, StringStringEntryProto, TensorProto};
use protobuf::Enum;
use std::path::{Component, Path};
use tessera_ir::{DType, Data, Tensor};

/// ONNX `TensorProto.DataType` codes. The generated bindings stop at INT4
/// (IR v9); the newer codes arrive as plain numbers.
const ONNX_TYPES: &[(i32, DType)] = &[
    (1, DType::F32),
    (2, DType::U8),
    (3, DType::I8),
    (4, DType::U16),
    (5, DType::I16),
    (6, DType::I32),
    (7, DType::I64),
    (8, DType::Str),
    (9, DType::Bool),
    (10, DType::F16),
    (11, DType::F64),
    (12, DType::U32),
    (13, DType::U64),
    (14, DType::Complex64),
    (15, DType::Complex128),
    (16, DType::BF16),
    (17, DType::F8E4M3FN),
    (18, DType::F8E4M3FNUZ),
    (19, DType::F8E5M2),
    (20, DType::F8E5M2FNUZ),
    (21, DType::U4),
    (22, DType::I4),
    (23, DType::F4E2M1),
    (24, DType::F8E8M0),
    (25, DType::U2),
    (26, DType::I2),
];

const ONNX_TYPE_NAMES: &[&str] = &[
    "UNDEFINED",
    "FLOAT",
    "UINT8",
    "INT8",
    "UINT16",
    "INT16",
    "INT32",
    "INT64",
    "STRING",
    "BOOL",
    "FLOAT16",
    "DOUBLE",
    "UINT32",
    "UINT64",
    "COMPLEX64",
    "COMPLEX128",
    "BFLOAT16",
    "FLOAT8E4M3FN",
    "FLOAT8E4M3FNUZ",
    "FLOAT8E5M2",
    "FLOAT8E5M2FNUZ",
    "UINT4",
    "INT4",
    "FLOAT4E2M1",
    "FLOAT8E8M0",
    "UINT2",
    "INT2",
    "FLOAT6E2M3",
    "FLOAT6E3M2",
];

/// The ONNX name of a data type code (`FLOAT`, `INT4`...).
pub fn onnx_type_name(code: i32) -> String {
    usize::try_from(code)
        .ok()
        .and_then(|i| ONNX_TYPE_NAMES.get(i))
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("data type #{code}"))
}

/// The element type of an ONNX data type code.
pub fn dtype_from_onnx(code: i32) -> Result<DType, String> {
    ONNX_TYPES
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, d)| *d)
        .ok_or_else(|| format!("unsupported ONNX element type {}", onnx_type_name(code)))
}

/// The ONNX data type code of an element type.
pub fn dtype_to_onnx(d: DType) -> Result<i32, String> {
    ONNX_TYPES
        .iter()
        .find(|(_, t)| *t == d)
        .map(|(c, _)| *c)
        .ok_or_else(|| format!("element type {d} has no ONNX equivalent"))
}

/// The ONNX type name for a string like Cast-1's `to = "FLOAT"`.
pub fn dtype_from_onnx_name(name: &str) -> Result<DType, String> {
    let code = ONNX_TYPE_NAMES
        .iter()
        .position(|n| n.eq_ignore_ascii_case(name))
        .ok_or_else(|| format!("unknown ONNX element type '{name}'"))?;
    dtype_from_onnx(code as i32)
}

/// Parses an ONNX model from bytes, rejecting truncated or corrupt data.
pub fn parse_model(bytes: &[u8]) -> Result<ModelProto, ImportError> {
    let model = ModelProto::parse_from_bytes(bytes).map_err(|e| {
        ImportError::Parse(format!(
            "cannot parse the ONNX model ({} bytes): {e}; the file is truncated, corrupt or not an ONNX model",
            bytes.len()
        ))
    })?;
    if model.graph.is_none() {
        return Err(ImportError::Parse(format!(
            "not an ONNX model: no graph in {} bytes (the file is empty, truncated or of another kind)",
            bytes.len()
        )));
    }
    Ok(model)
}

pub fn read_file(path: &Path) -> Result<Vec<u8>, ImportError> {
    std::fs::read(path).map_err(|e| ImportError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Number of elements of `dims`, rejecting negative dims and overflow.
pub fn element_count(dims: &[i64]) -> Result<(Vec<usize>, usize), String> {
    let mut shape = Vec::with_capacity(dims.len());
    let mut n: usize = 1;
    for &d in dims {
        let d = usize::try_from(d).map_err(|_| format!("negative dimension {d} in {dims:?}"))?;
        n = n
            .checked_mul(d)
            .ok_or_else(|| format!("shape {dims:?} has too many elements"))?;
        shape.push(d);
    }
    Ok((shape, n))
}

fn entry<'a>(entries: &'a [StringStringEntryProto], key: &str) -> Option<&'a str> {
    entries
        .iter()
        .find(|e| e.key == key)
        .map(|e| e.value.as_str())
}

/// Reads the bytes of an external-data tensor: `location` relative to the
/// model's directory (never absolute nor outside it), `offset`, `length`.
fn external_bytes(t: &TensorProto, base_dir: Option<&Path>) -> Result<Vec<u8>, String> {
    let loc = entry(&t.external_data, "location").ok_or("external data without a 'location'")?;
    let base = base_dir.ok_or_else(|| {
        format!("its data is in the external file '{loc}', but the model was given as bytes without a directory")
    })?;
    let rel = Path::new(loc);
    if rel
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!(
            "external data location '{loc}' must be a relative path inside the model directory"
        ));
    }
    let parse = |key: &str| -> Result<Option<u64>, String> {
        entry(&t.external_data, key)
            .map(|v| {
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| format!("external data {key} '{v}' is not a number"))
            })
            .transpose()
    };
    let offset = parse("offset")?.unwrap_or(0);
    let length = parse("length")?;
    let path = base.join(rel);
    let data = std::fs::read(&path)
        .map_err(|e| format!("cannot read external data '{}': {e}", path.display()))?;
    let start = usize::try_from(offset).ok().filter(|&o| o <= data.len());
    let start = start.ok_or_else(|| {
        format!(
            "external data offset {offset} is past the end of '{}' ({} bytes)",
            path.display(),
            data.len()
        )
    })?;
    let end = match length {
        Some(l) => start
            .checked_add(usize::try_from(l).unwrap_or(usize::MAX))
            .filter(|&e| e <= data.len())
            .ok_or_else(|| {
                format!(
                    "external data '{}' is too short: {l} bytes at offset {offset}, file has {}",
                    path.display(),
                    data.len()
                )
            })?,
        None => data.len(),
    };
    Ok(data[start..end].to_vec())
}

/// Converts a `TensorProto` into a [`Tensor`]. `base_dir` is the model's
/// directory, for tensors stored in external files.
pub fn tensor_from_proto(t: &TensorProto, base_dir: Option<&Path>) -> Result<Tensor, String> {
    let dtype = dtype_from_onnx(t.data_type)?;
    let (shape, n) = element_count(&t.dims)?;
    if t.segment.is_some() {
        return Err("segmented tensors are not supported".into());
    }
    let external = t.data_location.value() == DataLocation::EXTERNAL.value();
    if external {
        let bytes = external_bytes(t, base_dir)?;
        return raw_tensor(dtype, shape, n, &bytes);
    }
    if !t.raw_data.is_empty() || (n == 0 && dtype != DType::Str) {
        return raw_tensor(dtype, shape, n, &t.raw_data);
    }
    typed_tensor(t, dtype, shape, n)
}

fn raw_tensor(dtype: DType, shape: Vec<usize>, n: usize, bytes: &[u8]) -> Result<Tensor, String> {
    if dtype == DType::Str {
        return Err("string tensors must use string_data, not raw_data".into());
    }
    let need = byte_len(dtype, n)?;
    if bytes.len() != need {
        return Err(format!(
            "raw data has {} bytes, {n} elements of {dtype} need {need}",
            bytes.len()
        ));
    }
    Tensor::from_bytes(dtype, shape, bytes)
}

/// Bytes of `n` elements of `dtype` (packed when sub-byte), checked: the
/// count comes from the file's dims.
fn byte_len(dtype: DType, n: usize) -> Result<usize, String> {
    n.checked_mul(dtype.bits())
        .map(|b| b.div_ceil(8))
        .ok_or_else(|| format!("{n} elements of {dtype} are too many"))
}

/// Checks that a typed field holds `want` entries.
fn field_len<T>(field: &[T], want: usize, field_name: &str, dtype: DType) -> Result<(), String> {
    if field.len() == want {
        return Ok(());
    }
    if field.is_empty() {
        return Err(format!(
            "tensor has no data ({want} entries of {field_name} expected for {dtype})"
        ));
    }
    Err(format!(
        "{field_name} has {} entries, {want} expected for {dtype}",
        field.len()
    ))
}

fn typed_tensor(
    t: &TensorProto,
    dtype: DType,
    shape: Vec<usize>,
    n: usize,
) -> Result<Tensor, String> {
    // Complex values take two entries.
    let pairs = n.checked_mul(2).ok_or("too many elements")?;
    let i32s =
        |want: usize| field_len(&t.int32_data, want, "int32_data", dtype).map(|_| &t.int32_data);
    let data = match dtype {
        DType::F32 => {
            field_len(&t.float_data, n, "float_data", dtype)?;
            Data::F32(t.float_data.clone())
        }
        DType::Complex64 => {
            field_len(&t.float_data, pairs, "float_data", dtype)?;
            Data::C64(t.float_data.clone())
        }
        DType::F64 => {
            field_len(&t.double_data, n, "double_data", dtype)?;
            Data::F64(t.double_data.clone())
        }
        DType::Complex128 => {
            field_len(&t.double_data, pairs, "double_data", dtype)?;
            Data::C128(t.double_data.clone())
        }
        DType::I64 => {
            field_len(&t.int64_data, n, "int64_data", dtype)?;
            Data::I64(t.int64_data.clone())
        }
        DType::U64 => {
            field_len(&t.uint64_data, n, "uint64_data", dtype)?;
            Data::U64(t.uint64_data.clone())
        }
        DType::U32 => {
            field_len(&t.uint64_data, n, "uint64_data", dtype)?;
            Data::U32(t.uint64_data.iter().map(|&x| x as u32).collect())
        }
        DType::I32 => Data::I32(i32s(n)?.clone()),
        DType::I16 => Data::I16(i32s(n)?.iter().map(|&x| x as i16).collect()),
        DType::I8 => Data::I8(i32s(n)?.iter().map(|&x| x as i8).collect()),
        DType::U16 => Data::U16(i32s(n)?.iter().map(|&x| x as u16).collect()),
        DType::U8 => Data::U8(i32s(n)?.iter().map(|&x| x as u8).collect()),
        DType::Bool => Data::Bool(i32s(n)?.iter().map(|&x| x != 0).collect()),
        // 16-bit floats and fp8 are stored as their bit patterns.
        DType::F16 => Data::F16(i32s(n)?.iter().map(|&x| f16::from_bits(x as u16)).collect()),
        DType::BF16 => Data::BF16(
            i32s(n)?
                .iter()
                .map(|&x| bf16::from_bits(x as u16))
                .collect(),
        ),
        DType::F8E4M3FN | DType::F8E4M3FNUZ | DType::F8E5M2 | DType::F8E5M2FNUZ | DType::F8E8M0 => {
            Data::U8(i32s(n)?.iter().map(|&x| x as u8).collect())
        }
        // Sub-byte types: each int32 entry holds one packed byte.
        DType::I4 | DType::U4 | DType::F4E2M1 | DType::I2 | DType::U2 => {
            let bytes: Vec<u8> = i32s(byte_len(dtype, n)?)?
                .iter()
                .map(|&x| x as u8)
                .collect();
            return Tensor::from_bytes(dtype, shape, &bytes);
        }
        DType::Str => {
            field_len(&t.string_data, n, "string_data", dtype)?;
            Data::Str(
                t.string_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect(),
            )
        }
        DType::Ternary => return Err("ternary tensors have no ONNX form".into()),
    };
    Tensor::new(dtype, shape, data)
}

/// Converts a [`Tensor`] to a `TensorProto` (`raw_data`, or `string_data`
/// for strings), named `name`.
pub fn tensor_to_proto(name: &str, t: &Tensor) -> Result<TensorProto, String> {
    let mut p = TensorProto::new();
    p.name = name.to_string();
    p.data_type = dtype_to_onnx(t.dtype)?;
    p.dims = t.shape.iter().map(|&d| d as i64).collect();
    match &t.data {
        Data::Str(v) => p.string_data = v.iter().map(|s| s.as_bytes().to_vec()).collect(),
        _ => p.raw_data = t.to_bytes(),
    }
    Ok(p)
}

/// Parses a serialized `TensorProto` (a `.pb` file of the ONNX test layout),
/// returning its name and value.
pub fn parse_tensor_pb(
    bytes: &[u8],
    base_dir: Option<&Path>,
) -> Result<(String, Tensor), ImportError> {
    let not_tensor = |why: String| {
        ImportError::Parse(format!(
            "not a serialized ONNX TensorProto ({} bytes): {why}",
            bytes.len()
        ))
    };
    let t = TensorProto::parse_from_bytes(bytes).map_err(|e| not_tensor(e.to_string()))?;
    // Other messages (SequenceProto, ModelProto...) often parse as a
    // TensorProto with stray fields; a real one has only known fields and a
    // valid element type.
    let unknown: Vec<u32> = t
        .special_fields
        .unknown_fields()
        .iter()
        .map(|(n, _)| n)
        .collect();
    if !unknown.is_empty() {
        return Err(not_tensor(format!("unknown field numbers {unknown:?}")));
    }
    if t.data_type == 0 {
        return Err(not_tensor("no element type".into()));
    }
    let v = tensor_from_proto(&t, base_dir).map_err(not_tensor)?;
    Ok((t.name.clone(), v))
}

/// Reads a `.pb` file holding one `TensorProto`.
pub fn read_tensor_pb(path: impl AsRef<Path>) -> Result<Tensor, ImportError> {
    read_named_tensor_pb(path).map(|(_, t)| t)
}

/// Reads a `.pb` file holding one `TensorProto`, with the tensor's name.
pub fn read_named_tensor_pb(path: impl AsRef<Path>) -> Result<(String, Tensor), ImportError> {
    let path = path.as_ref();
    let bytes = read_file(path)?;
    parse_tensor_pb(&bytes, path.parent()).map_err(|e| match e {
        ImportError::Parse(m) => ImportError::Parse(format!("{}: {m}", path.display())),
        e => e,
    })
}

/// Writes `t` as a `.pb` file holding one `TensorProto` named `name`.
pub fn write_tensor_pb(path: impl AsRef<Path>, name: &str, t: &Tensor) -> Result<(), ImportError> {
    let path = path.as_ref();
    let p = tensor_to_proto(name, t).map_err(ImportError::Invalid)?;
    let bytes = p
        .write_to_bytes()
        .map_err(|e| ImportError::Invalid(format!("cannot serialize '{name}': {e}")))?;
    std::fs::write(path, bytes).map_err(|e| ImportError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proto(dtype: i32, dims: &[i64]) -> TensorProto {
        let mut p = TensorProto::new();
        p.data_type = dtype;
        p.dims = dims.to_vec();
        p
    }

    #[test]
    fn int4_survives_proto_round_trip() {
        // onnx.helper.make_tensor('x', INT4, [5], [1, -2, 3, -8, 7]) stores the
        // packed bytes 0xE1, 0x83, 0x07 in int32_data.
        let mut p = proto(22, &[5]);
        p.int32_data = vec![225, 131, 7];
        let t = tensor_from_proto(&p, None).unwrap();
        assert_eq!(t.dtype, DType::I4);
        assert_eq!(t.to_i64_vec(), vec![1, -2, 3, -8, 7]);
        let back = tensor_to_proto("x", &t).unwrap();
        assert_eq!(back.raw_data, vec![0xE1, 0x83, 0x07]);
        assert_eq!(back.data_type, 22);
        assert_eq!(back.dims, vec![5]);
        assert_eq!(tensor_from_proto(&back, None).unwrap(), t);
    }

    #[test]
    fn uint2_and_fp4_from_int32_data() {
        // make_tensor('x', UINT2, [5], [1, 2, 3, 0, 1]) -> int32_data [57, 1]
        let mut p = proto(25, &[5]);
        p.int32_data = vec![57, 1];
        assert_eq!(
            tensor_from_proto(&p, None).unwrap().to_i64_vec(),
            vec![1, 2, 3, 0, 1]
        );
        // make_tensor('x', FLOAT4E2M1, [3], [1.0, -2.0, 6.0]) -> int32_data [194, 7]
        let mut p = proto(23, &[3]);
        p.int32_data = vec![194, 7];
        let t = tensor_from_proto(&p, None).unwrap();
        assert_eq!(t.to_f64_vec(), vec![1.0, -2.0, 6.0]);
        assert_eq!(
            tensor_from_proto(&tensor_to_proto("x", &t).unwrap(), None).unwrap(),
            t
        );
    }

    #[test]
    fn fp8_survives_proto_round_trip() {
        // make_tensor('x', FLOAT8E4M3FN, [3], [1.0, -2.0, 448.0]) -> int32_data [56, 192, 126]
        let mut p = proto(17, &[3]);
        p.int32_data = vec![56, 192, 126];
        let t = tensor_from_proto(&p, None).unwrap();
        assert_eq!(t.dtype, DType::F8E4M3FN);
        assert_eq!(t.to_f64_vec(), vec![1.0, -2.0, 448.0]);
        let back = tensor_to_proto("x", &t).unwrap();
        assert_eq!(back.raw_data, vec![56, 192, 126]);
        assert_eq!(tensor_from_proto(&back, None).unwrap(), t);
        // e5m2 in raw form: 0x3C is 1.0, 0x7C is +inf
        let mut p = proto(19, &[2]);
        p.raw_data = vec![0x3C, 0x7C];
        assert_eq!(
            tensor_from_proto(&p, None).unwrap().to_f64_vec(),
            vec![1.0, f64::INFINITY]
        );
    }

    #[test]
    fn half_floats_in_int32_data_and_bools_strings() {
        let mut p = proto(10, &[2]);
        p.int32_data = vec![0x3C00, 0xC000]; // 1.0, -2.0 in f16
        assert_eq!(
            tensor_from_proto(&p, None).unwrap().to_f64_vec(),
            vec![1.0, -2.0]
        );
        let mut p = proto(16, &[1]);
        p.int32_data = vec![0x3F80]; // 1.0 in bf16
        assert_eq!(tensor_from_proto(&p, None).unwrap().to_f64_vec(), vec![1.0]);
        let mut p = proto(9, &[3]);
        p.raw_data = vec![1, 0, 1];
        assert_eq!(
            tensor_from_proto(&p, None).unwrap().data,
            Data::Bool(vec![true, false, true])
        );
        let mut p = proto(8, &[2]);
        p.string_data = vec![b"ab".to_vec(), b"".to_vec()];
        let t = tensor_from_proto(&p, None).unwrap();
        assert_eq!(t.data, Data::Str(vec!["ab".into(), String::new()]));
        assert_eq!(
            tensor_from_proto(&tensor_to_proto("s", &t).unwrap(), None).unwrap(),
            t
        );
    }

    #[test]
    fn bad_tensors_are_errors() {
        let mut p = proto(1, &[3]);
        p.float_data = vec![1.0];
        assert!(tensor_from_proto(&p, None)
            .unwrap_err()
            .contains("float_data has 1 entries"));
        let p = proto(1, &[-1]);
        assert!(tensor_from_proto(&p, None)
            .unwrap_err()
            .contains("negative"));
        let p = proto(7, &[4]);
        assert!(tensor_from_proto(&p, None).unwrap_err().contains("no data"));
        let p = proto(27, &[1]);
        assert!(tensor_from_proto(&p, None)
            .unwrap_err()
            .contains("FLOAT6E2M3"));
        let mut p = proto(1, &[2]);
        p.raw_data = vec![0; 7];
        assert!(tensor_from_proto(&p, None).unwrap_err().contains("7 bytes"));
        // Element counts that fit but whose bit sizes overflow (found by fuzzing).
        let mut p = proto(22, &[1 << 62]);
        p.int32_data = vec![1];
        assert!(tensor_from_proto(&p, None)
            .unwrap_err()
            .contains("too many"));
        let mut p = proto(14, &[1 << 62, 2]);
        p.float_data = vec![1.0];
        assert!(tensor_from_proto(&p, None)
            .unwrap_err()
            .contains("too many"));
    }

    #[test]
    fn external_data_stays_inside_the_model_dir() {
        let dir = std::env::temp_dir().join(format!("tessera-ext-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("w.bin"),
            [0u8, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0, 64],
        )
        .unwrap();
        let mut p = proto(1, &[2]);
        p.data_location = DataLocation::EXTERNAL.into();
        let kv = |k: &str, v: &str| {
            let mut e = StringStringEntryProto::new();
            e.key = k.into();
            e.value = v.into();
            e
        };
        p.external_data = vec![
            kv("location", "w.bin"),
            kv("offset", "4"),
            kv("length", "8"),
        ];
        let t = tensor_from_proto(&p, Some(&dir)).unwrap();
        assert_eq!(t.to_f64_vec(), vec![1.0, 2.0]);
        assert!(tensor_from_proto(&p, None)
            .unwrap_err()
            .contains("without a directory"));
        p.external_data[0] = kv("location", "../w.bin");
        assert!(tensor_from_proto(&p, Some(&dir))
            .unwrap_err()
            .contains("relative path inside"));
        p.external_data[0] = kv("location", "w.bin");
        p.external_data[2] = kv("length", "12");
        assert!(tensor_from_proto(&p, Some(&dir))
            .unwrap_err()
            .contains("too short"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pb_files_round_trip_and_reject_other_messages() {
        let dir = std::env::temp_dir().join(format!("tessera-pb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let t = Tensor::f32(vec![2, 2], vec![1.0, -2.5, 3.0, 0.0]);
        let path = dir.join("t.pb");
        write_tensor_pb(&path, "x", &t).unwrap();
        assert_eq!(read_named_tensor_pb(&path).unwrap(), ("x".to_string(), t));
        let model_path = dir.join("m.pb");
        let mut m = ModelProto::new();
        m.ir_version = 9;
        m.producer_name = "test".into();
        std::fs::write(&model_path, m.write_to_bytes().unwrap()).unwrap();
        let err = read_tensor_pb(&model_path).unwrap_err().to_string();
        assert!(err.contains("not a serialized ONNX TensorProto"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn truncated_model_is_a_parse_error() {
        let mut m = ModelProto::new();
        m.graph.mut_or_insert_default().name = "g".into();
        let bytes = m.write_to_bytes().unwrap();
        assert!(parse_model(&bytes).is_ok());
        let err = parse_model(&bytes[..bytes.len() - 1])
            .unwrap_err()
            .to_string();
        assert!(err.contains("truncated"), "{err}");
        assert!(parse_model(&[])
            .unwrap_err()
            .to_string()
            .contains("no graph"));
    }
}
