//! The deployment files `face-service deploy` prints, read by the tools that run them: the
//! Kubernetes manifests against the Kubernetes schemas (`kubernetes-validate`), the
//! Containerfiles through `hadolint`. `.ci/run` installs the Python tools into a venv of their
//! own (`FACE_SERVICE_TOOLS`, default `/var/tmp/face-service-tools`). The nginx site runs in
//! `scale_out.rs`, in front of real processes.

mod common;

use std::process::Command;

use common::child::{passes, printed_by};
use common::{scratch, tool};

#[test]
fn the_kubernetes_manifests_validate_against_the_kubernetes_schemas() {
    let manifests = printed_by(&[
        "deploy",
        "kubernetes",
        "--host",
        "face.example",
        "--max-batch",
        "64",
        "--trusted-proxies",
        "10.0.0.0/8",
    ]);
    for kind in [
        "Deployment",
        "Service",
        "Ingress",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
    ] {
        assert!(manifests.contains(&format!("kind: \"{kind}\"")), "{kind}");
    }
    // Flags become variables; the store's secrets are references.
    assert!(manifests.contains("name: \"FACE_SERVICE_MAX_BATCH\"\n              value: \"64\""));
    assert!(manifests.contains("secretKeyRef"));
    let dir = scratch("kubernetes");
    let file = dir.join("face-service.yaml");
    std::fs::write(&file, &manifests).unwrap();
    passes(
        Command::new(tool("kubernetes-validate"))
            .arg("--strict")
            .arg(&file),
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_containerfiles_pass_hadolint() {
    let dir = scratch("containerfile");
    for variant in ["cpu", "nvidia"] {
        let file = dir.join(format!("Containerfile.{variant}"));
        std::fs::write(
            &file,
            printed_by(&[
                "deploy",
                "containerfile",
                "--variant",
                variant,
                "--max-batch",
                "64",
            ]),
        )
        .unwrap();
        passes(Command::new(tool("hadolint")).arg(&file));
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_secret_given_to_deploy_is_refused_and_not_printed() {
    let output = Command::new(env!("CARGO_BIN_EXE_face-service"))
        .args([
            "deploy",
            "systemd",
            "--database-url",
            "postgres://u:hunter2@db/face",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(printed.contains("DATABASE_URL is a secret"), "{printed}");
    assert!(!printed.contains("hunter2"), "{printed}");
}
