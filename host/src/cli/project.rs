//! Plugin projects: `sluice new --lang rust|python|js NAME` writes a ready
//! project (the network word count, a README of five lines), and
//! `sluice build [DIR]` builds one into `DIR/target/<name>.wasm` with its
//! language's tool. `sluice run DIR` builds first, so a newcomer goes from
//! nothing to a running job in two commands:
//!
//! ```text
//! sluice new --lang python wc
//! sluice run wc --arg host=localhost --arg port=9999
//! ```
//!
//! The SDKs are not published to a registry: a project uses the ones of the
//! Sluice checkout this binary was built from (`guest-sdk/`), or those under
//! `$SLUICE_SDK`. A folder's language follows from what it holds, as for
//! `scripts/build-plugins`: `Cargo.toml` (Rust), `app.py` (Python), `app.js`
//! (JavaScript).

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail, ensure};
use clap::{Args, ValueEnum};

/// The languages a plugin can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Lang {
    Rust,
    Python,
    Js,
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
            Lang::Js => "JavaScript",
        })
    }
}

/// `sluice new`.
#[derive(Debug, Args)]
pub(crate) struct NewArgs {
    /// The language of the plugin.
    #[arg(long, value_enum)]
    lang: Lang,
    /// The project's folder, created here; its name is the plugin's name
    /// (lower-case letters, digits, `-` and `_`, starting with a letter).
    name: PathBuf,
}

/// `sluice build`.
#[derive(Debug, Args)]
pub(crate) struct BuildArgs {
    /// The project's folder.
    #[arg(default_value = ".")]
    dir: PathBuf,
}

/// The template files of each language: (path in the project, contents).
/// `{{name}}` becomes the project's name, `{{sdk}}` the SDKs' folder.
fn template(lang: Lang) -> &'static [(&'static str, &'static str)] {
    match lang {
        Lang::Rust => &[
            ("Cargo.toml", include_str!("templates/rust/Cargo.toml")),
            ("src/lib.rs", include_str!("templates/rust/src/lib.rs")),
            ("README.md", include_str!("templates/rust/README.md")),
            (".gitignore", "/target\n/Cargo.lock\n"),
        ],
        Lang::Python => &[
            ("app.py", include_str!("templates/python/app.py")),
            ("README.md", include_str!("templates/python/README.md")),
            (".gitignore", "/target\n__pycache__/\n"),
        ],
        Lang::Js => &[
            ("app.js", include_str!("templates/js/app.js")),
            ("README.md", include_str!("templates/js/README.md")),
            (".gitignore", "/target\n"),
        ],
    }
}

/// The folder holding the SDKs (`rust/`, `python/`, `js/`): `$SLUICE_SDK`,
/// else the `guest-sdk/` of the checkout this binary was built from.
fn sdk_dir() -> anyhow::Result<PathBuf> {
    let dir = match std::env::var_os("SLUICE_SDK") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk"),
    };
    let dir = dir.canonicalize().with_context(|| {
        format!(
            "the Sluice SDKs are not at {} (this binary was built from a checkout that has \
             moved?): set SLUICE_SDK to the `guest-sdk` folder of a Sluice checkout",
            dir.display()
        )
    })?;
    ensure!(
        dir.join("rust/Cargo.toml").is_file(),
        "{} is not Sluice's `guest-sdk` folder (no rust/Cargo.toml): set SLUICE_SDK to it",
        dir.display()
    );
    Ok(dir)
}

/// `sluice new`: writes the project and says how to build and run it.
pub(crate) fn new(args: NewArgs) -> anyhow::Result<()> {
    let name = args
        .name
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{}: not a folder name", args.name.display()))?;
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    ensure!(
        valid,
        "{name:?} cannot name a plugin: use lower-case letters, digits, `-` and `_`, \
         starting with a letter"
    );
    if args.name.exists() {
        let empty = fs::read_dir(&args.name)
            .map(|mut entries| entries.next().is_none())
            .unwrap_or(false);
        ensure!(
            empty,
            "{} already exists and is not an empty folder",
            args.name.display()
        );
    }
    let sdk = sdk_dir()?;
    let sdk = sdk.to_str().context("the SDK's path is not UTF-8")?;
    for (path, contents) in template(args.lang) {
        let path = args.name.join(path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let contents = contents.replace("{{name}}", name).replace("{{sdk}}", sdk);
        fs::write(&path, contents).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let dir = args.name.display();
    println!(
        "Created the {} plugin `{name}` in {dir}/. Run it with:\n",
        args.lang
    );
    println!("    sluice run {dir} --arg host=localhost --arg port=9999\n");
    println!("(it builds first; `nc -lk 9999` in another terminal gives it text to count).");
    println!("Build only: sluice build {dir}  (writes {dir}/target/{name}.wasm)");
    Ok(())
}

/// The language of a project folder, from what it holds.
fn language_of(dir: &Path) -> anyhow::Result<Lang> {
    if dir.join("Cargo.toml").is_file() {
        Ok(Lang::Rust)
    } else if dir.join("app.py").is_file() {
        Ok(Lang::Python)
    } else if dir.join("app.js").is_file() {
        Ok(Lang::Js)
    } else {
        bail!(
            "{} is not a plugin project: it holds no Cargo.toml (Rust), app.py (Python) or \
             app.js (JavaScript); create one with `sluice new --lang rust|python|js NAME`",
            dir.display()
        )
    }
}

/// `sluice build`: prints the component's path.
pub(crate) fn build_command(args: BuildArgs) -> anyhow::Result<()> {
    let wasm = build(&args.dir)?;
    println!("{}", wasm.display());
    Ok(())
}

/// Builds the project in `dir` into `dir/target/<name>.wasm`, returns that
/// path.
pub(crate) fn build(dir: &Path) -> anyhow::Result<PathBuf> {
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot open the project folder {}", dir.display()))?;
    let lang = language_of(&dir)?;
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .context("the project folder has no UTF-8 name")?
        .to_string();
    let out_dir = dir.join("target");
    fs::create_dir_all(&out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    let wasm = out_dir.join(format!("{name}.wasm"));
    tracing::info!(project = %dir.display(), "building the {lang} plugin `{name}`");
    match lang {
        Lang::Rust => build_rust(&dir, &wasm)?,
        Lang::Python | Lang::Js => {
            let tool = sdk_dir()?
                .join(if lang == Lang::Python { "python" } else { "js" })
                .join("build");
            let mut cmd = Command::new(&tool);
            cmd.arg(&dir).arg(&wasm);
            run(cmd, &format!("{} {}", tool.display(), dir.display()))?;
        }
    }
    ensure!(
        wasm.is_file(),
        "the build said it succeeded, but {} is missing",
        wasm.display()
    );
    Ok(wasm)
}

/// `cargo build --release --target wasm32-wasip2` in `dir`; the component is
/// the `.wasm` artifact cargo reports (`--message-format=json`), wherever the
/// target directory and whatever the library's name.
fn build_rust(dir: &Path, wasm: &Path) -> anyhow::Result<()> {
    const TARGET: &str = "wasm32-wasip2";
    let what = format!(
        "cargo build --release --target {TARGET} in {}",
        dir.display()
    );
    let output = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(dir)
        .args(["build", "--release", "--target", TARGET])
        .arg("--message-format=json-render-diagnostics")
        // Flags for the machine's own target are wrong for Wasm; Wasm SIMD
        // (which wasmtime runs) vectorises byte searches such as the SDK's
        // `text::split`.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("RUSTFLAGS", "-C target-feature=+simd128")
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {what}"))?;
    ensure!(
        output.status.success(),
        "{what} failed ({}); see its output above",
        output.status
    );
    let built: Vec<PathBuf> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .flat_map(|m| {
            m["filenames"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f.as_str().map(PathBuf::from))
                .collect::<Vec<_>>()
        })
        .filter(|f| f.extension().is_some_and(|e| e == "wasm"))
        .collect();
    let [component] = built.as_slice() else {
        bail!(
            "{what} made {} `.wasm` files ({built:?}): a plugin project is one crate whose \
             library is a `cdylib`",
            built.len()
        );
    };
    fs::copy(component, wasm)
        .with_context(|| format!("cannot copy {} to {}", component.display(), wasm.display()))?;
    Ok(())
}

/// Runs a build tool with its output on stderr: stdout is the job's (what
/// `print` shows) when `sluice run DIR` builds first.
fn run(mut cmd: Command, what: &str) -> anyhow::Result<()> {
    let status = cmd
        .stdout(std::io::stderr())
        .status()
        .with_context(|| format!("cannot run {what}"))?;
    ensure!(
        status.success(),
        "{what} failed ({status}); see its output above"
    );
    Ok(())
}
