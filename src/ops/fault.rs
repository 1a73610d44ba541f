//! Fault-injection drills over HTTP (cargo feature `fault-injection` only).
//!
//! Why this file exists: operators and the end-to-end tests break one actor of a running
//! process on purpose (a panic in a room, an agent connection that fails to start) and
//! watch supervision and the status page react. The endpoint wraps the actors crate's
//! `registry.faults().inject(...)`, keeps the returned guard alive for the requested
//! duration (or until `DELETE`), and is guarded by a bearer token (`ops.fault_token`): with
//! no token configured it refuses everything. A room is targeted by its id whether its
//! actor is active or idle: an idle room is activated for the drill (the fault is in place
//! first, so `fail_start` hits that activation).
//!
//! - `POST /faults` `{"target": "room:!abc:hs", "fault": {"type": "panic", "nth": 1,
//!   "message_type": "UserMessage"}, "duration_secs": 60}` → 201 with the drill (its `id`);
//! - `GET /faults` → the active drills;
//! - `DELETE /faults/{id}` → 204 (the fault is removed), 404 if unknown.
//!
//! Fault kinds (`type`): `panic` (`nth`, `message_type`), `stop`, `return_error`,
//! `delay` (`ms`), `hang`, `fail_start` (`times`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actors::{ActorId, Fault, FaultGuard, FaultTarget, Registry};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::guard::{bearer_token, constant_time_eq};
use crate::config::Secret;

/// How long a drill lasts when the request does not say.
pub const DEFAULT_DRILL_SECS: u64 = 300;
/// The longest drill accepted (a forgotten drill ends by itself).
pub const MAX_DRILL_SECS: u64 = 24 * 3_600;

/// A fault, as requested over HTTP.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultSpec {
    /// Panic while handling the `nth` matching message (default 1), once.
    Panic {
        /// Which matching message panics, from 1.
        #[serde(default = "one")]
        nth: u32,
        /// Suffix of the message type name to match (e.g. `UserMessage`).
        #[serde(default)]
        message_type: Option<String>,
    },
    /// Stop the actor on its next message, once.
    Stop,
    /// Every message gets an error while the drill lasts.
    ReturnError,
    /// Every message waits `ms` milliseconds first.
    Delay {
        /// The wait, in milliseconds.
        ms: u64,
    },
    /// Every message is swallowed while the drill lasts.
    Hang,
    /// The next `times` incarnations fail as they start.
    FailStart {
        /// How many starts fail.
        times: u32,
    },
}

fn one() -> u32 {
    1
}

impl FaultSpec {
    fn to_fault(&self) -> Fault {
        match self {
            FaultSpec::Panic { nth, message_type } => Fault::Panic {
                nth: (*nth).max(1),
                message_type: message_type.clone(),
            },
            FaultSpec::Stop => Fault::Stop,
            FaultSpec::ReturnError => Fault::ReturnError,
            FaultSpec::Delay { ms } => Fault::Delay(Duration::from_millis(*ms)),
            FaultSpec::Hang => Fault::Hang,
            FaultSpec::FailStart { times } => Fault::FailStart { times: *times },
        }
    }
}

/// A drill request.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillRequest {
    /// The actor id (`room:<room id>`, `agent:<id>`, `router`, ...).
    pub target: String,
    /// What goes wrong.
    pub fault: FaultSpec,
    /// How long the fault stays (default [`DEFAULT_DRILL_SECS`], at most [`MAX_DRILL_SECS`]).
    pub duration_secs: Option<u64>,
}

/// An active drill.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Drill {
    /// Its id (for `DELETE /faults/{id}`).
    pub id: u64,
    /// The actor.
    pub target: String,
    /// The fault.
    pub fault: FaultSpec,
    /// How long it lasts from its start, in seconds.
    pub duration_secs: u64,
}

struct Active {
    drill: Drill,
    _guard: FaultGuard,
    expiry: tokio::task::AbortHandle,
}

/// The drills of one process.
pub struct Drills {
    token: Option<Secret>,
    registry: Registry,
    /// Activates an idle room a drill targets.
    rooms: Option<crate::runtime::directory::RoomDirectory>,
    next_id: AtomicU64,
    active: Mutex<HashMap<u64, Active>>,
}

/// Why a drill request was refused.
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    /// No `ops.fault_token` is configured.
    #[error("fault injection is disabled: set ops.fault_token (SURFACES__OPS__FAULT_TOKEN)")]
    Disabled,
    /// The bearer token is missing or wrong.
    #[error("missing or wrong bearer token")]
    Unauthorized,
    /// No actor has that id.
    #[error("no actor {0}")]
    UnknownActor(String),
    /// No drill has that id.
    #[error("no drill {0}")]
    UnknownDrill(u64),
    /// The duration is out of range.
    #[error("duration_secs must be between 1 and {MAX_DRILL_SECS}")]
    BadDuration,
}

impl IntoResponse for DrillError {
    fn into_response(self) -> Response {
        let status = match self {
            DrillError::Disabled => StatusCode::FORBIDDEN,
            DrillError::Unauthorized => StatusCode::UNAUTHORIZED,
            DrillError::UnknownActor(_) | DrillError::UnknownDrill(_) => StatusCode::NOT_FOUND,
            DrillError::BadDuration => StatusCode::BAD_REQUEST,
        };
        let mut response = (status, format!("{self}\n")).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl Drills {
    /// Drills on `registry`'s actors, allowed with `token`.
    pub fn new(token: Option<Secret>, registry: Registry) -> Arc<Self> {
        Self::build(token, registry, None)
    }

    /// Drills that may target idle rooms of `rooms` too (activating them).
    pub fn with_rooms(
        token: Option<Secret>,
        registry: Registry,
        rooms: crate::runtime::directory::RoomDirectory,
    ) -> Arc<Self> {
        Self::build(token, registry, Some(rooms))
    }

    fn build(
        token: Option<Secret>,
        registry: Registry,
        rooms: Option<crate::runtime::directory::RoomDirectory>,
    ) -> Arc<Self> {
        Arc::new(Self {
            token: token.filter(|t| !t.is_empty()),
            registry,
            rooms,
            next_id: AtomicU64::new(1),
            active: Mutex::new(HashMap::new()),
        })
    }

    /// The idle room `id` names, if it is one the bot manages.
    fn idle_room(&self, id: &ActorId) -> Option<crate::runtime::room::Chat> {
        let rooms = self.rooms.as_ref()?;
        if id.kind() != crate::runtime::ids::ROOM_KIND {
            return None;
        }
        let chat = crate::surface::ChatId::new(id.key()?);
        match rooms.chat(&chat) {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(room_id = %chat, %error, "drill: cannot read the room's record");
                None
            }
        }
    }

    fn authorize(&self, headers: &HeaderMap) -> Result<(), DrillError> {
        let Some(token) = &self.token else {
            return Err(DrillError::Disabled);
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .ok_or(DrillError::Unauthorized)?;
        if constant_time_eq(given.as_bytes(), token.expose().as_bytes()) {
            Ok(())
        } else {
            Err(DrillError::Unauthorized)
        }
    }

    /// Starts a drill.
    pub async fn start(self: &Arc<Self>, request: DrillRequest) -> Result<Drill, DrillError> {
        let secs = request.duration_secs.unwrap_or(DEFAULT_DRILL_SECS);
        if secs == 0 || secs > MAX_DRILL_SECS {
            return Err(DrillError::BadDuration);
        }
        let id = ActorId::parse(&request.target);
        let idle = match self.registry.get(&id) {
            Some(_) => None,
            None => match self.idle_room(&id) {
                Some(chat) => Some(chat),
                None => return Err(DrillError::UnknownActor(request.target)),
            },
        };
        let drill_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let guard = self
            .registry
            .faults()
            .inject(FaultTarget::Id(id), request.fault.to_fault());
        let drills = Arc::downgrade(self);
        let expiry = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(secs)).await;
            if let Some(drills) = drills.upgrade() {
                drills.active.lock().remove(&drill_id);
                tracing::info!(drill = drill_id, "fault drill ended (its time is up)");
            }
        })
        .abort_handle();
        let drill = Drill {
            id: drill_id,
            target: request.target,
            fault: request.fault,
            duration_secs: secs,
        };
        tracing::warn!(drill = drill_id, target = %drill.target, fault = ?drill.fault,
            duration_secs = secs, activated = idle.is_some(), "fault drill started");
        self.active.lock().insert(
            drill_id,
            Active {
                drill: drill.clone(),
                _guard: guard,
                expiry,
            },
        );
        if let (Some(chat), Some(rooms)) = (idle, &self.rooms) {
            let resume = crate::runtime::room::Resume::Nothing;
            if let Err(error) = rooms.activate(&chat, resume).await {
                tracing::warn!(drill = drill_id, %error, "drill: cannot activate the room");
            }
        }
        Ok(drill)
    }

    /// Ends a drill now.
    pub fn stop(&self, id: u64) -> Result<(), DrillError> {
        let active = self
            .active
            .lock()
            .remove(&id)
            .ok_or(DrillError::UnknownDrill(id))?;
        active.expiry.abort();
        tracing::info!(drill = id, "fault drill ended on request");
        Ok(())
    }

    /// The active drills, by id.
    pub fn list(&self) -> Vec<Drill> {
        let mut drills: Vec<Drill> = self
            .active
            .lock()
            .values()
            .map(|a| a.drill.clone())
            .collect();
        drills.sort_by_key(|d| d.id);
        drills
    }
}

/// The `/faults` routes.
pub fn routes(drills: Arc<Drills>) -> Router {
    Router::new()
        .route("/faults", get(list).post(start))
        .route("/faults/{id}", delete(stop))
        .with_state(drills)
}

async fn list(
    State(drills): State<Arc<Drills>>,
    headers: HeaderMap,
) -> Result<Json<Vec<Drill>>, DrillError> {
    drills.authorize(&headers)?;
    Ok(Json(drills.list()))
}

async fn start(
    State(drills): State<Arc<Drills>>,
    headers: HeaderMap,
    Json(request): Json<DrillRequest>,
) -> Result<(StatusCode, Json<Drill>), DrillError> {
    drills.authorize(&headers)?;
    let drill = drills.start(request).await?;
    Ok((StatusCode::CREATED, Json(drill)))
}

async fn stop(
    State(drills): State<Arc<Drills>>,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> Result<StatusCode, DrillError> {
    drills.authorize(&headers)?;
    drills.stop(id)?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse() {
        let r: DrillRequest = serde_json::from_str(
            r#"{"target":"room:!a:hs","fault":{"type":"panic","message_type":"UserMessage"}}"#,
        )
        .unwrap();
        assert_eq!(
            r.fault.to_fault(),
            Fault::Panic {
                nth: 1,
                message_type: Some("UserMessage".into())
            }
        );
        let r: DrillRequest = serde_json::from_str(
            r#"{"target":"agent:x","fault":{"type":"fail_start","times":99},"duration_secs":5}"#,
        )
        .unwrap();
        assert_eq!(r.fault.to_fault(), Fault::FailStart { times: 99 });
        assert!(serde_json::from_str::<DrillRequest>(
            r#"{"target":"x","fault":{"type":"explode"}}"#
        )
        .is_err());
    }

    #[tokio::test]
    async fn authorization_and_lifecycle() {
        let registry = Registry::new();
        let disabled = Drills::new(None, registry.clone());
        assert!(matches!(
            disabled.authorize(&HeaderMap::new()),
            Err(DrillError::Disabled)
        ));
        let drills = Drills::new(Some(Secret::new("t0k")), registry);
        assert!(matches!(
            drills.authorize(&HeaderMap::new()),
            Err(DrillError::Unauthorized)
        ));
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "Bearer nope".parse().unwrap());
        assert!(drills.authorize(&headers).is_err());
        headers.insert(header::AUTHORIZATION, "Bearer t0k".parse().unwrap());
        assert!(drills.authorize(&headers).is_ok());
        let unknown = drills
            .start(DrillRequest {
                target: "room:!nope:hs".into(),
                fault: FaultSpec::Stop,
                duration_secs: None,
            })
            .await;
        assert!(matches!(unknown, Err(DrillError::UnknownActor(_))));
        assert!(matches!(drills.stop(42), Err(DrillError::UnknownDrill(42))));
    }
}
