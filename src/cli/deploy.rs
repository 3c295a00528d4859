//! `face-service deploy TARGET [FLAGS]`: prints a deployment file. TARGET's own flags say
//! where it runs; `serve`'s flags (and the global ones) become the server's environment.

use clap::{ArgMatches, Subcommand};

use crate::cli::AnyError;
use crate::deploy::containerfile::{self, ContainerfileArgs};
use crate::deploy::kubernetes::{self, KubernetesArgs};
use crate::deploy::nginx::{self, NginxArgs};
use crate::deploy::{Environment, systemd};
use crate::server::ServeConfig;

#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    #[command(subcommand)]
    pub target: Target,
}

#[derive(Debug, Subcommand)]
pub enum Target {
    /// A Deployment (one GPU a pod), Service, Ingress, PodDisruptionBudget and
    /// HorizontalPodAutoscaler, as one YAML stream.
    Kubernetes {
        #[command(flatten)]
        cluster: KubernetesArgs,
        #[command(flatten)]
        serve: Box<ServeConfig>,
    },
    /// An nginx site (upstream and server blocks, to include inside `http {}`) spreading
    /// WebSocket sessions over several processes.
    Nginx {
        #[command(flatten)]
        site: NginxArgs,
        #[command(flatten)]
        serve: Box<ServeConfig>,
    },
    /// A systemd unit for one host.
    Systemd {
        #[command(flatten)]
        serve: Box<ServeConfig>,
    },
    /// A two-stage Containerfile (Dockerfile) that builds and runs face-service.
    Containerfile {
        #[command(flatten)]
        image: ContainerfileArgs,
        #[command(flatten)]
        serve: Box<ServeConfig>,
    },
}

/// Prints the file for `args`. `command` and `matches` are the whole command line's, for the
/// flags that were given on it.
pub fn run(
    args: &DeployArgs,
    command: &clap::Command,
    matches: &ArgMatches,
) -> Result<(), AnyError> {
    let deploy = command
        .find_subcommand("deploy")
        .expect("deploy is a subcommand");
    let deploy_matches = matches
        .subcommand_matches("deploy")
        .expect("this is the deploy command");
    let (name, target_matches) = deploy_matches.subcommand().expect("clap requires a target");
    let target = deploy
        .find_subcommand(name)
        .expect("clap parsed this target");
    let environment = Environment::from_flags(&[(command, matches), (target, target_matches)])?;
    let printed = match &args.target {
        Target::Kubernetes { cluster, .. } => kubernetes::manifests(cluster, &environment)?,
        Target::Nginx { site, .. } => nginx::site(site, &environment)?,
        Target::Systemd { .. } => systemd::unit(&environment),
        Target::Containerfile { image, .. } => containerfile::containerfile(image, &environment)?,
    };
    print!("{printed}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[derive(clap::Parser)]
    struct Deploy {
        #[command(flatten)]
        args: DeployArgs,
    }

    /// Each target's own flags and `serve`'s share one namespace: a clash would panic at
    /// parse time.
    #[test]
    fn the_targets_flags_do_not_clash_with_serves() {
        Deploy::command().debug_assert();
    }
}
