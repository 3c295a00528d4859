//! `face-service deploy kubernetes`: one GPU per pod, sessions spread by the Service and the
//! Ingress, the store in a shared PostgreSQL whose URL and master key come from a Secret. A pod
//! is ready once its models are warm (`/api/ready/`), alive while it answers `/api/health/`,
//! and stops as the systemd unit does: out of the Service first, then SIGTERM, which drains.

use serde_json::{Value, json};

use super::{DATA_DIR, Environment, stop_timeout};

/// The cluster's side of a deployment. The server's own settings are `serve`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct KubernetesArgs {
    /// The container image (`face-service deploy containerfile` builds one).
    #[arg(long, default_value = concat!("face-service:", env!("CARGO_PKG_VERSION")))]
    pub image: String,
    /// Pods to run, and the autoscaler's minimum.
    #[arg(long, default_value_t = 2)]
    pub replicas: u32,
    /// The autoscaler's maximum.
    #[arg(long, default_value_t = 8)]
    pub max_replicas: u32,
    /// Frames waiting for the device per pod (`face_service_queue_depth`) above which the
    /// autoscaler adds pods.
    #[arg(long, default_value_t = 32)]
    pub queue_depth_target: u32,
    /// The host name the Ingress serves; none: any host.
    #[arg(long)]
    pub host: Option<String>,
    /// The Secret that holds `database-url` (a PostgreSQL URL) and `master-key` (64 hex
    /// digits).
    #[arg(long, default_value = "face-service-store")]
    pub store_secret: String,
}

const NAME: &str = "face-service";

/// Seconds a stopping pod keeps serving so that the Service and the Ingress stop sending it
/// new sessions before SIGTERM makes it refuse them.
const LEAVE_ENDPOINTS_SECS: u64 = 5;

/// The manifests, as one YAML stream.
pub fn manifests(
    args: &KubernetesArgs,
    environment: &Environment,
) -> Result<String, super::DeployError> {
    let port = environment.port()?;
    let mut environment = environment.clone();
    // The pod's data directory is an `emptyDir` mounted there; the store is PostgreSQL.
    environment.set("FACE_SERVICE_DATA_DIR", DATA_DIR);
    let mut env: Vec<Value> = environment
        .iter()
        .map(|(name, value)| json!({ "name": name, "value": value }))
        .collect();
    for (name, key) in [
        ("DATABASE_URL", "database-url"),
        ("FACE_SERVICE_MASTER_KEY", "master-key"),
    ] {
        env.push(json!({
            "name": name,
            "valueFrom": { "secretKeyRef": { "name": args.store_secret, "key": key } },
        }));
    }
    let labels = json!({ "app.kubernetes.io/name": NAME });
    let metadata = json!({ "name": NAME, "labels": labels });
    let probe = |path: &str, period: u64, failures: u64| {
        json!({
            "httpGet": { "path": path, "port": "http" },
            "periodSeconds": period,
            "failureThreshold": failures,
        })
    };
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": args.replicas,
            "selector": { "matchLabels": labels },
            // Each pod holds a whole GPU: there is none spare to surge onto.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": { "maxUnavailable": 1, "maxSurge": 0 },
            },
            "template": {
                "metadata": { "labels": labels },
                "spec": {
                    "terminationGracePeriodSeconds": LEAVE_ENDPOINTS_SECS + stop_timeout().as_secs(),
                    "securityContext": { "runAsNonRoot": true, "runAsUser": 10001 },
                    "containers": [{
                        "name": NAME,
                        "image": args.image,
                        "args": ["serve"],
                        "ports": [{ "name": "http", "containerPort": port }],
                        "env": env,
                        "resources": { "limits": { "nvidia.com/gpu": 1 } },
                        // Models load and kernels compile before the first answer.
                        "startupProbe": probe("/api/health/", 5, 60),
                        "readinessProbe": probe("/api/ready/", 5, 1),
                        "livenessProbe": probe("/api/health/", 10, 3),
                        "lifecycle": { "preStop": { "sleep": { "seconds": LEAVE_ENDPOINTS_SECS } } },
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                        },
                        "volumeMounts": [{ "name": "data", "mountPath": DATA_DIR }],
                    }],
                    "volumes": [{ "name": "data", "emptyDir": {} }],
                },
            },
        },
    });
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "selector": labels,
            "ports": [{ "name": "http", "port": 80, "targetPort": "http" }],
        },
    });
    // The Ingress controller must wait on a quiet socket as long as the server does.
    let socket_timeout = environment.proxy_socket_timeout_secs().to_string();
    let mut rule = json!({
        "http": { "paths": [{
            "path": "/",
            "pathType": "Prefix",
            "backend": { "service": { "name": NAME, "port": { "name": "http" } } },
        }] },
    });
    if let Some(host) = &args.host {
        rule["host"] = json!(host);
    }
    let ingress = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": NAME,
            "labels": labels,
            "annotations": {
                "nginx.ingress.kubernetes.io/proxy-read-timeout": socket_timeout,
                "nginx.ingress.kubernetes.io/proxy-send-timeout": socket_timeout,
            },
        },
        "spec": { "ingressClassName": "nginx", "rules": [rule] },
    });
    let budget = json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata,
        "spec": { "maxUnavailable": 1, "selector": { "matchLabels": labels } },
    });
    let autoscaler = json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata,
        "spec": {
            "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": NAME },
            "minReplicas": args.replicas,
            "maxReplicas": args.max_replicas.max(args.replicas),
            "metrics": [{
                "type": "Pods",
                "pods": {
                    "metric": { "name": "face_service_queue_depth" },
                    "target": { "type": "AverageValue", "averageValue": args.queue_depth_target.to_string() },
                },
            }],
        },
    });
    let mut stream = format!(
        "# face-service on Kubernetes, printed by `face-service deploy kubernetes`.\n\
         # The store's Secret, made once:\n\
         #   kubectl create secret generic {secret} \\\n\
         #     --from-literal=database-url=postgres://USER:PASSWORD@HOST/DATABASE \\\n\
         #     --from-literal=master-key=$(openssl rand -hex 32)\n\
         # The autoscaler reads face_service_queue_depth through the custom metrics API (the\n\
         # Prometheus adapter, scraping /metrics). Give the server --trusted-proxies with the\n\
         # Ingress controller's pod network, so that it believes X-Forwarded-*.\n",
        secret = args.store_secret
    );
    for document in [deployment, service, ingress, budget, autoscaler] {
        stream.push_str("---\n");
        write_yaml(&document, 0, &mut stream);
    }
    Ok(stream)
}

/// `value` in YAML's block style. Every string is written as a JSON string, which is valid
/// YAML and never read back as a number or a boolean (an environment variable's "8003"
/// must stay a string).
fn write_yaml(value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                let key = plain_key(key);
                if is_inline(item) {
                    out.push_str(&format!("{pad}{key}: {}\n", inline(item)));
                } else {
                    out.push_str(&format!("{pad}{key}:\n"));
                    write_yaml(item, indent + 2, out);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                if is_inline(item) {
                    out.push_str(&format!("{pad}- {}\n", inline(item)));
                } else {
                    // The item's block, its first line's indent turned into the dash.
                    let mut block = String::new();
                    write_yaml(item, indent + 2, &mut block);
                    out.push_str(&format!("{pad}- {}", &block[indent + 2..]));
                }
            }
        }
        scalar => out.push_str(&format!("{pad}{}\n", inline(scalar))),
    }
}

fn is_inline(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => true,
    }
}

fn inline(value: &Value) -> String {
    match value {
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        scalar => scalar.to_string(),
    }
}

/// A key as written: bare when YAML reads it back as the same string, quoted otherwise.
fn plain_key(key: &str) -> String {
    let bare = key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '/' | '-' | '_'))
        && key.starts_with(|c: char| c.is_ascii_alphabetic());
    if bare {
        key.to_owned()
    } else {
        Value::from(key).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_keeps_strings_strings_and_nests_lists() {
        let mut out = String::new();
        write_yaml(
            &json!({ "env": [{ "name": "PORT", "value": "8003" }], "empty": {}, "n": 1 }),
            0,
            &mut out,
        );
        assert_eq!(
            out,
            "empty: {}\nenv:\n  - name: \"PORT\"\n    value: \"8003\"\nn: 1\n"
        );
    }
}
