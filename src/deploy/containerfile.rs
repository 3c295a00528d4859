//! `face-service deploy containerfile`: a two-stage image. It builds on Debian with the Rust
//! the project pins and runs on Debian slim with the Vulkan loader wgpu opens. The CPU
//! variant adds Mesa's drivers, for the software adapter and the CPU fallback; the NVIDIA
//! variant has the NVIDIA container toolkit mount the driver's Vulkan files at run time.

use std::fmt::Write;

use super::{DATA_DIR, DeployError, Environment};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Variant {
    /// Any host: Mesa's Vulkan drivers in the image.
    Cpu,
    /// NVIDIA hosts: the driver comes from the host (`--gpus all`, or `nvidia.com/gpu`).
    Nvidia,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ContainerfileArgs {
    /// Which hosts the image is for.
    #[arg(long, value_enum, default_value_t = Variant::Cpu)]
    pub variant: Variant,
}

/// The Rust the build stage uses: the project's minimum, from Cargo.toml.
const RUST: &str = env!("CARGO_PKG_RUST_VERSION");

pub fn containerfile(
    args: &ContainerfileArgs,
    environment: &Environment,
) -> Result<String, DeployError> {
    let port = environment.port()?;
    let mut environment = environment.clone();
    environment.set_unless_given("FACE_SERVICE_DATA_DIR", DATA_DIR);
    let data_dir = environment
        .get("FACE_SERVICE_DATA_DIR")
        .unwrap_or(DATA_DIR)
        .to_owned();
    // The directory is made in a shell command: a plain absolute path needs no quoting there.
    let plain = data_dir.starts_with('/')
        && data_dir
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '-' | '_'));
    if !plain {
        return Err(DeployError::Invalid(format!(
            "--data-dir {data_dir:?}: in an image, an absolute path of letters, digits and / . - _"
        )));
    }
    let drivers = match args.variant {
        Variant::Cpu => " mesa-vulkan-drivers",
        Variant::Nvidia => "",
    };
    let mut file = format!(
        "# face-service, printed by `face-service deploy containerfile --variant {variant}`.\n\
         # Build from the repository root: podman build -f Containerfile -t face-service .\n\
         FROM docker.io/library/rust:{RUST}-bookworm AS build\n\
         WORKDIR /src\n\
         COPY . .\n\
         RUN cargo build --release --locked \\\n    \
             && install -D target/release/face-service /out/face-service\n\
         \n\
         FROM docker.io/library/debian:bookworm-slim\n\
         # Debian's security updates are the pin: the versions move with them.\n\
         # hadolint ignore=DL3008\n\
         RUN apt-get update \\\n    \
             && apt-get install -y --no-install-recommends libvulkan1{drivers} ca-certificates \\\n    \
             && rm -rf /var/lib/apt/lists/*\n\
         COPY --from=build /out/face-service /usr/local/bin/face-service\n\
         RUN mkdir -p {data_dir} && chown 10001:10001 {data_dir}\n\
         USER 10001:10001\n",
        variant = match args.variant {
            Variant::Cpu => "cpu",
            Variant::Nvidia => "nvidia",
        },
    );
    if args.variant == Variant::Nvidia {
        // "graphics" is what mounts the driver's Vulkan ICD; "compute" alone does not.
        file.push_str(
            "ENV NVIDIA_VISIBLE_DEVICES=all \\\n    \
             NVIDIA_DRIVER_CAPABILITIES=compute,graphics,utility\n",
        );
    }
    let variables: Vec<String> = environment
        .iter()
        .map(|(name, value)| format!("{name}=\"{}\"", quoted(value)))
        .collect();
    let _ = write!(
        file,
        "ENV {}\n\
         EXPOSE {port}\n\
         STOPSIGNAL SIGTERM\n\
         ENTRYPOINT [\"/usr/local/bin/face-service\"]\n\
         CMD [\"serve\"]\n",
        variables.join(" \\\n    ")
    );
    Ok(file)
}

/// A value inside `ENV NAME="..."`, where the builder expands `$` and unescapes `\\`.
fn quoted(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('$', "\\$")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn printed(data_dir: Option<&str>) -> Result<String, DeployError> {
        let mut environment = Environment::default();
        if let Some(dir) = data_dir {
            environment.set("FACE_SERVICE_DATA_DIR", dir);
        }
        let args = ContainerfileArgs {
            variant: Variant::Cpu,
        };
        containerfile(&args, &environment)
    }

    #[test]
    fn the_image_makes_the_data_directory_the_server_uses() {
        let default = printed(None).unwrap();
        assert!(default.contains(&format!("RUN mkdir -p {DATA_DIR} && chown")));
        assert!(default.contains(&format!("FACE_SERVICE_DATA_DIR=\"{DATA_DIR}\"")));
        let given = printed(Some("/srv/face")).unwrap();
        assert!(given.contains("RUN mkdir -p /srv/face && chown 10001:10001 /srv/face"));
        assert!(given.contains("FACE_SERVICE_DATA_DIR=\"/srv/face\""));
        assert!(printed(Some("relative")).is_err());
        assert!(printed(Some("/srv/$(reboot)")).is_err());
    }
}
