//! Test fixture: a component that exports `sluice:plugin/job@0.1.0`, the
//! contract before windows and state, built with wit-bindgen directly from
//! its own `wit/`. The host must refuse to load it, naming both versions
//! (0.1.0 here; the host speaks a later one).

wit_bindgen::generate!({
    world: "plugin",
    path: "wit",
});

struct Contract01;

impl exports::sluice::plugin::job::Guest for Contract01 {
    fn define(_args: Vec<(String, String)>) -> Result<String, String> {
        Err("contract-0-1 is a fixture for the host's version check and defines no job".to_string())
    }
}

export!(Contract01);
