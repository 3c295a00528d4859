//! `face-service deploy nginx`: a site for nginx's `http {}` block that spreads sessions over
//! several face-service processes. A session is one long WebSocket held by the process that
//! accepted it, so new sockets go to the process with the fewest open connections, and the
//! proxy waits on a quiet socket as long as the server does before closing it.

use std::fmt::Write;
use std::net::SocketAddr;

use super::{DeployError, Environment};

/// Where nginx listens, and the face-service processes behind it.
#[derive(Debug, Clone, clap::Args)]
pub struct NginxArgs {
    /// Address nginx listens on, as in its `listen` directive (`80`, `0.0.0.0:8080`).
    #[arg(long)]
    pub listen: String,
    /// A face-service process (`ADDRESS:PORT`); give one per process.
    #[arg(long = "upstream", required = true)]
    pub upstreams: Vec<SocketAddr>,
    /// The site's `server_name`.
    #[arg(long, default_value = "_")]
    pub server_name: String,
}

/// The `upstream`, `map` and `server` blocks for `args`, with the proxy's timeouts from
/// `environment`.
pub fn site(args: &NginxArgs, environment: &Environment) -> Result<String, DeployError> {
    let safe = |text: &str| {
        !text.is_empty()
            && text.chars().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']' | '*')
            })
    };
    if !safe(&args.listen) || !safe(&args.server_name) {
        return Err(DeployError::Invalid(
            "--listen and --server-name take an address or a host name".into(),
        ));
    }
    let socket_timeout = environment.proxy_socket_timeout_secs();
    let mut site = String::from(
        "# face-service behind nginx: include inside http {}. Give each face-service process\n\
         # --trusted-proxies with this host's address, so that it believes X-Forwarded-*.\n\
         upstream face_service {\n    \
             # Sessions are long-lived sockets: send a new one where the fewest are open.\n    \
             least_conn;\n",
    );
    for upstream in &args.upstreams {
        let _ = writeln!(site, "    server {upstream} max_fails=1 fail_timeout=10s;");
    }
    let _ = write!(
        site,
        "    keepalive 32;\n\
         }}\n\
         \n\
         map $http_upgrade $face_service_connection {{\n    \
             default upgrade;\n    \
             ''      '';\n\
         }}\n\
         \n\
         server {{\n    \
             listen {listen};\n    \
             server_name {server_name};\n    \
             # REST bodies are small; frames travel inside the WebSocket, which this does not limit.\n    \
             client_max_body_size 1m;\n\
         \n    \
             location /ws/ {{\n        \
                 proxy_pass http://face_service;\n        \
                 proxy_http_version 1.1;\n        \
                 proxy_set_header Upgrade $http_upgrade;\n        \
                 proxy_set_header Connection $face_service_connection;\n        \
                 proxy_set_header Host $http_host;\n        \
                 proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n        \
                 proxy_set_header X-Forwarded-Proto $scheme;\n        \
                 proxy_read_timeout {socket_timeout}s;\n        \
                 proxy_send_timeout {socket_timeout}s;\n        \
                 # Answers go out as they are made.\n        \
                 proxy_buffering off;\n    \
             }}\n\
         \n    \
             location / {{\n        \
                 proxy_pass http://face_service;\n        \
                 proxy_http_version 1.1;\n        \
                 proxy_set_header Connection '';\n        \
                 proxy_set_header Host $http_host;\n        \
                 proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n        \
                 proxy_set_header X-Forwarded-Proto $scheme;\n        \
                 # A process that is gone or draining: the request goes to the next one.\n        \
                 proxy_next_upstream error timeout http_503;\n    \
             }}\n\
         }}\n",
        listen = args.listen,
        server_name = args.server_name,
    );
    Ok(site)
}
