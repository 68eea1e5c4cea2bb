//! The API's bearer token: read from `--token-file`, or generated into
//! `<data-dir>/token` on first start (256 random bits in hex, the file
//! created with mode 0600, never widened); and the middleware that refuses
//! every request without it (401, `WWW-Authenticate: Bearer`), comparing in
//! constant time.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::api::ErrorBody;

/// Why the token could not be read or created.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The file could not be read or written.
    #[error("{what} the token file {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file holds no token.
    #[error("the token file {path} is empty")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// No random bytes.
    #[error("cannot draw a random token: {0}")]
    Random(String),
}

/// The API's token.
#[derive(Clone)]
pub struct Token(Arc<str>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

impl Token {
    /// A token with this text (surrounding whitespace removed).
    pub fn new(text: &str) -> Token {
        Token(text.trim().into())
    }

    /// The token's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Reads the token from `path` (its first line, trimmed).
    pub fn read(path: &Path) -> Result<Token, TokenError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::Io {
            what: "cannot read",
            path: path.to_path_buf(),
            source,
        })?;
        let token = Token::new(text.lines().next().unwrap_or(""));
        if token.0.is_empty() {
            return Err(TokenError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(token)
    }

    /// Reads `path`, or creates it (mode 0600 from its creation) with a new
    /// random token when it does not exist.
    pub fn read_or_create(path: &Path) -> Result<Token, TokenError> {
        let mut bytes = [0u8; 32];
        rand::TryRngCore::try_fill_bytes(&mut rand::rngs::OsRng, &mut bytes)
            .map_err(|e| TokenError::Random(e.to_string()))?;
        let token = hex::encode(bytes);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(path) {
            Ok(mut file) => {
                let io = |source| TokenError::Io {
                    what: "cannot write",
                    path: path.to_path_buf(),
                    source,
                };
                file.write_all(format!("{token}\n").as_bytes())
                    .map_err(io)?;
                file.sync_all().map_err(io)?;
                tracing::info!("created the API token in {}", path.display());
                Ok(Token::new(&token))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Token::read(path),
            Err(source) => Err(TokenError::Io {
                what: "cannot create",
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Whether `presented` is this token, in time independent of where
    /// they differ.
    pub fn matches(&self, presented: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), presented.as_bytes());
        // The length is not secret (every token here has 64 characters).
        if a.len() != b.len() {
            return false;
        }
        let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
        std::hint::black_box(difference) == 0
    }
}

/// Lets a request through only with `Authorization: Bearer <token>`.
pub async fn require_token(State(token): State<Token>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
    match presented {
        Some(presented) if token.matches(presented) => next.run(request).await,
        other => {
            let error = if other.is_some() {
                "the bearer token is wrong"
            } else {
                "this API needs `Authorization: Bearer <token>` (the token is in the host's \
                 <data-dir>/token, or the file given to `serve --token-file`)"
            };
            let mut response = (
                StatusCode::UNAUTHORIZED,
                axum::Json(ErrorBody {
                    error: error.into(),
                    kind: "unauthorized".into(),
                    diff: None,
                }),
            )
                .into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_new_token_file_is_private_and_read_back_the_second_time() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let token = Token::read_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
        assert_eq!(token.as_str().len(), 64);
        assert!(token.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(
            Token::read_or_create(&path).unwrap().as_str(),
            token.as_str()
        );
        let other = tempfile::tempdir().unwrap();
        let second = Token::read_or_create(&other.path().join("token")).unwrap();
        assert_ne!(second.as_str(), token.as_str());
    }

    #[test]
    fn only_the_same_token_matches() {
        let token = Token::new("abcd\n");
        assert!(token.matches("abcd"));
        assert!(!token.matches("abce"));
        assert!(!token.matches("abc"));
        assert!(!token.matches(""));
    }

    #[test]
    fn an_empty_token_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(Token::read(&path), Err(TokenError::Empty { .. })));
    }
}
