//! `stele serve`: the server on one port (gRPC and HTTP).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use stele_server::ServerConfig;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Data directory [default: ./stele-data].
    #[arg(long, env = "STELE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on, gRPC and HTTP together [default: 127.0.0.1:2113].
    #[arg(long, env = "STELE_LISTEN")]
    listen: Option<SocketAddr>,
    /// Address clients are told to connect to (gossip) [default: the listen address].
    #[arg(long, env = "STELE_ADVERTISE")]
    advertise: Option<String>,
    /// TOML file with further settings (segment size, limits); flags and
    /// environment variables override it.
    #[arg(long, env = "STELE_CONFIG")]
    config: Option<PathBuf>,
    /// Log level: error, warn, info, debug or trace.
    #[arg(long, env = "STELE_LOG", default_value = "info")]
    log_level: tracing_subscriber::filter::LevelFilter,
}

pub fn run(args: ServeArgs) -> Result<ExitCode, String> {
    tracing_subscriber::fmt().with_max_level(args.log_level).with_writer(std::io::stderr).init();
    let mut config = ServerConfig::default();
    if let Some(path) = &args.config {
        config.apply_file(path).map_err(|e| e.to_string())?;
    }
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(advertise) = args.advertise {
        config.advertise = Some(advertise);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("stele-io")
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(stele_server::run(config, shutdown_signal())).map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(signal) => Some(signal),
        Err(error) => {
            tracing_error(&format!("cannot watch SIGTERM: {error}"));
            None
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match terminate.as_mut() {
                Some(signal) => { signal.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}

fn tracing_error(message: &str) {
    eprintln!("error: {message}");
}
