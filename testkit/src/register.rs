//! Registering users on a Synapse through its shared-secret admin API
//! (`/_synapse/admin/v1/register`): a nonce, then the user with an HMAC-SHA1 of the request
//! keyed by the config's `registration_shared_secret`.
//!
//! It exists apart from [`crate::synapse::Synapse`] because not every homeserver is one the
//! harness started: the benchmark drives a Synapse started by `ops/bench/run`, and only knows
//! its URL and the secret. Both go through [`Registrar`].

use anyhow::anyhow;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};

/// A user registered on the test homeserver.
#[derive(Debug, Clone)]
pub struct UserCreds {
    pub user_id: matrix_sdk::ruma::OwnedUserId,
    pub localpart: String,
    pub password: String,
    pub access_token: String,
    pub device_id: String,
}

/// Registers users on one homeserver with its shared secret.
#[derive(Debug, Clone)]
pub struct Registrar {
    http: reqwest::Client,
    /// `http://host:port`, no trailing slash.
    base_url: String,
    shared_secret: String,
}

/// How a registration ended, when an existing user is not an error.
enum Outcome {
    Registered(UserCreds),
    /// `M_USER_IN_USE`: the localpart is taken (the error, for when that is one).
    InUse(anyhow::Error),
}

impl Registrar {
    /// A registrar for the homeserver at `base_url` (no trailing slash), using `http` for its
    /// requests (timeouts are the client's).
    pub fn new(http: reqwest::Client, base_url: &str, shared_secret: &str) -> Registrar {
        Registrar {
            http,
            base_url: base_url.to_owned(),
            shared_secret: shared_secret.to_owned(),
        }
    }

    /// Registers `localpart` (an admin if `admin`); fails if it exists already.
    pub async fn register(
        &self,
        localpart: &str,
        password: &str,
        admin: bool,
    ) -> anyhow::Result<UserCreds> {
        match self.attempt(localpart, password, admin).await? {
            Outcome::Registered(creds) => Ok(creds),
            Outcome::InUse(error) => Err(error),
        }
    }

    /// Registers `localpart` unless it exists already (`None` then: the caller logs in with
    /// the password it chose the first time), e.g. when a benchmark runs again on the same
    /// homeserver.
    pub async fn register_unless_taken(
        &self,
        localpart: &str,
        password: &str,
        admin: bool,
    ) -> anyhow::Result<Option<UserCreds>> {
        match self.attempt(localpart, password, admin).await? {
            Outcome::Registered(creds) => Ok(Some(creds)),
            Outcome::InUse(_) => Ok(None),
        }
    }

    async fn attempt(
        &self,
        localpart: &str,
        password: &str,
        admin: bool,
    ) -> anyhow::Result<Outcome> {
        let url = format!("{}/_synapse/admin/v1/register", self.base_url);
        let nonce_response: Value = self
            .http
            .get(&url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let nonce = nonce_response["nonce"]
            .as_str()
            .ok_or_else(|| anyhow!("no nonce in {nonce_response}"))?;
        let mac = registration_mac(&self.shared_secret, nonce, localpart, password, admin);

        let response = self
            .http
            .post(&url)
            .json(&json!({
                "nonce": nonce,
                "username": localpart,
                "password": password,
                "admin": admin,
                "mac": mac,
            }))
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let error = anyhow!("registering {localpart}: HTTP {status}: {body}");
            if body["errcode"] == "M_USER_IN_USE" {
                return Ok(Outcome::InUse(error));
            }
            return Err(error);
        }
        let field = |name: &str| -> anyhow::Result<String> {
            body[name]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("no {name} in the register response {body}"))
        };
        Ok(Outcome::Registered(UserCreds {
            user_id: matrix_sdk::ruma::UserId::parse(field("user_id")?)?,
            localpart: localpart.to_owned(),
            password: password.to_owned(),
            access_token: field("access_token")?,
            device_id: field("device_id")?,
        }))
    }
}

/// The `mac` of a registration request: hex HMAC-SHA1 over
/// `nonce NUL user NUL password NUL ("admin" | "notadmin")`, keyed by the shared secret.
fn registration_mac(
    shared_secret: &str,
    nonce: &str,
    localpart: &str,
    password: &str,
    admin: bool,
) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(shared_secret.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(nonce.as_bytes());
    mac.update(b"\0");
    mac.update(localpart.as_bytes());
    mac.update(b"\0");
    mac.update(password.as_bytes());
    mac.update(b"\0");
    mac.update(if admin {
        b"admin".as_slice()
    } else {
        b"notadmin".as_slice()
    });
    hex::encode(mac.finalize().into_bytes())
}
