//! Link settings for the Node-API addon, from napi-build: the addon calls napi_*
//! functions that the host `node` executable exports (macOS: `-undefined
//! dynamic_lookup`; Windows: the import library napi-build provides).

fn main() {
    napi_build::setup();
}
