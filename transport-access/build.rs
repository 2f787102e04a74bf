//! Declares the `loom` cfg (set by the workspace's loom runs through RUSTFLAGS).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(loom)");
}
