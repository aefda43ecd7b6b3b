//! The component's stack size. Rust's wasm targets reserve 1 MiB for the
//! stack at the bottom of linear memory, and a host with a pooling allocator
//! resets that region for every instance whether or not a request touched
//! it: Spin 4 memsets linear memory from address 0 up to its 2 MiB
//! `keep_resident` (wasmtime's default, without PAGEMAP_SCAN), which was
//! ~6% of Spin's CPU on the duplicate path (BENCHMARKS.md, "Kept: a 128 KiB stack").
//!
//! The deepest recursion in the component is JSON nesting, which the parser
//! stops at 128 levels (`crates/core/src/json.rs`): that needs more than 16
//! KiB and at most 32 KiB (the test suite passes at 32 KiB, and
//! `hostile_bodies_get_the_right_4xx_and_leave_no_trace` fails at 16). 128
//! KiB is four times that.
const STACK_BYTES: u32 = 128 << 10;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        println!("cargo:rustc-link-arg-cdylib=-zstack-size={STACK_BYTES}");
    }
}
