//! `face-service deploy systemd`: one unit per host, replacing the seed's gunicorn unit.

use std::fmt::Write;

use super::{DATA_DIR, Environment, stop_timeout};

/// The unit for `environment`, running the binary installed as `/usr/local/bin/face-service`.
pub fn unit(environment: &Environment) -> String {
    let mut environment = environment.clone();
    environment.set_unless_given("FACE_SERVICE_DATA_DIR", DATA_DIR);
    let mut unit = String::from(
        "[Unit]\n\
         Description=face-service: face landmarks and liveness over WebSockets\n\
         After=network-online.target\n\
         Wants=network-online.target\n\
         \n\
         [Service]\n\
         ExecStart=/usr/local/bin/face-service serve\n",
    );
    for (name, value) in environment.iter() {
        let _ = writeln!(unit, "Environment=\"{name}={}\"", quoted(value));
    }
    let _ = write!(
        unit,
        "# Secrets (DATABASE_URL and FACE_SERVICE_MASTER_KEY, for a shared PostgreSQL) stay out\n\
         # of the unit, in a file only root reads.\n\
         EnvironmentFile=-/etc/face-service/secrets.env\n\
         StateDirectory=face-service\n\
         # SIGTERM drains: sessions are told 1001, frames in flight finish.\n\
         KillSignal=SIGTERM\n\
         TimeoutStopSec={}\n\
         # Each session is a socket.\n\
         LimitNOFILE=65536\n\
         Restart=on-failure\n\
         DynamicUser=yes\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        stop_timeout().as_secs()
    );
    unit
}

/// A value inside `Environment="..."`: systemd unquotes `\"` and `\\`, and expands `%`
/// specifiers unless doubled.
fn quoted(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('%', "%%")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_shows_the_unit_deploy_prints() {
        let readme = include_str!("../../README.md");
        let printed = unit(&Environment::from_flags(&[]).unwrap());
        assert!(
            readme.contains(&format!("```ini\n{printed}```")),
            "README.md's unit differs from `face-service deploy systemd`:\n{printed}"
        );
    }

    #[test]
    fn values_are_quoted_for_systemd() {
        let mut environment = Environment::default();
        environment.set("FACE_SERVICE_ALLOWED_ORIGINS", r#"https://a.example,"b"%\"#);
        let printed = unit(&environment);
        assert!(
            printed.contains(
                r#"Environment="FACE_SERVICE_ALLOWED_ORIGINS=https://a.example,\"b\"%%\\""#
            ),
            "{printed}"
        );
    }
}
