//! How `serve` runs, in groups, each with its defaults and each handed only to the code that
//! uses it: the engine's batching, the session limits, the liveness rules, and who may open a
//! session. Every field is a flag and an environment variable; the doc comments are the
//! `--help` text.

use std::net::SocketAddr;
use std::time::Duration;

use crate::engine::EngineConfig;
use crate::identity::IdentityConfig;
use crate::liveness::check::{LivenessRules, SessionKind};
use crate::liveness::events::TurnRules;
use crate::server::forwarded::TrustedProxies;
use crate::server::listener::ConnectionLimits;
use crate::server::registry::RegistryConfig;
use crate::server::session::limits::SessionLimits;
use crate::store::StoreConfig;
use crate::webhooks::WebhookConfig;

#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct ServeConfig {
    /// Address to listen on (the seed's port).
    #[arg(long, env = "FACE_SERVICE_BIND", default_value = "0.0.0.0:8003")]
    pub bind: SocketAddr,
    #[command(flatten)]
    pub engine: EngineConfig,
    #[command(flatten)]
    pub limits: SessionLimits,
    #[command(flatten)]
    pub liveness: LivenessConfig,
    #[command(flatten)]
    pub access: AccessConfig,
    #[command(flatten)]
    pub identity: IdentityConfig,
    #[command(flatten)]
    pub webhooks: WebhookConfig,
    #[command(flatten)]
    pub connections: ConnectionLimits,
    #[command(flatten)]
    pub proxies: TrustedProxies,
    #[command(flatten)]
    pub registry: RegistryConfig,
    #[command(flatten)]
    pub store: StoreConfig,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            bind: ([0, 0, 0, 0], 8003).into(),
            engine: EngineConfig::default(),
            limits: SessionLimits::default(),
            liveness: LivenessConfig::default(),
            access: AccessConfig::default(),
            identity: IdentityConfig::default(),
            webhooks: WebhookConfig::default(),
            connections: ConnectionLimits::default(),
            proxies: TrustedProxies::default(),
            registry: RegistryConfig::default(),
            store: StoreConfig::default(),
        }
    }
}

/// The liveness check's settings; the rest of its rules are constants in `liveness::check`.
#[derive(Debug, Clone, PartialEq, clap::Args)]
#[command(next_help_heading = "Liveness")]
pub struct LivenessConfig {
    /// The liveness check a session runs unless its client asks for the other with
    /// `?session_type=` on the WebSocket URL: `enrollment` (blink, open the mouth, turn left,
    /// turn right, hold still, in order) or `authentication` (blinks and motion in a time limit).
    #[arg(
        long,
        env = "FACE_SERVICE_SESSION_TYPE",
        value_enum,
        default_value = "enrollment"
    )]
    pub session_type: SessionKind,
    /// Seconds an authentication session has to show its blinks and motion, from its start
    /// (then `authentication_timeout` and close 4401).
    #[arg(
        long,
        env = "FACE_SERVICE_AUTHENTICATION_TIMEOUT_SECS",
        default_value_t = 30
    )]
    pub authentication_timeout_secs: u64,
    /// Blinks an authentication session must show.
    #[arg(long, env = "FACE_SERVICE_BLINKS_REQUIRED", default_value_t = 2)]
    pub blinks_required: usize,
    /// Yaw in degrees from which a head turn counts.
    #[arg(long, env = "FACE_SERVICE_TURN_DEGREES", default_value_t = TurnRules::default().turn_degrees)]
    pub turn_degrees: f32,
    /// Yaw in degrees within which the head is back at centre, ready for the next turn.
    #[arg(long, env = "FACE_SERVICE_CENTRE_DEGREES", default_value_t = TurnRules::default().centre_degrees)]
    pub centre_degrees: f32,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        let rules = LivenessRules::default();
        Self {
            session_type: SessionKind::Enrollment,
            authentication_timeout_secs: rules.authentication_timeout.as_secs(),
            blinks_required: rules.authentication_blinks,
            turn_degrees: rules.turns.turn_degrees,
            centre_degrees: rules.turns.centre_degrees,
        }
    }
}

impl LivenessConfig {
    /// The liveness check's rules: the defaults, with what the flags set.
    pub fn rules(&self) -> LivenessRules {
        let defaults = LivenessRules::default();
        LivenessRules {
            authentication_timeout: Duration::from_secs(self.authentication_timeout_secs),
            authentication_blinks: self.blinks_required,
            turns: TurnRules {
                turn_degrees: self.turn_degrees,
                centre_degrees: self.centre_degrees,
                ..defaults.turns
            },
            ..defaults
        }
    }
}

/// Who may open a session.
#[derive(Debug, Clone, PartialEq, clap::Args)]
#[command(next_help_heading = "Access")]
pub struct AccessConfig {
    /// Any well-formed token starts a liveness session (`true`, for development, the demo page
    /// and load tests), or only tokens of sessions created over the REST API (`false`, for
    /// production; others are closed with 4404). Issued tokens run their session either way.
    #[arg(long, env = "FACE_SERVICE_OPEN_SESSIONS", default_value_t = true, action = clap::ArgAction::Set)]
    pub open_sessions: bool,
    /// Seconds a session created over REST may wait for its WebSocket (the seed's 10 minutes).
    #[arg(
        long,
        env = "FACE_SERVICE_SESSION_LIFETIME_SECS",
        default_value_t = 600
    )]
    pub session_lifetime_secs: u64,
    /// Browser origins allowed to open a WebSocket, comma-separated (e.g.
    /// `https://app.example.com`); empty allows any. Clients that send no `Origin` header
    /// (non-browser clients) are always allowed: the check stops other sites' pages, not tools.
    #[arg(long, env = "FACE_SERVICE_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
}

impl Default for AccessConfig {
    fn default() -> Self {
        Self {
            open_sessions: true,
            session_lifetime_secs: 600,
            allowed_origins: Vec::new(),
        }
    }
}

impl AccessConfig {
    pub fn origin_allowed(&self, origin: Option<&str>) -> bool {
        let mut allowed = self
            .allowed_origins
            .iter()
            .filter(|o| !o.is_empty())
            .peekable();
        match origin {
            None => true,
            Some(origin) => allowed.peek().is_none() || allowed.any(|a| a == origin),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        serve: ServeConfig,
    }

    #[test]
    fn the_flags_defaults_are_the_groups_defaults() {
        let parsed = Command::try_parse_from(["serve"]).unwrap().serve;
        assert_eq!(parsed, ServeConfig::default());
    }

    #[test]
    fn origins_are_checked_only_for_browsers_and_only_when_listed() {
        let open = AccessConfig::default();
        assert!(open.origin_allowed(Some("https://any.example")));
        let listed = AccessConfig {
            allowed_origins: vec!["https://app.example".into()],
            ..AccessConfig::default()
        };
        assert!(listed.origin_allowed(Some("https://app.example")));
        assert!(!listed.origin_allowed(Some("https://evil.example")));
        assert!(listed.origin_allowed(None));
    }
}
