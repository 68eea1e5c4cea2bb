//! [`Grants`]: what a job's sandbox lets its plugin reach, per job. With no
//! grants (the default) an instance gets nothing: no directory, no
//! environment variable, no socket, no name lookup.
//!
//! Three kinds, each with a textual form shared by the command line
//! (`--allow-dir`, `--allow-net`, `--env`) and the JSON of the HTTP API (a
//! grant serializes as the string its flag takes, e.g.
//! `{"dirs": ["/srv/ref:/ref:ro"], "net": ["db.internal:5432"], "env": ["MODE=prod"]}`):
//!
//! - [`DirGrant`], `HOST_PATH[:GUEST_PATH][:ro]`: the host directory is
//!   preopened in the guest at `GUEST_PATH` (an absolute path; default: the
//!   host path made absolute), read-write, or read-only with `:ro`. Paths
//!   cannot contain `:`. The guest reaches nothing outside it (`..` and
//!   symbolic links that leave it are refused by `cap-std`).
//! - [`NetGrant`], `HOST:PORT` (an IPv6 address in brackets): outbound TCP
//!   to that address and port only, checked by the host for every socket
//!   use (wasmtime-wasi's `socket_addr_check`): a connect to any other
//!   address, an explicit bind to anything but the wildcard address with
//!   port 0 (what a connect binds implicitly), `listen` and `accept` fail in
//!   the guest with `access-denied` and never reach the system. A name is
//!   resolved when the job starts, to every address it has; the guest may
//!   connect to exactly those (a name whose addresses change later needs a
//!   restart). UDP stays denied: a grant is a TCP connection.
//! - [`EnvGrant`], `NAME=VALUE`: an environment variable the guest sees;
//!   nothing of the host's environment is ever passed on.
//!
//! Name lookup (`wasi:sockets/ip-name-lookup`) is allowed only when a net
//! grant names a host by name, so that the guest can connect to it by name.
//! A lookup cannot connect anywhere, but it is not harmless: the guest
//! chooses the name, and the host's resolver sends it on, so a guest can
//! leak data to whoever serves a domain (`<data>.example.com`) or probe
//! internal names. Grants by IP address avoid that channel entirely; a job
//! given a name is trusted with lookups.
//!
//! `Grants::resolve` checks the directories and resolves the names when
//! the job starts ([`Runtime::new`](super::Runtime::new)), with errors that
//! name the flag and the grant. Every job has its own runtime, so grants
//! never leak from one job's instances to another's.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// What a job's sandbox grants its plugin, in the order given. Empty by
/// default: nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Grants {
    /// `--allow-dir`: host directories preopened in the guest.
    pub dirs: Vec<DirGrant>,
    /// `--allow-net`: addresses the guest may open TCP connections to.
    pub net: Vec<NetGrant>,
    /// `--env`: the guest's environment variables.
    pub env: Vec<EnvGrant>,
}

/// `--allow-dir HOST_PATH[:GUEST_PATH][:ro]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DirGrant {
    /// The directory on the host.
    pub host: PathBuf,
    /// Where the guest sees it (absolute); `None`: at the host path, made
    /// absolute.
    pub guest: Option<String>,
    /// Only reads: no file or directory can be created, written or removed.
    pub read_only: bool,
}

/// `--allow-net HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NetGrant {
    /// A host name or an IP address (an IPv6 one without brackets).
    pub host: String,
    /// The TCP port (not 0).
    pub port: u16,
}

/// `--env NAME=VALUE`. Its `Debug` form hides the value (it may be a
/// secret); `Display` and the JSON form carry it.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EnvGrant {
    /// The variable's name: not empty, no `=`.
    pub name: String,
    /// Its value (may contain `=`).
    pub value: String,
}

/// A grant that does not parse; the message says why and what is expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct ParseGrantError {
    /// The flag whose syntax it breaks (`--allow-dir`, `--allow-net`, `--env`).
    pub flag: &'static str,
    /// What is wrong.
    pub reason: String,
}

/// A grant that cannot be given when the job starts (a directory that does
/// not exist, a name that does not resolve).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{flag} {grant}: {reason}")]
pub struct GrantError {
    /// The flag (`--allow-dir`, `--allow-net`, `--env`).
    pub flag: &'static str,
    /// The grant, as given.
    pub grant: String,
    /// What is wrong.
    pub reason: String,
}

const ALLOW_DIR: &str = "--allow-dir";
const ALLOW_NET: &str = "--allow-net";
const ENV: &str = "--env";

impl Grants {
    /// Whether nothing is granted.
    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty() && self.net.is_empty() && self.env.is_empty()
    }

    /// Checks the grants against the host as the job starts: every
    /// directory exists and no two share a guest path, every name resolves.
    /// Also checks what a value built in code (or read from JSON) may have
    /// got past the parsers.
    pub(super) fn resolve(&self) -> Result<Sandbox, GrantError> {
        let mut dirs: Vec<SandboxDir> = Vec::with_capacity(self.dirs.len());
        for grant in &self.dirs {
            let dir = grant.resolve()?;
            if let Some(other) = dirs.iter().find(|d| d.guest == dir.guest) {
                return Err(grant.error(format!(
                    "the guest path {} is already given to {}",
                    dir.guest,
                    other.host.display()
                )));
            }
            dirs.push(dir);
        }
        let mut addrs = HashSet::new();
        let mut name_lookup = false;
        for grant in &self.net {
            addrs.extend(grant.resolve()?);
            name_lookup |= grant.host.parse::<IpAddr>().is_err();
        }
        for grant in &self.env {
            // The name only: the value may be a secret.
            check_env_name(&grant.name).map_err(|reason| GrantError {
                flag: ENV,
                grant: format!("{}=…", grant.name),
                reason,
            })?;
        }
        let net = (!self.net.is_empty()).then(|| NetAccess {
            addrs: Arc::new(addrs),
            name_lookup,
        });
        Ok(Sandbox {
            dirs,
            net,
            env: self
                .env
                .iter()
                .map(|e| (e.name.clone(), e.value.clone()))
                .collect(),
        })
    }
}

impl DirGrant {
    fn error(&self, reason: String) -> GrantError {
        GrantError {
            flag: ALLOW_DIR,
            grant: self.to_string(),
            reason,
        }
    }

    fn resolve(&self) -> Result<SandboxDir, GrantError> {
        check_host_path(&self.host.to_string_lossy()).map_err(|r| self.error(r))?;
        match std::fs::metadata(&self.host) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(self.error("it is not a directory".to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(self.error("no such directory".to_string()));
            }
            Err(e) => return Err(self.error(format!("cannot read it: {e}"))),
        }
        let guest = match &self.guest {
            Some(guest) => guest.clone(),
            None => {
                let absolute = std::path::absolute(&self.host)
                    .map_err(|e| self.error(format!("cannot make the path absolute: {e}")))?;
                absolute
                    .to_str()
                    .ok_or_else(|| {
                        self.error(
                            "the path is not UTF-8, as a guest path must be: give GUEST_PATH"
                                .to_string(),
                        )
                    })?
                    .to_string()
            }
        };
        check_guest_path(&guest).map_err(|reason| {
            self.error(if self.guest.is_some() {
                reason
            } else {
                format!("as the guest path: {reason}; give GUEST_PATH")
            })
        })?;
        Ok(SandboxDir {
            host: self.host.clone(),
            guest,
            perms: if self.read_only {
                FsPerms::ReadOnly
            } else {
                FsPerms::ReadWrite
            },
        })
    }
}

impl NetGrant {
    fn resolve(&self) -> Result<Vec<SocketAddr>, GrantError> {
        let error = |reason: String| GrantError {
            flag: ALLOW_NET,
            grant: self.to_string(),
            reason,
        };
        check_net_host(&self.host).map_err(error)?;
        if self.port == 0 {
            return Err(error("port 0 is not a port one can connect to".to_string()));
        }
        let addrs: Vec<SocketAddr> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| error(format!("cannot resolve {}: {e}", self.host)))?
            .map(canonical)
            .collect();
        if addrs.is_empty() {
            return Err(error(format!("{} resolves to no address", self.host)));
        }
        Ok(addrs)
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

impl FromStr for DirGrant {
    type Err = ParseGrantError;

    fn from_str(s: &str) -> Result<DirGrant, ParseGrantError> {
        let error = |reason: String| ParseGrantError {
            flag: ALLOW_DIR,
            reason,
        };
        let parts: Vec<&str> = s.split(':').collect();
        let (host, guest, flag) = match parts.as_slice() {
            [host] => (*host, None, None),
            [host, last] if !last.starts_with('/') => (*host, None, Some(*last)),
            [host, guest] => (*host, Some(*guest), None),
            [host, guest, flag] => (*host, Some(*guest), Some(*flag)),
            _ => {
                return Err(error(format!(
                    "`{s}` has {} `:`; expected HOST_PATH[:GUEST_PATH][:ro] (paths cannot \
                     contain `:`)",
                    parts.len() - 1
                )));
            }
        };
        check_host_path(host).map_err(error)?;
        if let Some(guest) = guest {
            check_guest_path(guest).map_err(error)?;
        }
        let read_only = match flag {
            None => false,
            Some("ro") => true,
            Some(other) => {
                return Err(error(format!(
                    "`{other}` in `{s}` is neither a guest path (absolute) nor `ro`; expected \
                     HOST_PATH[:GUEST_PATH][:ro]"
                )));
            }
        };
        Ok(DirGrant {
            host: PathBuf::from(host),
            guest: guest.map(str::to_string),
            read_only,
        })
    }
}

fn check_host_path(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("the host path is empty; expected HOST_PATH[:GUEST_PATH][:ro]".to_string());
    }
    if host.contains('\0') {
        return Err("the host path contains a NUL character".to_string());
    }
    Ok(())
}

/// A guest path is absolute, UTF-8, without `.` or `..` components: the
/// name under which wasi-libc matches the guest's paths to the preopen.
fn check_guest_path(guest: &str) -> Result<(), String> {
    if !guest.starts_with('/') {
        return Err(format!("the guest path `{guest}` is not absolute"));
    }
    if guest.contains('\0') {
        return Err("the guest path contains a NUL character".to_string());
    }
    if guest.split('/').any(|c| c == "." || c == "..") {
        return Err(format!(
            "the guest path `{guest}` has a `.` or `..` component"
        ));
    }
    Ok(())
}

impl FromStr for NetGrant {
    type Err = ParseGrantError;

    fn from_str(s: &str) -> Result<NetGrant, ParseGrantError> {
        let error = |reason: String| ParseGrantError {
            flag: ALLOW_NET,
            reason,
        };
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (host, port) = rest.split_once("]:").ok_or_else(|| {
                error(format!(
                    "`{s}` is not [IPV6]:PORT (a `]:` must follow the address)"
                ))
            })?;
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(error(format!(
                    "`{host}` in brackets is not an IPv6 address"
                )));
            }
            (host, port)
        } else {
            let (host, port) = s
                .rsplit_once(':')
                .ok_or_else(|| error(format!("`{s}` is not HOST:PORT (no `:PORT`)")))?;
            if host.contains(':') {
                return Err(error(format!(
                    "`{s}` has more than one `:`; write an IPv6 address in brackets: [::1]:PORT"
                )));
            }
            (host, port)
        };
        check_net_host(host).map_err(error)?;
        let port: u16 = port.parse().map_err(|_| {
            error(format!(
                "the port `{port}` in `{s}` is not a number from 1 to 65535"
            ))
        })?;
        if port == 0 {
            return Err(error(format!(
                "the port in `{s}` is 0; give the port to connect to (1 to 65535)"
            )));
        }
        Ok(NetGrant {
            host: host.to_string(),
            port,
        })
    }
}

/// An IP address, or a host name of letters, digits, `-`, `_` and `.`.
fn check_net_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("the host is empty; expected HOST:PORT".to_string());
    }
    if host.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let valid = host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{host}` is neither an IP address nor a host name (letters, digits, `-`, `_`, \
             dot-separated)"
        ))
    }
}

impl FromStr for EnvGrant {
    type Err = ParseGrantError;

    fn from_str(s: &str) -> Result<EnvGrant, ParseGrantError> {
        let error = |reason: String| ParseGrantError { flag: ENV, reason };
        let (name, value) = s
            .split_once('=')
            .ok_or_else(|| error(format!("`{s}` is not NAME=VALUE")))?;
        check_env_name(name).map_err(error)?;
        if value.contains('\0') {
            return Err(error(format!(
                "the value of {name} contains a NUL character"
            )));
        }
        Ok(EnvGrant {
            name: name.to_string(),
            value: value.to_string(),
        })
    }
}

fn check_env_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the variable name is empty; expected NAME=VALUE".to_string());
    }
    if name.contains('=') || name.contains('\0') {
        return Err(format!(
            "the variable name `{name}` contains `=` or a NUL character"
        ));
    }
    Ok(())
}

impl fmt::Display for DirGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.host.display())?;
        if let Some(guest) = &self.guest {
            write!(f, ":{guest}")?;
        }
        if self.read_only {
            f.write_str(":ro")?;
        }
        Ok(())
    }
}

impl fmt::Display for NetGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Debug for EnvGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvGrant")
            .field("name", &self.name)
            .field("value", &format_args!("<{} bytes>", self.value.len()))
            .finish()
    }
}

impl fmt::Display for EnvGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.value)
    }
}

/// The JSON form of a grant: its flag's syntax; a bad one is refused with
/// the flag's message.
macro_rules! string_form {
    ($ty:ty) => {
        impl TryFrom<String> for $ty {
            type Error = String;

            fn try_from(s: String) -> Result<$ty, String> {
                s.parse::<$ty>()
                    .map_err(|e| format!("{} `{s}`: {e}", e.flag))
            }
        }

        impl From<$ty> for String {
            fn from(grant: $ty) -> String {
                grant.to_string()
            }
        }
    };
}

string_form!(DirGrant);
string_form!(NetGrant);
string_form!(EnvGrant);

/// Grants checked against the host, ready to apply to each instance's WASI
/// context.
#[derive(Debug, Clone, Default)]
pub(super) struct Sandbox {
    dirs: Vec<SandboxDir>,
    /// `None`: no net grant (no TCP, no name lookup).
    net: Option<NetAccess>,
    env: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
struct SandboxDir {
    host: PathBuf,
    guest: String,
    perms: FsPerms,
}

#[derive(Debug, Clone)]
struct NetAccess {
    /// Every address the grants resolved to, with its port.
    addrs: Arc<HashSet<SocketAddr>>,
    /// Whether a grant names a host by name.
    name_lookup: bool,
}

impl Sandbox {
    /// Grants these to the context being built (which grants nothing yet):
    /// preopens every directory (opened anew for each instance, so a
    /// directory removed since the start is an error naming it), sets the
    /// environment, and allows TCP to the granted addresses only. `label`
    /// names the job in the log line of a denied socket use.
    pub(super) fn apply(&self, wasi: &mut WasiCtxBuilder, label: &str) -> Result<(), String> {
        for dir in &self.dirs {
            wasi.preopened_dir(&dir.host, &dir.guest, dir.perms)
                .map_err(|e| {
                    format!(
                        "cannot open {ALLOW_DIR} {} (at {} in the guest): {e:#}",
                        dir.host.display(),
                        dir.guest
                    )
                })?;
        }
        wasi.envs(&self.env);
        wasi.allow_udp(false);
        match &self.net {
            None => {
                wasi.allow_tcp(false).allow_ip_name_lookup(false);
            }
            Some(net) => {
                let addrs = Arc::clone(&net.addrs);
                let label = label.to_string();
                wasi.allow_tcp(true)
                    .allow_ip_name_lookup(net.name_lookup)
                    .socket_addr_check(move |addr, used| {
                        let allowed = socket_use_allowed(&addrs, addr, used);
                        if !allowed {
                            tracing::debug!(
                                job = %label,
                                address = %addr,
                                "sandbox: denied a socket use ({used:?}) not granted by \
                                 {ALLOW_NET}"
                            );
                        }
                        Box::pin(std::future::ready(allowed))
                    });
            }
        }
        Ok(())
    }
}

/// The host's answer to every socket use of a guest with net grants: a
/// connect to a granted address, and the implicit bind before it (the
/// wildcard address, port 0); nothing else.
fn socket_use_allowed(
    granted: &HashSet<SocketAddr>,
    addr: SocketAddr,
    used: SocketAddrUse,
) -> bool {
    match used {
        SocketAddrUse::TcpConnect => granted.contains(&canonical(addr)),
        SocketAddrUse::TcpBind => addr.ip().is_unspecified() && addr.port() == 0,
        SocketAddrUse::TcpListen
        | SocketAddrUse::TcpAccept
        | SocketAddrUse::UdpBind
        | SocketAddrUse::UdpSend
        | SocketAddrUse::UdpReceive => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(s: &str) -> Result<DirGrant, String> {
        s.parse::<DirGrant>().map_err(|e| e.to_string())
    }

    fn net(s: &str) -> Result<NetGrant, String> {
        s.parse::<NetGrant>().map_err(|e| e.to_string())
    }

    fn env(s: &str) -> Result<EnvGrant, String> {
        s.parse::<EnvGrant>().map_err(|e| e.to_string())
    }

    fn dir_grant(host: &str, guest: Option<&str>, read_only: bool) -> DirGrant {
        DirGrant {
            host: host.into(),
            guest: guest.map(str::to_string),
            read_only,
        }
    }

    #[test]
    fn dir_grants_parse_host_guest_and_ro() {
        assert_eq!(dir("/srv/in"), Ok(dir_grant("/srv/in", None, false)));
        assert_eq!(dir("/srv/in:ro"), Ok(dir_grant("/srv/in", None, true)));
        assert_eq!(
            dir("/srv/in:/data"),
            Ok(dir_grant("/srv/in", Some("/data"), false))
        );
        assert_eq!(
            dir("rel/dir:/data:ro"),
            Ok(dir_grant("rel/dir", Some("/data"), true))
        );
        assert_eq!(dir("/srv/in:/"), Ok(dir_grant("/srv/in", Some("/"), false)));
    }

    #[test]
    fn bad_dir_grants_say_what_is_wrong() {
        let err = |s: &str| dir(s).unwrap_err();
        assert_eq!(
            err("/a:/b:ro:x"),
            "`/a:/b:ro:x` has 3 `:`; expected HOST_PATH[:GUEST_PATH][:ro] (paths cannot contain `:`)"
        );
        assert_eq!(
            err("/a:rw"),
            "`rw` in `/a:rw` is neither a guest path (absolute) nor `ro`; expected \
             HOST_PATH[:GUEST_PATH][:ro]"
        );
        assert_eq!(
            err("/a:/b:rw"),
            "`rw` in `/a:/b:rw` is neither a guest path (absolute) nor `ro`; expected \
             HOST_PATH[:GUEST_PATH][:ro]"
        );
        assert_eq!(err("/a:data:ro"), "the guest path `data` is not absolute");
        assert_eq!(
            err("/a:/data/../etc"),
            "the guest path `/data/../etc` has a `.` or `..` component"
        );
        assert_eq!(
            err(":/data"),
            "the host path is empty; expected HOST_PATH[:GUEST_PATH][:ro]"
        );
        assert_eq!(
            err(""),
            "the host path is empty; expected HOST_PATH[:GUEST_PATH][:ro]"
        );
        assert_eq!("/a:x".parse::<DirGrant>().unwrap_err().flag, "--allow-dir");
    }

    #[test]
    fn net_grants_parse_names_ipv4_and_bracketed_ipv6() {
        let grant = |host: &str, port| NetGrant {
            host: host.to_string(),
            port,
        };
        assert_eq!(net("127.0.0.1:8080"), Ok(grant("127.0.0.1", 8080)));
        assert_eq!(net("db.internal:5432"), Ok(grant("db.internal", 5432)));
        assert_eq!(net("[::1]:443"), Ok(grant("::1", 443)));
        assert_eq!(grant("::1", 443).to_string(), "[::1]:443");
    }

    #[test]
    fn bad_net_grants_say_what_is_wrong() {
        let err = |s: &str| net(s).unwrap_err();
        assert_eq!(
            err("localhost"),
            "`localhost` is not HOST:PORT (no `:PORT`)"
        );
        assert_eq!(
            err("localhost:http"),
            "the port `http` in `localhost:http` is not a number from 1 to 65535"
        );
        assert_eq!(
            err("localhost:65536"),
            "the port `65536` in `localhost:65536` is not a number from 1 to 65535"
        );
        assert_eq!(
            err("localhost:0"),
            "the port in `localhost:0` is 0; give the port to connect to (1 to 65535)"
        );
        assert_eq!(
            err("::1:80"),
            "`::1:80` has more than one `:`; write an IPv6 address in brackets: [::1]:PORT"
        );
        assert_eq!(
            err("[::1]80"),
            "`[::1]80` is not [IPV6]:PORT (a `]:` must follow the address)"
        );
        assert_eq!(err("[db]:80"), "`db` in brackets is not an IPv6 address");
        assert_eq!(err(":80"), "the host is empty; expected HOST:PORT");
        assert_eq!(
            err("a b:80"),
            "`a b` is neither an IP address nor a host name (letters, digits, `-`, `_`, \
             dot-separated)"
        );
        assert_eq!(
            err("a..b:80"),
            "`a..b` is neither an IP address nor a host name (letters, digits, `-`, `_`, \
             dot-separated)"
        );
    }

    #[test]
    fn env_grants_split_at_the_first_equals_sign() {
        assert_eq!(
            env("MODE=a=b"),
            Ok(EnvGrant {
                name: "MODE".into(),
                value: "a=b".into()
            })
        );
        assert_eq!(
            env("EMPTY="),
            Ok(EnvGrant {
                name: "EMPTY".into(),
                value: String::new()
            })
        );
        assert_eq!(env("MODE").unwrap_err(), "`MODE` is not NAME=VALUE");
        assert_eq!(
            env("=x").unwrap_err(),
            "the variable name is empty; expected NAME=VALUE"
        );
    }

    #[test]
    fn the_debug_form_hides_env_values() {
        let grants = Grants {
            env: vec![env("TOKEN=hunter2").unwrap()],
            ..Grants::default()
        };
        let debug = format!("{grants:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(
            debug.contains(r#"EnvGrant { name: "TOKEN", value: <7 bytes> }"#),
            "{debug}"
        );
    }

    #[test]
    fn grants_round_trip_through_json_as_their_flag_syntax() {
        let grants = Grants {
            dirs: vec![
                dir_grant("/srv/ref", Some("/ref"), true),
                dir_grant("out", None, false),
            ],
            net: vec![
                NetGrant {
                    host: "db.internal".into(),
                    port: 5432,
                },
                NetGrant {
                    host: "::1".into(),
                    port: 9,
                },
            ],
            env: vec![EnvGrant {
                name: "MODE".into(),
                value: "x=y".into(),
            }],
        };
        let json = serde_json::to_string(&grants).unwrap();
        assert_eq!(
            json,
            r#"{"dirs":["/srv/ref:/ref:ro","out"],"net":["db.internal:5432","[::1]:9"],"env":["MODE=x=y"]}"#
        );
        assert_eq!(serde_json::from_str::<Grants>(&json).unwrap(), grants);
        assert_eq!(
            serde_json::from_str::<Grants>("{}").unwrap(),
            Grants::default()
        );
    }

    #[test]
    fn bad_json_grants_are_refused_with_the_flag_message() {
        let err = serde_json::from_str::<Grants>(r#"{"net":["db"]}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("--allow-net `db`: `db` is not HOST:PORT (no `:PORT`)"),
            "{err}"
        );
        let err = serde_json::from_str::<Grants>(r#"{"dir":[]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `dir`"), "{err}");
    }

    #[test]
    fn a_missing_directory_or_a_file_is_an_error_naming_the_flag_and_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("missing");
        let file = tmp.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let resolve = |grant: DirGrant| {
            Grants {
                dirs: vec![grant],
                ..Grants::default()
            }
            .resolve()
            .map(|_| ())
            .map_err(|e| e.to_string())
        };
        assert_eq!(
            resolve(dir_grant(missing.to_str().unwrap(), Some("/data"), false)),
            Err(format!(
                "--allow-dir {}:/data: no such directory",
                missing.display()
            ))
        );
        assert_eq!(
            resolve(dir_grant(file.to_str().unwrap(), None, true)),
            Err(format!(
                "--allow-dir {}:ro: it is not a directory",
                file.display()
            ))
        );
        assert_eq!(
            resolve(dir_grant(tmp.path().to_str().unwrap(), None, false)),
            Ok(())
        );
    }

    #[test]
    fn the_guest_path_defaults_to_the_absolute_host_path_and_must_be_unique() {
        let tmp = tempfile::tempdir().unwrap();
        let host = tmp.path().to_str().unwrap();
        let sandbox = Grants {
            dirs: vec![dir_grant(host, None, true)],
            ..Grants::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(sandbox.dirs[0].guest, host);
        assert!(matches!(sandbox.dirs[0].perms, FsPerms::ReadOnly));

        let err = Grants {
            dirs: vec![
                dir_grant(host, Some("/data"), false),
                dir_grant("/", Some("/data"), true),
            ],
            ..Grants::default()
        }
        .resolve()
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("--allow-dir /:/data:ro: the guest path /data is already given to {host}")
        );
    }

    #[test]
    fn grants_built_in_code_are_checked_at_the_start_too() {
        let err = Grants {
            env: vec![EnvGrant {
                name: "A=B".into(),
                value: "c".into(),
            }],
            ..Grants::default()
        }
        .resolve()
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "--env A=B=…: the variable name `A=B` contains `=` or a NUL character"
        );
        let err = Grants {
            net: vec![NetGrant {
                host: "127.0.0.1".into(),
                port: 0,
            }],
            ..Grants::default()
        }
        .resolve()
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "--allow-net 127.0.0.1:0: port 0 is not a port one can connect to"
        );
    }

    #[test]
    fn a_name_resolves_to_its_addresses_and_turns_on_name_lookup() {
        let resolve = |hosts: &[&str]| {
            Grants {
                net: hosts
                    .iter()
                    .map(|h| NetGrant {
                        host: h.to_string(),
                        port: 7000,
                    })
                    .collect(),
                ..Grants::default()
            }
            .resolve()
            .unwrap()
            .net
            .unwrap()
        };
        let by_ip = resolve(&["127.0.0.1", "::1"]);
        let expected: HashSet<SocketAddr> = ["127.0.0.1:7000", "[::1]:7000"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(*by_ip.addrs, expected);
        assert!(!by_ip.name_lookup, "addresses need no lookup");

        // `localhost` resolves (from /etc/hosts) to loopback addresses only.
        let by_name = resolve(&["localhost"]);
        assert!(by_name.name_lookup);
        assert!(!by_name.addrs.is_empty());
        assert!(
            by_name
                .addrs
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 7000),
            "{:?}",
            by_name.addrs
        );
    }

    #[test]
    fn only_connects_to_granted_addresses_and_their_implicit_bind_are_allowed() {
        let granted: HashSet<SocketAddr> = ["127.0.0.1:7000".parse().unwrap()].into();
        let allowed = |addr: &str, used| socket_use_allowed(&granted, addr.parse().unwrap(), used);
        assert!(allowed("127.0.0.1:7000", SocketAddrUse::TcpConnect));
        assert!(allowed(
            "[::ffff:127.0.0.1]:7000",
            SocketAddrUse::TcpConnect
        ));
        assert!(!allowed("127.0.0.1:7001", SocketAddrUse::TcpConnect));
        assert!(!allowed("127.0.0.2:7000", SocketAddrUse::TcpConnect));
        assert!(allowed("0.0.0.0:0", SocketAddrUse::TcpBind));
        assert!(allowed("[::]:0", SocketAddrUse::TcpBind));
        assert!(!allowed("0.0.0.0:7000", SocketAddrUse::TcpBind));
        assert!(!allowed("127.0.0.1:0", SocketAddrUse::TcpBind));
        assert!(!allowed("0.0.0.0:0", SocketAddrUse::TcpListen));
        assert!(!allowed("127.0.0.1:7000", SocketAddrUse::TcpAccept));
        assert!(!allowed("127.0.0.1:7000", SocketAddrUse::UdpSend));
        assert!(!allowed("0.0.0.0:0", SocketAddrUse::UdpBind));
        assert!(!allowed("127.0.0.1:7000", SocketAddrUse::UdpReceive));
    }
}
