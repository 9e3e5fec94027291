//! Builds the example and test plugins in `plugins/` and lists them for the tests.
//!
//! One `cargo build --release --target wasm32-wasip2` over the `plugins/` workspace (its own cargo
//! workspace, with its own target directory so the inner cargo never waits on the outer one's
//! lock), then `$OUT_DIR/plugins.rs`:
//!
//! ```text
//! pub const PLUGINS: &[(&str, &str)] = &[("allow-accounts", "/abs/…/allow_accounts.wasm"), …];
//! ```
//!
//! with every `plugins/examples/<name>` as `"<name>"` and every `plugins/testing/<name>` as
//! `"testing/<name>"`. The inner build runs with a clean environment: no `RUSTFLAGS`, no `CARGO_*`
//! variables from the outer build (profile overrides, `CARGO_BUILD_TARGET`, coverage or clippy
//! wrappers must not reach a `wasm32` build). When nothing under `plugins/` changed, cargo does
//! not rerun this script at all.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The plugins' target: a component-model target whose `no_std` output imports nothing.
const TARGET: &str = "wasm32-wasip2";

/// The plugin groups: (directory under `plugins/`, prefix of the names in `PLUGINS`).
const GROUPS: &[(&str, &str)] = &[("examples", ""), ("testing", "testing/")];

/// One plugin crate to build.
struct Plugin {
    /// Its name in `PLUGINS` (`allow-accounts`, `testing/spin`).
    name: String,
    /// The file cargo writes for it (`allow_accounts.wasm`).
    file_name: String,
}

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let plugins_dir = manifest_dir.join("../../plugins");
    let plugins_dir = plugins_dir
        .canonicalize()
        .unwrap_or_else(|e| fail(&format!("cannot find the plugins workspace at {}: {e}", plugins_dir.display())));

    watch(&plugins_dir);
    let plugins = discover(&plugins_dir);

    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    ensure_target(Path::new(&rustc));

    let target_dir = plugins_target_dir(&out_dir);
    build(&plugins_dir, &target_dir);

    let artifacts = target_dir.join(TARGET).join("release");
    let mut list = String::from(
        "/// Every example and test plugin in `plugins/`, built for `wasm32-wasip2` by `build.rs`:\n\
         /// (name, absolute path of the `.wasm` component). Test plugins are named `testing/<dir>`.\n\
         pub const PLUGINS: &[(&str, &str)] = &[\n",
    );
    for plugin in &plugins {
        let path = artifacts.join(&plugin.file_name);
        if !path.is_file() {
            fail(&format!(
                "the plugins build succeeded but did not produce {} for plugin `{}`; is its crate a \
                 `cdylib`?",
                path.display(),
                plugin.name
            ));
        }
        let path = path.to_str().unwrap_or_else(|| fail(&format!("{} is not UTF-8", path.display())));
        writeln!(list, "    ({:?}, {:?}),", plugin.name, path).expect("writing to a String");
    }
    list.push_str("];\n");
    // The example plugins (not the hostile test ones), embedded in the library for the demo.
    let mut examples = String::from(
        "/// The example plugins of `plugins/examples`, compiled: (name, `.wasm` component bytes).\n\
         pub const EXAMPLES: &[(&str, &[u8])] = &[\n",
    );
    for plugin in plugins.iter().filter(|p| !p.name.starts_with("testing/")) {
        let path = artifacts.join(&plugin.file_name);
        let path = path.to_str().unwrap_or_else(|| fail(&format!("{} is not UTF-8", path.display())));
        writeln!(examples, "    ({:?}, include_bytes!({:?})),", plugin.name, path).expect("writing to a String");
    }
    examples.push_str("];\n");
    let examples_path = out_dir.join("examples.rs");
    if fs::read_to_string(&examples_path).ok().as_deref() != Some(examples.as_str()) {
        fs::write(&examples_path, examples)
            .unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", examples_path.display())));
    }
    let list_path = out_dir.join("plugins.rs");
    // Rewrite only on change, so an unchanged list does not look new to anything watching it.
    if fs::read_to_string(&list_path).ok().as_deref() != Some(list.as_str()) {
        fs::write(&list_path, list).unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", list_path.display())));
    }
}

/// Tells cargo which inputs rerun this script: the plugins' sources, manifests and the contract.
///
/// Each path is named explicitly (not `plugins/` as a whole) so that `plugins/target`, where a
/// hand-run build writes, does not count as a change.
fn watch(plugins_dir: &Path) {
    for entry in ["Cargo.toml", "Cargo.lock", ".cargo", "wit", "support", "examples", "testing"] {
        let path = plugins_dir.join(entry);
        // A path that does not exist would make cargo rerun the script every time.
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}

/// Finds the plugin crates: every directory with a `Cargo.toml` in each group.
fn discover(plugins_dir: &Path) -> Vec<Plugin> {
    let mut plugins = Vec::new();
    for (group, prefix) in GROUPS {
        let group_dir = plugins_dir.join(group);
        let Ok(entries) = fs::read_dir(&group_dir) else { continue };
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.join("Cargo.toml").is_file())
            .collect();
        dirs.sort();
        for dir in dirs {
            let dir_name = dir
                .file_name()
                .and_then(|name| name.to_str())
                .unwrap_or_else(|| fail(&format!("plugin directory {} has a name that is not UTF-8", dir.display())));
            let manifest = dir.join("Cargo.toml");
            let text = fs::read_to_string(&manifest)
                .unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", manifest.display())));
            let crate_name =
                library_name(&text).unwrap_or_else(|| fail(&format!("{} has no `[package] name`", manifest.display())));
            plugins.push(Plugin {
                name: format!("{prefix}{dir_name}"),
                file_name: format!("{}.wasm", crate_name.replace('-', "_")),
            });
        }
    }
    if plugins.is_empty() {
        fail(&format!("no plugin crates found under {}/{{examples,testing}}", plugins_dir.display()));
    }
    plugins
}

/// The library name in a plugin's manifest: `[lib] name` if set, else `[package] name`.
///
/// A line scanner, not a TOML parser: enough for the manifests in `plugins/`, which keep both on
/// a line of their own (`name = "…"`).
fn library_name(manifest: &str) -> Option<String> {
    let mut section = "";
    let (mut package, mut lib) = (None, None);
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
            continue;
        }
        let Some(value) = line.strip_prefix("name").map(str::trim_start).and_then(|rest| rest.strip_prefix('=')) else {
            continue;
        };
        let value = value.trim().trim_matches('"').to_owned();
        match section {
            "[package]" => package = Some(value),
            "[lib]" => lib = Some(value),
            _ => {}
        }
    }
    lib.or(package)
}

/// Adds the `wasm32-wasip2` standard library with rustup when the toolchain lacks it.
fn ensure_target(rustc: &Path) {
    let sysroot = Command::new(rustc).args(["--print", "sysroot"]).output();
    if let Ok(output) = &sysroot {
        let sysroot = String::from_utf8_lossy(&output.stdout);
        if output.status.success() && Path::new(sysroot.trim()).join("lib/rustlib").join(TARGET).join("lib").is_dir() {
            return;
        }
    }
    // Only rustup can add it; ask it which targets it has, then add ours.
    let installed = Command::new("rustup").args(["target", "list", "--installed"]).output();
    match installed {
        Ok(output) if output.status.success() => {
            if String::from_utf8_lossy(&output.stdout).lines().any(|line| line.trim() == TARGET) {
                return;
            }
            let added = Command::new("rustup").args(["target", "add", TARGET]).output();
            match added {
                Ok(output) if output.status.success() => {}
                Ok(output) => fail(&format!(
                    "`rustup target add {TARGET}` failed; the plugins cannot be built without it.\n{}",
                    outputs(&output)
                )),
                Err(e) => fail(&format!("cannot run `rustup target add {TARGET}`: {e}")),
            }
        }
        _ => fail(&format!(
            "the Rust toolchain has no `{TARGET}` standard library and rustup is not available to \
             add it; install the `{TARGET}` target for this toolchain"
        )),
    }
}

/// Where the plugins are built: `<target dir>/plugins` beside the outer build's profile
/// directories (so `cargo clean` removes it and every profile shares it), else under `OUT_DIR`.
fn plugins_target_dir(out_dir: &Path) -> PathBuf {
    // OUT_DIR is `<target dir>[/<triple>]/<profile>/build/<package>-<hash>/out`.
    let build = out_dir.ancestors().find(|dir| dir.file_name().is_some_and(|name| name == "build"));
    match build.and_then(Path::parent).and_then(Path::parent) {
        Some(target_dir) => target_dir.join("plugins"),
        None => out_dir.join("plugins-target"),
    }
}

/// Runs the inner cargo build; fails the outer build with its output and how to reproduce it.
fn build(plugins_dir: &Path, target_dir: &Path) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(&cargo);
    command
        .current_dir(plugins_dir)
        .args(["build", "--release", "--workspace", "--target", TARGET])
        .arg("--manifest-path")
        .arg(plugins_dir.join("Cargo.toml"));
    // A clean environment: what the outer build set for itself must not configure this one.
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if leaks_from_outer_build(key) {
            command.env_remove(key);
        }
    }
    command.env("CARGO_TARGET_DIR", target_dir);

    let output = command
        .output()
        .unwrap_or_else(|e| fail(&format!("cannot run {} to build the plugins: {e}", Path::new(&cargo).display())));
    if !output.status.success() {
        eprintln!("{}", outputs(&output));
        fail(&format!(
            "building the WebAssembly plugins in {dir} failed (the compiler's output is above).\n\
             Reproduce by hand with:\n    cd {dir} && cargo build --release --target {TARGET}\n\
             (after `rustup target add {TARGET}` if the target is missing)",
            dir = plugins_dir.display(),
        ));
    }
}

/// Whether an environment variable is the outer build's business, not the plugins build's.
fn leaks_from_outer_build(key: &str) -> bool {
    // Where to find and fetch crates (and the jobserver in CARGO_MAKEFLAGS) still apply.
    const KEEP: &[&str] =
        &["CARGO_HOME", "CARGO_MAKEFLAGS", "CARGO_NET_", "CARGO_HTTP_", "CARGO_REGISTRIES_", "CARGO_REGISTRY_"];
    if key.starts_with("CARGO_") || key.starts_with("__CARGO") {
        return !KEEP.iter().any(|keep| key == *keep || (keep.ends_with('_') && key.starts_with(keep)));
    }
    matches!(
        key,
        "RUSTFLAGS"
            | "RUSTDOCFLAGS"
            | "RUSTC_WRAPPER"
            | "RUSTC_WORKSPACE_WRAPPER"
            | "RUSTC_LINKER"
            | "TARGET"
            | "HOST"
            | "OUT_DIR"
            | "PROFILE"
            | "OPT_LEVEL"
            | "DEBUG"
            | "NUM_JOBS"
    )
}

/// A command's stdout and stderr, for an error message.
fn outputs(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// Fails the build: cargo shows everything a failed build script wrote to stderr.
fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1)
}
