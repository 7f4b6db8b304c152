use tessera_accel_isa::asm::{assemble, disassemble, format_insn, parse_insn};
use tessera_accel_isa::*;

/// xorshift64*: a tiny seeded PRNG so the property tests are reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % ((hi - lo + 1) as u64)) as i64
    }
}

/// A random instruction that passes `validate` (rejection sampling, bounded).
fn random_insn(rng: &mut Rng) -> Insn {
    for _ in 0..10_000 {
        let def = &INSNS[rng.range(0, INSNS.len() as i64 - 1) as usize];
        let vals: Vec<i64> = def
            .fields
            .iter()
            .map(|f| {
                // Bias towards small values and zeros so validity is likely and zero-omission is exercised.
                match rng.range(0, 3) {
                    0 => 0,
                    1 => rng.range(f.min().max(-3), f.max().min(3)),
                    _ => rng.range(f.min(), f.max()),
                }
            })
            .collect();
        let op = Op::from_values(def.opcode, &vals).unwrap();
        let b = rng.next();
        let insn = Insn::new(op).with_deps(b & 1 != 0, b & 2 != 0, b & 4 != 0, b & 8 != 0);
        if insn.validate().is_ok() {
            return insn;
        }
    }
    panic!("could not draw a valid instruction");
}

#[test]
fn table_fields_fit_and_do_not_overlap() {
    for d in INSNS {
        let mut used: u128 = (1 << FIELD_LO) - 1;
        for f in d.fields {
            assert!(
                f.lo >= FIELD_LO && f.lo + f.width <= 128,
                "{}.{} outside the word",
                d.mnemonic,
                f.name
            );
            let mask = ((1u128 << f.width) - 1) << f.lo;
            assert_eq!(
                used & mask,
                0,
                "{}.{} overlaps another field",
                d.mnemonic,
                f.name
            );
            used |= mask;
            if let Fmt::Enum(names) = f.fmt {
                assert!(
                    names.len() <= 1 << f.width,
                    "{}.{} has more names than codes",
                    d.mnemonic,
                    f.name
                );
            }
        }
    }
    let mut ops: Vec<u8> = INSNS.iter().map(|d| d.opcode).collect();
    ops.dedup();
    assert_eq!(ops.len(), INSNS.len());
    assert!(
        def_by_opcode(0).is_none(),
        "an all-zero word must not decode"
    );
}

#[test]
fn random_instructions_round_trip_binary_and_text() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for i in 0..20_000 {
        let insn = random_insn(&mut rng);
        let word = insn.encode().unwrap();
        assert_eq!(Insn::decode(word, i).unwrap(), insn);
        let text = format_insn(&insn);
        assert_eq!(parse_insn(&text).unwrap(), insn, "text: {text}");
        assert_eq!(format_insn(&parse_insn(&text).unwrap()), text);
    }
}

#[test]
fn known_encoding_bits() {
    // load push_next mem=acc elem_bytes=4 dram=0x10: opcode 1, push_next = bit 6,
    // mem=1 at bit 7, elem_bytes=2 at bits 9..11, dram at bit 11.
    let insn =
        parse_insn("load push_next mem=acc elem_bytes=4 dram=0x10 y_size=1 x_size=1").unwrap();
    let w = insn.encode().unwrap();
    let expect: u128 = 1 | 1 << 6 | 1 << 7 | 2 << 9 | 0x10 << 11 | 1 << 59 | 1 << 69;
    assert_eq!(w, expect);
    // Signed field: config value -2 occupies bits 11..43 as two's complement.
    let c = parse_insn("config reg=gemm_a_zero_point value=-2").unwrap();
    assert_eq!(c.encode().unwrap(), 5 | 1 << 7 | (0xffff_fffeu128 << 11));
}

fn sample_stream(rng: &mut Rng) -> Stream {
    let mut insns: Vec<Insn> = (0..200)
        .map(|_| random_insn(rng))
        .filter(|i| !matches!(i.op, Op::Finish(_)))
        .collect();
    insns.push(Insn::new(Op::Finish(Finish {})));
    Stream {
        version: VERSION,
        config_hash: HwConfig::edge().hash(),
        dram_size: 1 << 20,
        buffers: vec![
            Buffer {
                name: "x".into(),
                role: Role::Input,
                dtype: DType::I8,
                shape: vec![4, 16],
                addr: 0,
            },
            Buffer {
                name: "w".into(),
                role: Role::Weight,
                dtype: DType::I4,
                shape: vec![16, 16],
                addr: 0x1000,
            },
            Buffer {
                name: "y".into(),
                role: Role::Output,
                dtype: DType::Bf16,
                shape: vec![],
                addr: 0x2000,
            },
        ],
        insns,
        image_base: 0x1000,
        image: (0..77u32).map(|i| (i * 37 % 256) as u8).collect(),
    }
}

#[test]
fn stream_round_trips_binary_and_text() {
    let mut rng = Rng(42);
    for _ in 0..20 {
        let s = sample_stream(&mut rng);
        let bytes = s.to_bytes().unwrap();
        assert_eq!(&bytes[..4], b"TSRA");
        assert_eq!(Stream::from_bytes(&bytes).unwrap(), s);
        let text = disassemble(&s);
        let back = assemble(&text).unwrap();
        assert_eq!(back, s);
        assert_eq!(disassemble(&back), text);
    }
}

#[test]
fn hand_written_text_is_canonical() {
    let text = "\
.tsa 2
.config_hash 0x00000000000000ff
.dram_size 4096
.buffer input x i8 [2,3] @0x0
.buffer output y i32 [2,3] @0x100
load push_next y_size=2 x_size=3 x_stride=3 pad_right=1
gemm pop_prev push_next m=2 k=4 n=3 iter_out=1 iter_in=1
store pop_prev fmt=i32 dram=0x100 y_size=2 x_size=3 x_stride=3
finish
.image 0x200
.data 0102030405
";
    let s = assemble(text).unwrap();
    assert_eq!(s.insns.len(), 4);
    assert_eq!(s.image, vec![1, 2, 3, 4, 5]);
    assert_eq!(s.buffers[0].shape, vec![2, 3]);
    assert_eq!(disassemble(&s), text);
}

#[test]
fn decode_errors_name_the_instruction() {
    let mut rng = Rng(7);
    let s = sample_stream(&mut rng);
    let bytes = s.to_bytes().unwrap();
    let insn_at = |i: usize| {
        48 + s
            .buffers
            .iter()
            .map(|b| 12 + 8 * b.shape.len() + b.name.len())
            .sum::<usize>()
            + 16 * i
    };

    let mut bad = bytes.clone();
    bad[insn_at(5)] = (bad[insn_at(5)] & !7) | 7; // opcode 7 is unassigned
    let e = Stream::from_bytes(&bad).unwrap_err();
    assert_eq!(e.index, Some(5));
    assert!(
        e.to_string().contains("instruction 5") && e.to_string().contains("bad opcode 7"),
        "{e}"
    );

    let mut bad = bytes.clone();
    bad[insn_at(3)] &= !7; // opcode 0
    assert!(Stream::from_bytes(&bad)
        .unwrap_err()
        .to_string()
        .starts_with("instruction 3: bad opcode 0"));

    // finish with a reserved bit set
    let last = s.insns.len() - 1;
    let mut bad = bytes.clone();
    bad[insn_at(last) + 15] = 0x80;
    let e = Stream::from_bytes(&bad).unwrap_err();
    assert_eq!(e.index, Some(last));
    assert!(e.msg.contains("reserved"), "{e}");

    // store fmt=3 is not a defined format
    let w = parse_insn("store fmt=i32 y_size=1 x_size=1")
        .unwrap()
        .encode()
        .unwrap()
        | 3 << 7;
    let e = Insn::decode(w, 11).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("instruction 11: store: field fmt"),
        "{e}"
    );

    // a load on the load queue cannot pop from a previous queue
    let w = parse_insn("load y_size=1 x_size=1")
        .unwrap()
        .encode()
        .unwrap()
        | 1 << 3;
    assert!(Insn::decode(w, 2)
        .unwrap_err()
        .to_string()
        .contains("no previous queue"));

    assert!(Stream::from_bytes(&bytes[..bytes.len() - 1])
        .unwrap_err()
        .msg
        .contains("truncated"));
    let mut bad = bytes.clone();
    bad[4] = 9;
    assert!(Stream::from_bytes(&bad)
        .unwrap_err()
        .msg
        .contains("version 9"));
}

#[test]
fn assembler_errors() {
    let cases = [
        ("load foo=1", "no field 'foo'"),
        ("load mem=dram", "not one of"),
        ("gemm m=2000 k=1 n=1 iter_out=1 iter_in=1", "out of range"),
        ("frobnicate", "unknown mnemonic"),
        ("vec op=exp len=1 rows=1 src1=3", "takes no src1"),
        ("store pop_next fmt=i32 y_size=1 x_size=1", "no next queue"),
        (
            "store fmt=i32 mult=3 y_size=1 x_size=1",
            "only used with fmt=i8",
        ),
    ];
    for (line, want) in cases {
        let e = assemble(&format!("finish\n{line}\n")).unwrap_err();
        assert!(e.to_string().contains(want), "{line}: {e}");
        assert_eq!(e.index, Some(1), "{line}");
        assert!(e.msg.contains("line 2"), "{e}");
    }
}

#[test]
fn presets_load_and_hash() {
    let e = HwConfig::edge();
    assert_eq!(
        (e.array_dim, e.sp_bytes, e.sp_banks, e.acc_bytes),
        (16, 256 * 1024, 4, 64 * 1024)
    );
    assert_eq!(e.clock_mhz, 500.0);
    assert_eq!(e.dram_bytes_per_cycle(), 16.0); // 8 GB/s at 500 MHz
    let s = HwConfig::server();
    assert_eq!(s.array_dim, 64);
    assert_ne!(e.hash(), s.hash());
    // The hash ignores timing and energy parameters.
    let mut e2 = e.clone();
    e2.dram_bandwidth_gbps = 1.0;
    e2.energy.mac_i8 = 9.0;
    assert_eq!(e2.hash(), e.hash());
    assert_eq!(HwConfig::from_toml(&e.to_toml()).unwrap(), e);
    assert!(HwConfig::preset("huge").is_err());
    let bad = e.to_toml().replace("array_dim = 16", "array_dim = 300");
    assert!(HwConfig::from_toml(&bad).unwrap_err().contains("array_dim"));
    let unknown = format!("bogus = 1\n{}", e.to_toml());
    assert!(HwConfig::from_toml(&unknown).is_err());
}

#[test]
fn bf16_rounding() {
    assert_eq!(f32_to_bf16(1.0), 0x3f80);
    // 1 + 2^-8 is halfway between bf16 1.0 and 1.0078125: ties to even -> 1.0.
    assert_eq!(f32_to_bf16(1.0 + 1.0 / 256.0), 0x3f80);
    // 1 + 3*2^-8 is halfway between 0x3f81 and 0x3f82: ties to even -> 0x3f82.
    assert_eq!(f32_to_bf16(1.0 + 3.0 / 256.0), 0x3f82);
    assert_eq!(f32_to_bf16(-2.5), 0xc020);
    assert!(bf16_to_f32(f32_to_bf16(f32::NAN)).is_nan());
    assert_eq!(bf16_to_f32(0x4049), 3.140625);
}

#[test]
fn docs_contain_the_generated_reference() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/accel-isa.md"
    ))
    .unwrap();
    let gen = table::reference_markdown();
    assert!(
        doc.contains(&gen),
        "docs/accel-isa.md is out of date; regenerate its instruction reference with table::reference_markdown()"
    );
}

#[test]
fn version_2_vector_ops_div_and_erf() {
    // op codes 20 and 21 at bits [7, 12), dtype f32 = 0, src1_mode row = 1 at bit 13.
    let div =
        parse_insn("vec op=div src1_mode=row dst=8 src1=4 len=16 rows=2 stride=16 dst_stride=16")
            .unwrap();
    let w = div.encode().unwrap();
    let expect: u128 =
        4 | 20 << 7 | 1 << 13 | 8 << 15 | 4 << 47 | 16 << 63 | 2 << 75 | 16 << 87 | 16 << 103;
    assert_eq!(w, expect);
    assert_eq!(Insn::decode(w, 0).unwrap(), div);
    let erf = parse_insn("vec op=erf len=3 rows=1").unwrap();
    assert_eq!(erf.encode().unwrap(), 4 | 21 << 7 | 3 << 63 | 1 << 75);
    for insn in [div, erf] {
        assert_eq!(parse_insn(&format_insn(&insn)).unwrap(), insn);
    }
    // Code 22 is still reserved.
    let e = Insn::decode(4 | 22 << 7 | 1 << 63 | 1 << 75, 3).unwrap_err();
    assert!(
        e.to_string().contains("field op has invalid value 22"),
        "{e}"
    );
    // Division has no integer form (like recip); erf takes no second source.
    for (line, want) in [
        ("vec op=div dtype=i32 len=1 rows=1", "div has no i32 form"),
        ("vec op=erf src1_mode=row len=1 rows=1", "erf takes no src1"),
    ] {
        let e = parse_insn(line).unwrap_err();
        assert!(e.contains(want), "{line}: {e}");
    }
    assert!(VecOp::Div.is_special() && VecOp::Erf.is_special());
    assert!(VecOp::Div.uses_src1() && !VecOp::Erf.uses_src1());
}

#[test]
fn version_1_streams_are_rejected() {
    assert_eq!(VERSION, 2);
    let s = assemble(".tsa 2\n.dram_size 64\nvec op=div len=1 rows=1\nfinish\n").unwrap();
    let mut bytes = s.to_bytes().unwrap();
    assert_eq!(Stream::from_bytes(&bytes).unwrap(), s);
    bytes[4..6].copy_from_slice(&1u16.to_le_bytes());
    let e = Stream::from_bytes(&bytes).unwrap_err().to_string();
    assert!(
        e.contains("unsupported stream version 1 (this build reads 2; recompile the stream)"),
        "{e}"
    );
    let e = assemble(".tsa 1\nfinish\n").unwrap_err().to_string();
    assert!(
        e.contains("unsupported version 1 (this build reads 2"),
        "{e}"
    );
}
