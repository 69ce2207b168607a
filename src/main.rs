//! The `sockit` binary: set up logging, parse the command line, hand off to
//! the library, and turn the outcome into an exit status.

use std::io::Write;
use std::process::ExitCode;

use sockit::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = sockit::cli::parse_args();
    sockit::logging::init(&cli.log);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // A closed stdout (`sockit ... | head`) is the reader's choice,
            // not a failure worth a message.
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            let _ = std::io::stdout().flush();
            eprintln!("sockit: {}", one_line(&err));
            ExitCode::from(sockit::error::exit_status(&err) as u8)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let config = sockit::config::ServerConfig::from_args(&args)?;
            sockit::server::block_on_serve(config)
        }
        Command::Connect(args) => client_runtime()?.block_on(sockit::client::connect::run(&args)),
        Command::Send(args) => client_runtime()?.block_on(sockit::client::send::run(&args)),
        Command::Ping(args) => client_runtime()?.block_on(sockit::client::ping::run(&args)),
        Command::Bench(args) => sockit::bench::run(&args),
        Command::Chat(args) => client_runtime()?.block_on(sockit::client::chat::run(&args)),
        Command::Peer(args) => sockit::peer::run(&args),
        Command::Completions(args) => sockit::completions::print_completions(args.shell),
        Command::Man => sockit::completions::print_man(),
        Command::HashPassword => sockit::http::auth::print_hash_of_stdin(),
    }
}

/// Clients talk to one socket: a single-threaded runtime is all they need.
fn client_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// The error and its causes on one line, with any line breaks in them
/// flattened so scripts can rely on a single line.
fn one_line(err: &anyhow::Error) -> String {
    format!("{err:#}").replace(['\n', '\r'], " ")
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
