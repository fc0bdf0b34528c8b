//! Bearer-token authentication of the OTLP receivers and the admin API: the tokens of
//! `auth.bearer_tokens_file` (one a line), compared in constant time, re-read on SIGHUP
//! without dropping a connection. See the README's security section.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::HeaderMap;
use subtle::ConstantTimeEq;

use crate::config::AuthConfig;

/// A token file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {why}")]
pub struct AuthError {
    /// the token file
    pub path: PathBuf,
    /// why
    pub why: String,
}

/// The accepted tokens, swapped whole on reload.
pub struct Tokens {
    file: PathBuf,
    tokens: ArcSwap<Vec<Box<[u8]>>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never the tokens themselves
        f.debug_struct("Tokens")
            .field("file", &self.file)
            .field("count", &self.tokens.load().len())
            .finish()
    }
}

impl Tokens {
    /// Reads `cfg.bearer_tokens_file`.
    pub fn load(cfg: &AuthConfig) -> Result<Arc<Tokens>, AuthError> {
        let file = cfg.bearer_tokens_file.clone();
        let tokens = read(&file)?;
        Ok(Arc::new(Tokens {
            file,
            tokens: ArcSwap::from_pointee(tokens),
        }))
    }

    /// Reads the file again and answers how many tokens it holds; on an error the tokens
    /// in use stay.
    pub fn reload(&self) -> Result<usize, AuthError> {
        let tokens = read(&self.file)?;
        let n = tokens.len();
        self.tokens.store(Arc::new(tokens));
        Ok(n)
    }

    /// Whether `headers` carry `authorization: Bearer <token>` with an accepted token.
    /// Every accepted token is compared, each in constant time, so the answer's timing
    /// says nothing about which token came close.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(token) = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| bearer(v.as_bytes()))
        else {
            return false;
        };
        let mut ok = subtle::Choice::from(0);
        for t in self.tokens.load().iter() {
            ok |= t.as_ref().ct_eq(token);
        }
        ok.into()
    }
}

/// The token of an `Authorization` value `Bearer <token>` (the scheme is
/// case-insensitive, RFC 6750).
fn bearer(v: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = (v.get(..7)?, &v[7..]);
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let t = rest.trim_ascii();
    (!t.is_empty()).then_some(t)
}

fn read(path: &Path) -> Result<Vec<Box<[u8]>>, AuthError> {
    let fail = |why: String| AuthError {
        path: path.to_path_buf(),
        why,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let tokens: Vec<Box<[u8]>> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| l.as_bytes().into())
        .collect();
    if tokens.is_empty() {
        return Err(fail(
            "no token in it (one token a line): every request would be refused".into(),
        ));
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(text: &str) -> Arc<Tokens> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens");
        std::fs::write(&file, text).unwrap();
        Tokens::load(&AuthConfig {
            bearer_tokens_file: file,
        })
        .unwrap()
    }

    fn with(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, v.parse().unwrap());
        h
    }

    #[test]
    fn only_an_accepted_bearer_token_passes() {
        let t = tokens("alpha\n\n  beta  \n");
        assert!(t.allows(&with("Bearer alpha")));
        assert!(t.allows(&with("bearer beta")));
        assert!(!t.allows(&with("Bearer alph")));
        assert!(!t.allows(&with("Bearer alphaa")));
        assert!(!t.allows(&with("Basic alpha")));
        assert!(!t.allows(&with("Bearer ")));
        assert!(!t.allows(&with("alpha")));
        assert!(!t.allows(&HeaderMap::new()));
    }

    #[test]
    fn an_empty_or_missing_file_is_an_error_and_a_failed_reload_keeps_the_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens");
        let cfg = AuthConfig {
            bearer_tokens_file: file.clone(),
        };
        assert!(Tokens::load(&cfg).is_err());
        std::fs::write(&file, "\n \n").unwrap();
        assert!(Tokens::load(&cfg).unwrap_err().why.contains("no token"));
        std::fs::write(&file, "one\n").unwrap();
        let t = Tokens::load(&cfg).unwrap();
        std::fs::write(&file, "").unwrap();
        assert!(t.reload().is_err());
        assert!(t.allows(&with("Bearer one")));
        std::fs::write(&file, "two\n").unwrap();
        assert_eq!(t.reload().unwrap(), 1);
        assert!(!t.allows(&with("Bearer one")) && t.allows(&with("Bearer two")));
    }
}
