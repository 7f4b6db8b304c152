//! Prints the generated instruction reference of `docs/accel-isa.md`
//! (`cargo run -p tessera-accel-isa --example isa_reference`).
fn main() {
    print!("{}", tessera_accel_isa::table::reference_markdown());
}
