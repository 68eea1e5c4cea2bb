//! SDK
#[doc(hidden)]
pub mod __private {
    pub mod bindings {
        wit_bindgen::generate!({
            world: "plugin",
            path: "../wit",
            pub_export_macro: true,
            export_macro_name: "__export_plugin",
            default_bindings_module: "::sluice_guest::__private::bindings",
            debug: true,
        });
    }
}
