//! Who is calling: passwords (argon2), sign-in tokens (HS256 JWTs) and
//! personal access tokens, and the root account on first start.
//!
//! - Passwords are stored as argon2id PHC strings; hashing and checking run on
//!   a few threads of their own behind a bounded queue ([`crate::password`]).
//!   A sign-in for an unknown name still checks a password against a fixed
//!   hash, so the answer time does not tell names apart. Failed sign-ins (and
//!   failed checks of one's own old password) slow down the next ones from the
//!   same address ([`crate::sign_in_throttle`]).
//! - A sign-in token is a JWT (`sub` = user ID, `jti`, `iat`, `exp`) signed
//!   with HS256. The key comes from `auth.jwt_secret`, or is generated once and
//!   kept in the database so every replica accepts every replica's tokens
//!   (and replaced when the SQLite file was found readable by other users, see
//!   [`crate::private_files`]).
//!   Signing out records the token's `jti` until it expires. `exp` is checked
//!   here, in whole seconds, against the manager's [`Clock`] (jsonwebtoken's
//!   own check would read the system clock): a token is refused from the
//!   second after `exp` on.
//! - A personal access token is `dpat_` + 32 random bytes (hex); only its
//!   SHA-256 is stored. It carries its owner's role.
//! - Every request re-reads the user, so a deleted user or a changed role
//!   takes effect at once for tokens already handed out, and a changed
//!   password ends the user's sign-in sessions (its access tokens stay).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::clock::Clock;
use crate::config::{AuthConfig, MIN_PASSWORD_LEN};
use crate::error::Error;
pub use crate::password::MAX_PASSWORD_LEN;
use crate::password::Passwords;
use crate::sign_in_throttle::SignInThrottle;
use crate::store::{ROOT_USER, Role, Store, StoreError, Timestamp, User};

/// Prefix that tells a personal access token from a sign-in token.
pub const PAT_PREFIX: &str = "dpat_";
/// Name of the setting holding the generated JWT key.
const JWT_SECRET_SETTING: &str = "jwt_secret";

/// The claims of a sign-in token.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// User ID.
    sub: String,
    /// Token ID, for sign-out.
    jti: String,
    /// Issued at, Unix seconds.
    iat: u64,
    /// Expires at, Unix seconds.
    exp: u64,
}

/// How a request proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A sign-in token with this ID, issued at `issued_at` (whole seconds),
    /// valid until `expires_at`.
    Session { jti: String, issued_at: Timestamp, expires_at: Timestamp },
    /// A personal access token with this row ID.
    Pat { token_id: i64 },
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: User,
    pub credential: Credential,
}

impl Caller {
    /// Fails with 403 unless the caller is root.
    pub fn require_root(&self) -> Result<(), Error> {
        match self.user.role {
            Role::Root => Ok(()),
            Role::Guest => Err(Error::PermissionDenied("this needs the root role; guests may only read".into())),
        }
    }
}

/// A signed-in session as handed to the client.
#[derive(Debug)]
pub struct SignedIn {
    pub token: String,
    pub expires_at: Timestamp,
    pub user: User,
}

/// Token issuing and checking; cheap to share behind an `Arc`.
pub struct Auth {
    store: Store,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
    clock: Clock,
    passwords: Passwords,
    throttle: SignInThrottle,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

impl Auth {
    /// Sets up signing (configured key, or the one kept in the database) and
    /// makes sure the root user exists (see [`bootstrap_root`]). Token
    /// lifetimes are measured on `clock`. `key_exposed`: the database may have
    /// been read by someone else (see [`crate::private_files`]), so a key kept
    /// there is replaced, ending every sign-in session.
    pub async fn new(store: Store, config: &AuthConfig, clock: Clock, key_exposed: bool) -> anyhow::Result<Arc<Self>> {
        let secret = match &config.jwt_secret {
            Some(s) => s.clone(),
            None if key_exposed => {
                let fresh = random_hex(32);
                store
                    .replace_setting(JWT_SECRET_SETTING, &fresh)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot replace the JWT key in the database: {e}"))?;
                tracing::warn!(
                    "the database was readable by other users: the JWT key kept in it was replaced; \
                     every sign-in session ends (access tokens stay)"
                );
                fresh
            }
            None => store
                .setting_or_init(JWT_SECRET_SETTING, &random_hex(32))
                .await
                .map_err(|e| anyhow::anyhow!("cannot read or create the JWT key in the database: {e}"))?,
        };
        let passwords = Passwords::new(config.password_checks, config.password_check_queue)
            .map_err(|e| anyhow::anyhow!("cannot start the password threads: {e}"))?;
        bootstrap_root(&store, config, &passwords).await?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        // `exp` must be there; it is compared with `clock` in `authenticate`.
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["exp", "sub", "jti"]);
        Ok(Arc::new(Self {
            store,
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            ttl: config.token_ttl,
            clock,
            passwords,
            throttle: SignInThrottle::new(config.sign_in_throttle.clone()),
        }))
    }

    /// An argon2id PHC string for a new password.
    pub async fn hash_password(&self, password: &str) -> Result<String, Error> {
        self.passwords.hash(password).await
    }

    /// Whether `password` is `user`'s, for a user proving it knows its own
    /// password (changing it); failures count against `client` like sign-ins.
    pub async fn check_own_password(&self, user: &User, password: &str, client: IpAddr) -> Result<bool, Error> {
        self.throttled(client, &user.name)?;
        let ok = self.passwords.verify(password, Some(&user.password_hash)).await?;
        self.count(client, &user.name, ok);
        Ok(ok)
    }

    /// Refuses while `name` from `client` must wait after failures.
    fn throttled(&self, client: IpAddr, name: &str) -> Result<(), Error> {
        self.throttle.check(client, name, Instant::now()).map_err(|wait| {
            // Whole seconds, rounded up, as `Retry-After` says it.
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            Error::TooManyRequests { message: format!("too many failed attempts; retry in {secs}s"), retry_after: wait }
        })
    }

    fn count(&self, client: IpAddr, name: &str, ok: bool) {
        if ok {
            self.throttle.succeeded(client, name);
        } else {
            self.throttle.failed(client, name, Instant::now());
        }
    }

    /// Checks a name and password from `client`; a sign-in token on success.
    /// Wrong name and wrong password get the same answer. Refused with
    /// [`Error::TooManyRequests`] while the name or the address must wait
    /// after failures, or when too many checks are queued.
    pub async fn sign_in(&self, name: &str, password: &str, client: IpAddr) -> Result<SignedIn, Error> {
        let refused = || Error::Unauthenticated("wrong name or password".into());
        self.throttled(client, name)?;
        let user = match self.store.get_user_by_name(name).await {
            Ok(u) => Some(u),
            Err(StoreError::NotFound) => None,
            Err(e) => return Err(e.into()),
        };
        let ok = self.passwords.verify(password, user.as_ref().map(|u| u.password_hash.as_str())).await?;
        let ok = ok && user.is_some();
        self.count(client, name, ok);
        let user = match user {
            Some(u) if ok => u,
            _ => return Err(refused()),
        };
        let now = self.clock.timestamp();
        let expires_at = now.saturating_add(self.ttl);
        let claims = Claims { sub: user.id.to_string(), jti: random_hex(16), iat: secs(now), exp: secs(expires_at) };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| Error::Internal(format!("cannot sign a token: {e}")))?;
        Ok(SignedIn { token, expires_at: Timestamp(i64::try_from(claims.exp).unwrap_or(i64::MAX) * 1000), user })
    }

    /// Who presents `bearer` (a sign-in token or a personal access token).
    pub async fn authenticate(&self, bearer: &str) -> Result<Caller, Error> {
        let now = self.clock.timestamp();
        let (user_id, credential) = if let Some(secret) = bearer.strip_prefix(PAT_PREFIX) {
            let token = match self.store.find_token_by_hash(&pat_hash(secret)).await {
                Ok(t) => t,
                Err(StoreError::NotFound) => return Err(Error::Unauthenticated("unknown access token".into())),
                Err(e) => return Err(e.into()),
            };
            if token.is_expired(now) {
                return Err(Error::Unauthenticated("the access token has expired".into()));
            }
            (token.user_id, Credential::Pat { token_id: token.id })
        } else {
            let data = jsonwebtoken::decode::<Claims>(bearer, &self.decoding, &self.validation)
                .map_err(|_| Error::Unauthenticated("invalid token".into()))?;
            let claims = data.claims;
            // Valid through the whole second `exp`, as jsonwebtoken with no leeway.
            if claims.exp < secs(now) {
                return Err(Error::Unauthenticated("the sign-in token has expired".into()));
            }
            if self.store.is_session_revoked(&claims.jti).await? {
                return Err(Error::Unauthenticated("signed out".into()));
            }
            let user_id = claims.sub.parse::<i64>().map_err(|_| Error::Unauthenticated("invalid token".into()))?;
            let expires_at = Timestamp(i64::try_from(claims.exp).unwrap_or(i64::MAX).saturating_mul(1000));
            let issued_at = Timestamp(i64::try_from(claims.iat).unwrap_or(i64::MAX).saturating_mul(1000));
            (user_id, Credential::Session { jti: claims.jti, expires_at, issued_at })
        };
        let user = match self.store.get_user(user_id).await {
            Ok(u) => u,
            Err(StoreError::NotFound) => return Err(Error::Unauthenticated("the user no longer exists".into())),
            Err(e) => return Err(e.into()),
        };
        if let Credential::Session { issued_at, .. } = &credential
            && *issued_at < user.sessions_valid_after
        {
            return Err(Error::Unauthenticated("the password changed; sign in again".into()));
        }
        Ok(Caller { user, credential })
    }

    /// Ends the caller's sign-in session; a personal access token is not
    /// affected (delete it instead).
    pub async fn sign_out(&self, caller: &Caller) -> Result<(), Error> {
        if let Credential::Session { jti, expires_at, .. } = &caller.credential {
            self.store.revoke_session(jti, *expires_at).await?;
        }
        Ok(())
    }
}

/// Creates the `root` user when the database has none: with
/// `auth.root_password`, or else with a generated password written to
/// `auth.root_password_file` (mode 0600). The password itself is never logged.
pub async fn bootstrap_root(store: &Store, config: &AuthConfig, passwords: &Passwords) -> anyhow::Result<()> {
    match store.get_user_by_name(ROOT_USER).await {
        Ok(_) => return Ok(()),
        Err(StoreError::NotFound) => {}
        Err(e) => anyhow::bail!("cannot look up the root user: {e}"),
    }
    let (password, generated) = match &config.root_password {
        Some(p) => (p.clone(), false),
        None => (random_hex(12), true),
    };
    if generated {
        let contents = format!("{password}\n");
        crate::private_files::write_secret(&config.root_password_file, contents.as_bytes()).map_err(|e| {
            anyhow::anyhow!(
                "auth.root_password_file: cannot write the generated root password to {}: {e} \
                 (or set auth.root_password / MANAGER__AUTH__ROOT_PASSWORD)",
                config.root_password_file.display()
            )
        })?;
    }
    let hash = passwords.hash(&password).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    store.ensure_root_user(&hash).await.map_err(|e| anyhow::anyhow!("cannot create the root user: {e}"))?;
    if generated {
        tracing::warn!(
            file = %config.root_password_file.display(),
            "created user root with a generated password, written to the file; change it after signing in"
        );
    } else {
        tracing::info!("created user root with the configured password (auth.root_password)");
    }
    Ok(())
}

/// Checks a new password's shape; the error names `field`.
pub fn check_password(field: &'static str, password: &str) -> Result<(), Error> {
    if password.len() < MIN_PASSWORD_LEN {
        return Err(Error::invalid(field, format!("must be at least {MIN_PASSWORD_LEN} bytes")));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(Error::invalid(field, format!("must be at most {MAX_PASSWORD_LEN} bytes")));
    }
    Ok(())
}

/// A new personal access token: the secret to hand out once, and the hash to store.
pub fn new_pat() -> (String, String) {
    let secret = random_hex(32);
    let hash = pat_hash(&secret);
    (format!("{PAT_PREFIX}{secret}"), hash)
}

/// The stored form of a personal access token (without its prefix).
fn pat_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill(&mut buf[..]);
    hex::encode(buf)
}

fn secs(t: Timestamp) -> u64 {
    u64::try_from(t.0 / 1000).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pats_are_prefixed_and_stored_hashed() {
        let (secret, hash) = new_pat();
        assert!(secret.starts_with(PAT_PREFIX));
        assert_eq!(pat_hash(secret.strip_prefix(PAT_PREFIX).unwrap()), hash);
        assert!(!hash.contains(&secret[PAT_PREFIX.len()..]));
    }

    #[test]
    fn password_rules_name_the_field() {
        assert!(check_password("password", "longenough").is_ok());
        let e = check_password("new_password", "short").unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { field, .. } if field == "new_password"));
    }
}
