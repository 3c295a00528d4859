//! The `face-service` command: its arguments, and which command runs. The commands themselves
//! live in `face_service::cli`.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use face_service::cli::{self, LogArgs, ModelArgs};
use face_service::server::ServeConfig;

/// Real-time face landmarks and liveness: MediaPipe FaceMesh as burn models on wgpu or the CPU.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    models: ModelArgs,
    #[command(flatten)]
    logging: LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the seed's WebSocket protocol (the drop-in replacement for its gunicorn deployment).
    Serve(Box<ServeConfig>),
    /// Manage tenants: create, list, disable, enable, rotate credentials.
    Clients(cli::clients::ClientsArgs),
    /// Print a deployment file (Kubernetes, nginx, systemd, Containerfile) whose environment
    /// holds the serve flags given here.
    Deploy(cli::deploy::DeployArgs),
    /// List the models, their parameter counts, and the device in use.
    Models,
    /// Load a running server with N sessions of real frames, and report throughput and latency.
    Bench(cli::bench::BenchArgs),
    /// Find face meshes in images and print one JSON line per image, in image pixels.
    Analyze(cli::analyze::AnalyzeArgs),
    /// Run one raw model on an image resized to its input size, and print the outputs as JSON.
    Infer(cli::infer::InferArgs),
    /// Print the face template of every face in images, one JSON line per face.
    Embed(cli::recognize::EmbedArgs),
    /// Compare the faces of images, every pair, and say which are the same person (JSON).
    Compare(cli::recognize::CompareArgs),
}

fn main() -> ExitCode {
    let command = Args::command();
    // `deploy` reads which flags were given on the command line, so the matches are kept.
    let matches = command.clone().get_matches();
    let args = Args::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    args.logging.init();
    let result = match args.command {
        Command::Serve(config) => cli::serve::run(*config, &args.models),
        Command::Clients(clients) => cli::clients::run(clients),
        Command::Deploy(deploy) => cli::deploy::run(&deploy, &command, &matches),
        Command::Models => cli::models::run(&args.models),
        Command::Bench(bench) => cli::bench::run(bench),
        Command::Analyze(analyze) => cli::analyze::run(analyze, &args.models),
        Command::Infer(infer) => cli::infer::run(infer, &args.models),
        Command::Embed(embed) => cli::recognize::embed(embed, &args.models),
        Command::Compare(compare) => cli::recognize::compare(compare, &args.models),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
