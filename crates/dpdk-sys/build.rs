//! Generates the DPDK bindings and compiles the wrappers of DPDK's `static inline` functions.
//! Does nothing without the `dpdk` feature.

fn main() {
    #[cfg(feature = "dpdk")]
    dpdk::generate();
}

#[cfg(feature = "dpdk")]
mod dpdk {
    use std::path::PathBuf;

    /// Types, functions and constants the safe layer uses; bindgen pulls in what they depend on.
    const FUNCTIONS: &str = "rte_eal_init|rte_eal_cleanup|rte_strerror|rte_thread_register|rte_lcore_id|\
        rte_socket_id|rte_eth_dev_count_avail|rte_eth_dev_get_port_by_name|rte_eth_dev_get_name_by_port|\
        rte_eth_dev_info_get|rte_eth_dev_configure|rte_eth_dev_adjust_nb_rx_tx_desc|rte_eth_rx_queue_setup|\
        rte_eth_tx_queue_setup|rte_eth_dev_start|rte_eth_dev_stop|rte_eth_dev_close|rte_eth_dev_socket_id|\
        rte_eth_macaddr_get|rte_eth_link_get_nowait|rte_eth_stats_get|rte_eth_stats_reset|\
        rte_eth_promiscuous_enable|rte_eth_dev_is_valid_port|rte_eth_find_next_owned_by|\
        rte_eth_rx_burst|rte_eth_tx_burst|rte_pktmbuf_pool_create|rte_pktmbuf_alloc|rte_pktmbuf_free|\
        rte_pktmbuf_free_bulk|rte_pktmbuf_prepend|rte_pktmbuf_adj|rte_pktmbuf_append|rte_pktmbuf_trim|\
        rte_pktmbuf_headroom|rte_pktmbuf_tailroom|rte_mempool_avail_count|rte_mempool_in_use_count|\
        rte_mempool_free|overlink_.*";
    const TYPES: &str = "rte_mbuf|rte_mempool|rte_eth_conf|rte_eth_dev_info|rte_eth_rxconf|rte_eth_txconf|\
        rte_eth_link|rte_eth_stats|rte_ether_addr";
    const VARS: &str = "RTE_ETH_.*|RTE_MBUF_.*|RTE_PKTMBUF_HEADROOM|RTE_MAX_ETHPORTS|RTE_MAX_LCORE|\
        RTE_ETHER_.*|RTE_ETHDEV_QUEUE_STAT_CNTRS|LCORE_ID_ANY|SOCKET_ID_ANY";

    pub fn generate() {
        let lib = pkg_config::Config::new()
            .atleast_version("22.11")
            .probe("libdpdk")
            .unwrap_or_else(|e| panic!("DPDK (pkg-config libdpdk >= 22.11) is needed for the `dpdk` feature: {e}"));
        let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
        // pkg-config's extra flags (`-include rte_config.h -march=...`) matter to both the
        // header parse and the C compile: the struct layouts and inline bodies depend on them.
        let cflags = cflags_from_command();
        let includes: Vec<String> = lib.include_paths.iter().map(|p| format!("-I{}", p.display())).collect();
        let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
        let wrapper = manifest.join("src/wrapper.h");
        let wrapper = wrapper.to_str().expect("a UTF-8 path");
        println!("cargo:rerun-if-changed={wrapper}");
        println!("cargo:rerun-if-changed=build.rs");

        let static_fns = out.join("static_fns");
        let bindings = bindgen::Builder::default()
            .header(wrapper)
            .clang_args(&cflags)
            .clang_args(&includes)
            .allowlist_function(FUNCTIONS)
            .allowlist_type(TYPES)
            .allowlist_var(VARS)
            .wrap_static_fns(true)
            .wrap_static_fns_path(&static_fns)
            .derive_default(true)
            .derive_debug(false)
            .layout_tests(false)
            .generate_comments(false)
            .prepend_enum_name(false)
            .default_enum_style(bindgen::EnumVariation::Consts)
            .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
            .generate()
            .expect("bindgen could not generate the DPDK bindings (is libclang-dev installed?)");
        bindings.write_to_file(out.join("bindings.rs")).expect("cannot write bindings.rs");

        let mut build = cc::Build::new();
        build.file(static_fns.with_extension("c")).opt_level(2).warnings(false);
        for flag in cflags.iter().chain(&includes) {
            build.flag(flag);
        }
        build.compile("overlink_dpdk_static_fns");
    }

    /// The `Cflags` of libdpdk.pc as pkg-config prints them.
    fn cflags_from_command() -> Vec<String> {
        let out = std::process::Command::new("pkg-config")
            .args(["--cflags", "libdpdk"])
            .output()
            .expect("cannot run pkg-config --cflags libdpdk");
        String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_owned).collect()
    }
}
