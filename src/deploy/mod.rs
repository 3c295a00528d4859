//! `face-service deploy`: the files that run face-service (a Kubernetes deployment, an nginx
//! site, a systemd unit, a Containerfile), printed from the same flag definitions `serve`
//! parses. The flags an operator gives `deploy` become the environment variables of the
//! printed files, by the names `serve --help` documents, so the files cannot drift from the
//! server they run. Secrets are never printed: the store's URL and master key come from a
//! Secret or an environment file the operator keeps apart.

pub mod containerfile;
pub mod kubernetes;
pub mod nginx;
pub mod systemd;

use std::time::Duration;

use clap::ArgMatches;
use clap::parser::ValueSource;

/// The variables that hold secrets: a deployment file refers to them, never holds them.
pub const SECRET_VARIABLES: [&str; 2] = ["DATABASE_URL", "FACE_SERVICE_MASTER_KEY"];

/// The production settings every printed file starts from; flags override them.
const PRODUCTION: [(&str, &str); 2] = [
    // Only sessions created over the REST API open a socket.
    ("FACE_SERVICE_OPEN_SESSIONS", "false"),
    ("FACE_SERVICE_LOG_JSON", "true"),
];

/// Where the printed files keep the data directory: systemd's `StateDirectory`, the image's
/// directory, the pod's volume.
pub const DATA_DIR: &str = "/var/lib/face-service";

/// The port `serve` listens on unless `--bind` says otherwise (the seed's).
pub const DEFAULT_PORT: u16 = 8003;

/// Environment variables in the order they were set, each once.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Environment(Vec<(String, String)>);

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(
        "{0} is a secret and is never printed into a deployment file: keep it in the Secret or \
         environment file the printed file refers to"
    )]
    Secret(String),
    #[error("{0}")]
    Invalid(String),
}

impl Environment {
    /// The production settings, then the flags given on the command line at each level of
    /// the command (the global flags' level, the target's), by their variables' names. Flags
    /// that took their value from the environment or a default are left out: the printed
    /// file is what the operator asked for, not what this shell happens to hold.
    pub fn from_flags(levels: &[(&clap::Command, &ArgMatches)]) -> Result<Self, DeployError> {
        let mut environment = Environment::default();
        for (name, value) in PRODUCTION {
            environment.set(name, value);
        }
        for (command, matches) in levels {
            for arg in command.get_arguments() {
                let Some(variable) = arg.get_env() else {
                    continue;
                };
                let id = arg.get_id().as_str();
                let Ok(Some(raw)) = matches.try_get_raw(id) else {
                    continue;
                };
                if matches.value_source(id) != Some(ValueSource::CommandLine) {
                    continue;
                }
                let variable = variable.to_string_lossy();
                if SECRET_VARIABLES.contains(&variable.as_ref()) {
                    return Err(DeployError::Secret(variable.into_owned()));
                }
                let values: Vec<String> = raw.map(|v| v.to_string_lossy().into_owned()).collect();
                environment.set(&variable, &values.join(","));
            }
        }
        Ok(environment)
    }

    pub fn set(&mut self, name: &str, value: &str) {
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some((_, old)) => *old = value.to_owned(),
            None => self.0.push((name.to_owned(), value.to_owned())),
        }
    }

    /// Sets `name` unless a flag did.
    pub fn set_unless_given(&mut self, name: &str, value: &str) {
        if self.get(name).is_none() {
            self.set(name, value);
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The port the server listens on, from `FACE_SERVICE_BIND`.
    pub fn port(&self) -> Result<u16, DeployError> {
        match self.get("FACE_SERVICE_BIND") {
            None => Ok(DEFAULT_PORT),
            Some(bind) => bind
                .parse::<std::net::SocketAddr>()
                .map(|address| address.port())
                .map_err(|_| DeployError::Invalid(format!("--bind {bind:?} is not ADDRESS:PORT"))),
        }
    }

    /// Seconds without a message before the server closes a session: a proxy in front must
    /// wait at least this long before it gives up on a quiet socket.
    pub fn session_timeout_secs(&self) -> u64 {
        self.get("FACE_SERVICE_SESSION_TIMEOUT_SECS")
            .and_then(|secs| secs.parse().ok())
            .unwrap_or(
                crate::server::session::limits::SessionLimits::default().session_timeout_secs,
            )
    }

    /// Seconds a proxy in front waits on a quiet socket: past the session timeout, so that
    /// closing a quiet session is the server's (4401), not the proxy's.
    pub fn proxy_socket_timeout_secs(&self) -> u64 {
        self.session_timeout_secs() + 30
    }
}

/// The longest a server takes to stop after SIGTERM: a process manager must wait longer before
/// it kills it, or sessions lose the frames they were owed.
pub fn stop_timeout() -> Duration {
    crate::server::LONGEST_DRAIN + Duration::from_secs(8)
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, FromArgMatches};

    use super::*;
    use crate::server::ServeConfig;

    #[derive(clap::Parser)]
    struct Serve {
        #[command(flatten)]
        config: ServeConfig,
    }

    fn environment(args: &[&str]) -> Result<Environment, DeployError> {
        let command = Serve::command();
        let matches = command
            .clone()
            .try_get_matches_from(std::iter::once("serve").chain(args.iter().copied()))
            .unwrap();
        Serve::from_arg_matches(&matches).unwrap();
        Environment::from_flags(&[(&command, &matches)])
    }

    #[test]
    fn flags_given_become_variables_and_nothing_else_does() {
        let env = environment(&["--max-batch", "64", "--allowed-origins", "a,b"]).unwrap();
        assert_eq!(
            env.iter().collect::<Vec<_>>(),
            [
                ("FACE_SERVICE_OPEN_SESSIONS", "false"),
                ("FACE_SERVICE_LOG_JSON", "true"),
                ("FACE_SERVICE_MAX_BATCH", "64"),
                ("FACE_SERVICE_ALLOWED_ORIGINS", "a,b"),
            ]
        );
        // A flag overrides a production setting.
        let open = environment(&["--open-sessions", "true"]).unwrap();
        assert_eq!(open.get("FACE_SERVICE_OPEN_SESSIONS"), Some("true"));
    }

    #[test]
    fn secrets_are_refused() {
        let refused = environment(&["--database-url", "postgres://u:p@db/face"]).unwrap_err();
        assert!(matches!(refused, DeployError::Secret(ref name) if name == "DATABASE_URL"));
        assert!(!refused.to_string().contains("u:p"));
        assert!(environment(&["--master-key", &"ab".repeat(32)]).is_err());
    }

    #[test]
    fn the_port_and_the_session_timeout_come_from_the_flags() {
        let env = environment(&["--bind", "0.0.0.0:9000", "--session-timeout-secs", "60"]).unwrap();
        assert_eq!(
            (env.port().unwrap(), env.session_timeout_secs()),
            (9000, 60)
        );
        let default = environment(&[]).unwrap();
        assert_eq!(
            (default.port().unwrap(), default.session_timeout_secs()),
            (8003, 300)
        );
    }
}
