//! Compiles the wire schema with protox (pure Rust: no protoc on the machine).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let descriptors = protox::compile(
        [
            "trellis/v1/tx.proto",
            "trellis/v1/state.proto",
            "trellis/v1/chain.proto",
            "trellis/v1/shard.proto",
        ],
        ["proto"],
    )?;
    prost_build::Config::new()
        .btree_map(["."])
        .compile_fds(descriptors)?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
