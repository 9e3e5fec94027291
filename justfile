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
    @grep '^bench ' target/bench.log

# Short fuzzing runs of every target (see fuzz/README.md).
fuzz seconds="60":
    cd fuzz && for t in $(RUSTC_BOOTSTRAP=1 cargo fuzz list); do RUSTC_BOOTSTRAP=1 cargo fuzz run $t seeds/$t -- -max_total_time={{seconds}}; done

# Formatting and lints.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
