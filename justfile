# overlink task runner (`pip install rust-just`, then `just <recipe>`).

# The built-in demo.
demo:
    cargo run --release -- demo

# The whole test suite (installs what it needs first).
test:
    ./scripts/test.sh

# Benchmarks; each figure ends in a `bench <name> <value> <unit>` line.
bench:
    cargo bench --bench datapath 2>&1 | tee target/bench.log
    cargo bench -p overlink-policy --bench policy 2>&1 | tee -a target/bench.log
    cargo bench --bench proxy 2>&1 | tee -a target/bench.log
    ./scripts/bench-system.sh 2>&1 | tee -a target/bench.log
    ./scripts/bench-dpdk.sh 2>&1 | tee -a target/bench.log
    @grep '^bench ' target/bench.log

# System benchmark (root): overlink on AF_PACKET vs the kernel's nftables NAT between network namespaces.
bench-system:
    ./scripts/bench-system.sh

# DPDK benchmark: overlink's NAT vs dpdk-testpmd --forward-mode=io on the same net_pcap vdevs.
bench-dpdk:
    ./scripts/bench-dpdk.sh

# Fuzz each target for `secs` seconds (new inputs go to the git-ignored fuzz/corpus/; see fuzz/README.md).
fuzz secs="60":
    mkdir -p fuzz/corpus/frame_parser fuzz/corpus/pipeline
    RUSTC_BOOTSTRAP=1 cargo fuzz run frame_parser fuzz/corpus/frame_parser fuzz/seeds/frame_parser -- -max_total_time={{secs}}
    RUSTC_BOOTSTRAP=1 cargo fuzz run pipeline fuzz/corpus/pipeline fuzz/seeds/pipeline -- -max_total_time={{secs}}

# Build the example plugins (the workspace build does this too, via crates/policy/build.rs).
plugins:
    rustup target add wasm32-wasip2
    cd plugins && cargo build --release --target wasm32-wasip2

# Formatting and lints.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
