//! dfdaemon: Darter's per-node peer. See `dfdaemon --help`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use darter_common::config::load_or_exit;
use dfdaemon::config::{Config, ENV_PREFIX};

/// Darter's per-node peer: downloads, stores, verifies and serves content.
#[derive(Debug, Parser)]
#[command(name = "dfdaemon", version, about)]
struct Cli {
    /// Config file (YAML). Every field has a default; `DFDAEMON__SECTION__FIELD` env vars override it.
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// Data directory (storage.data_dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Download API unix socket (download.socket).
    #[arg(long)]
    download_socket: Option<PathBuf>,
    /// Upload gRPC address (upload.grpc_addr).
    #[arg(long)]
    upload_addr: Option<SocketAddr>,
    /// Piece data address (upload.piece_addr).
    #[arg(long)]
    piece_addr: Option<SocketAddr>,
    /// Metrics and health address (metrics.addr).
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,
    /// Registry mirror and HTTP proxy address (proxy.addr; default 127.0.0.1:4001).
    #[arg(long)]
    proxy_addr: Option<SocketAddr>,
    /// Do not serve the registry mirror and proxy (proxy.enabled: false).
    #[arg(long)]
    no_proxy: bool,
    /// Scheduler address IP:PORT, repeatable (scheduler.addrs).
    #[arg(long = "scheduler")]
    schedulers: Vec<String>,
    /// Manager address HOST:PORT, repeatable (manager.addrs): the schedulers come from it.
    #[arg(long = "manager", value_name = "HOST:PORT")]
    managers: Vec<String>,
    /// Run as a seed peer (host.seed).
    #[arg(long)]
    seed: bool,
    /// Log level or filter (log.level).
    #[arg(long)]
    log_level: Option<String>,
    /// Log format, text or json (log.format).
    #[arg(long)]
    log_format: Option<String>,
    /// Once every listener is bound, write their addresses here as JSON
    /// (`{"pid": N, "addresses": {"grpc": "127.0.0.1:40123", ...}}`): bind port 0
    /// and read what the kernel picked.
    #[arg(long, value_name = "PATH")]
    ready_file: Option<PathBuf>,
    /// Print the effective config as YAML and exit.
    #[arg(long)]
    print_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Point containerd at this node's mirror: write `<certs-dir>/<registry>/hosts.toml`
    /// for each registry (keeping a backup; unchanged files are left alone). containerd
    /// reads them on the next pull when its `config_path` is the certs dir.
    ContainerdConfig {
        /// Registry host[:port], repeatable (docker.io, ghcr.io, 10.0.0.1:5000).
        #[arg(long = "registry", value_name = "HOST")]
        registries: Vec<String>,
        /// Also write `_default/hosts.toml`: every other registry goes through the mirror too.
        #[arg(long)]
        all: bool,
        /// containerd's registry hosts directory (its `config_path`).
        #[arg(long, default_value = "/etc/containerd/certs.d")]
        certs_dir: PathBuf,
        /// The mirror URL (default: http:// + proxy.addr, 0.0.0.0 as 127.0.0.1).
        #[arg(long)]
        mirror: Option<String>,
        /// Registries served over plain HTTP (their server is http://); list them in
        /// proxy.insecure_registries too.
        #[arg(long = "insecure", value_name = "HOST")]
        insecure: Vec<String>,
    },
}

/// `dfdaemon containerd-config`: returns the exit code.
fn containerd_config(config: &Config, command: &Command) -> i32 {
    let Command::ContainerdConfig { registries, all, certs_dir, mirror, insecure } = command;
    if registries.is_empty() && !all {
        eprintln!("dfdaemon containerd-config: name at least one --registry, or --all");
        return 2;
    }
    for r in registries.iter().chain(insecure) {
        if let Err(e) = dfdaemon::containerd::check_registry(r) {
            eprintln!("dfdaemon containerd-config: --registry: {e}");
            return 2;
        }
    }
    let mirror = mirror.clone().unwrap_or_else(|| {
        let mut addr = config.proxy.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        format!("http://{addr}")
    });
    if !(mirror.starts_with("http://") || mirror.starts_with("https://")) {
        eprintln!("dfdaemon containerd-config: --mirror: expected http://host:port");
        return 2;
    }
    let mut files: Vec<(String, String)> = registries
        .iter()
        .map(|r| (r.clone(), dfdaemon::containerd::render(Some((r, insecure.contains(r))), &mirror)))
        .collect();
    if *all {
        files.push(("_default".into(), dfdaemon::containerd::render(None, &mirror)));
    }
    for (dir, content) in files {
        match dfdaemon::containerd::write(certs_dir, &dir, &content) {
            Ok(dfdaemon::containerd::Written::Unchanged(p)) => println!("unchanged {}", p.display()),
            Ok(dfdaemon::containerd::Written::Written { path, backup }) => match backup {
                Some(b) => println!("wrote {} (previous file kept as {})", path.display(), b.display()),
                None => println!("wrote {}", path.display()),
            },
            Err(e) => {
                eprintln!("dfdaemon containerd-config: {}: {e}", certs_dir.join(&dir).display());
                return 1;
            }
        }
    }
    0
}

impl Cli {
    fn overrides(&self) -> Vec<(&'static str, String)> {
        let mut o = Vec::new();
        let mut add = |k, v: Option<String>| {
            if let Some(v) = v {
                o.push((k, v));
            }
        };
        add("storage.data_dir", self.data_dir.as_ref().map(|p| p.display().to_string()));
        add("download.socket", self.download_socket.as_ref().map(|p| p.display().to_string()));
        add("upload.grpc_addr", self.upload_addr.map(|a| a.to_string()));
        add("upload.piece_addr", self.piece_addr.map(|a| a.to_string()));
        add("metrics.addr", self.metrics_addr.map(|a| a.to_string()));
        add("proxy.addr", self.proxy_addr.map(|a| a.to_string()));
        add("proxy.enabled", self.no_proxy.then(|| "false".to_string()));
        add("log.level", self.log_level.clone());
        add("scheduler.addrs", (!self.schedulers.is_empty()).then(|| format!("[{}]", self.schedulers.join(", "))));
        // Quoted, so `[::1]:65003` stays one string in the YAML list.
        let quoted: Vec<String> = self.managers.iter().map(|m| format!("{m:?}")).collect();
        add("manager.addrs", (!quoted.is_empty()).then(|| format!("[{}]", quoted.join(", "))));
        add("host.seed", self.seed.then(|| "true".to_string()));
        add("log.format", self.log_format.clone());
        o
    }
}

fn main() {
    let cli = Cli::parse();
    let config: Config = load_or_exit("dfdaemon", cli.config.as_deref(), ENV_PREFIX, &cli.overrides());
    if let Some(command) = &cli.command {
        std::process::exit(containerd_config(&config, command));
    }
    if cli.print_config {
        match serde_yaml_ng::to_string(&config) {
            Ok(y) => print!("{y}"),
            Err(e) => eprintln!("dfdaemon: cannot print config: {e}"),
        }
        return;
    }
    let (log, tracing) = (config.log.clone(), config.tracing.clone());
    let bind_config = config.clone();
    let code = darter_common::service::run(
        "dfdaemon",
        &log,
        &tracing,
        cli.ready_file.as_deref(),
        || async move { dfdaemon::Listeners::bind(&bind_config).await },
        |listeners, shutdown| dfdaemon::run(config, listeners, shutdown),
    );
    std::process::exit(code);
}
