//! Link settings for the Node-API addon. The addon calls napi_* functions that
//! the host `node` executable exports; they are resolved when Node loads it.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=NODE_LIB_DIR");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    match os.as_str() {
        // Linux (glibc and musl): a shared object may leave symbols undefined;
        // Node's executable provides them at load time. Nothing to add.
        "linux" => {}
        // macOS: the linker rejects undefined symbols unless told to look them up at load time.
        "macos" => {
            println!("cargo:rustc-cdylib-link-arg=-undefined");
            println!("cargo:rustc-cdylib-link-arg=dynamic_lookup");
        }
        // Windows (MSVC): UNTESTED here. The napi_* symbols must come from an import
        // library for node.exe (node.lib, from Node's release headers); set
        // NODE_LIB_DIR to its folder. Delay-loading node.exe lets the addon bind to
        // whichever process loads it (a renamed node.exe would also need a
        // delay-load hook, not provided).
        "windows" if env == "msvc" => {
            if let Ok(dir) = std::env::var("NODE_LIB_DIR") {
                println!("cargo:rustc-link-search=native={dir}");
            }
            println!("cargo:rustc-link-lib=dylib=node");
            println!("cargo:rustc-link-lib=dylib=delayimp");
            println!("cargo:rustc-cdylib-link-arg=/DELAYLOAD:node.exe");
        }
        _ => {}
    }
}
