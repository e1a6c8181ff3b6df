//! dfdaemon: Darter's per-node peer. See `dfdaemon --help`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use darter_common::cli::{ServiceArgs, list, value};
use dfdaemon::config::{Config, ENV_PREFIX};

/// Darter's per-node peer: downloads, stores, verifies and serves content.
#[derive(Debug, Parser)]
#[command(
    name = "dfdaemon",
    version,
    about,
    after_help = "Environment: DFDAEMON__SECTION__FIELD (e.g. DFDAEMON__BACK_TO_SOURCE__CONCURRENCY=8) override the config file; flags override both."
)]
struct Cli {
    #[command(flatten)]
    service: ServiceArgs,
    /// Data directory (storage.data_dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Download API unix socket (download.socket).
    #[arg(long)]
    download_socket: Option<PathBuf>,
    /// Upload gRPC address (upload.grpc_addr); the alias is the old spelling.
    #[arg(long, visible_alias = "upload-addr", value_name = "ADDR")]
    upload_grpc_addr: Option<SocketAddr>,
    /// Piece data address (upload.piece_addr).
    #[arg(long)]
    piece_addr: Option<SocketAddr>,
    /// Metrics and health address (metrics_addr).
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
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Point containerd at this node's mirror: write `<certs-dir>/<registry>/hosts.toml`
    /// for each registry (keeping a backup; unchanged files are left alone). containerd
    /// reads them on the next pull when its `config_path` is the certs dir. With
    /// `--crio FILE`: a registries.conf drop-in for CRI-O, Podman and Skopeo instead.
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
        /// The CA of a registry with a private CA, as containerd's `ca` for it
        /// (HOST=/absolute/path.crt); repeatable. Give the mirror the same CA
        /// (back_to_source.ca_certs) so it can fetch from it too.
        #[arg(long = "ca", value_name = "HOST=PATH", value_parser = parse_ca)]
        cas: Vec<(String, PathBuf)>,
        /// Undo an earlier run for the same registries (uninstall): put each
        /// `hosts.toml.bak` back, or remove a `hosts.toml` it wrote where there
        /// was none; files someone else changed since are left alone.
        #[arg(long)]
        restore: bool,
        /// containerd's config file, to check that its CRI plugin reads
        /// `--certs-dir` (`registry.config_path`). Without that, containerd
        /// ignores the files: this says so and exits 3 (the files are written
        /// anyway). containerd is never restarted by this command.
        #[arg(long, value_name = "PATH")]
        check_containerd: Option<PathBuf>,
        /// Write a registries.conf drop-in for CRI-O (and Podman, Skopeo) at this
        /// path instead (e.g. /etc/containers/registries.conf.d/90-darter.conf):
        /// each registry's mirror is its proxy.registry_mirrors port, or proxy.addr
        /// for proxy.default_registry. CRI-O reads it on `systemctl reload crio`.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["all", "certs_dir", "mirror", "cas", "check_containerd"])]
        crio: Option<PathBuf>,
    },
}

fn parse_ca(s: &str) -> Result<(String, PathBuf), String> {
    let (host, path) = s.split_once('=').ok_or("expected HOST=/path/to/ca.crt")?;
    dfdaemon::containerd::check_registry(host)?;
    let path = PathBuf::from(path);
    dfdaemon::containerd::check_ca(&path)?;
    Ok((host.to_string(), path))
}

/// `dfdaemon containerd-config`: returns the exit code.
fn containerd_config(config: &Config, command: &Command) -> i32 {
    let Command::ContainerdConfig {
        registries,
        all,
        certs_dir,
        mirror,
        insecure,
        cas,
        restore,
        check_containerd,
        crio,
    } = command;
    if registries.is_empty() && !all {
        let or_all = if crio.is_some() { "" } else { ", or --all" };
        eprintln!("dfdaemon containerd-config: name at least one --registry{or_all}");
        return 2;
    }
    for r in registries.iter().chain(insecure) {
        if let Err(e) = dfdaemon::containerd::check_registry(r) {
            eprintln!("dfdaemon containerd-config: --registry: {e}");
            return 2;
        }
    }
    if let Some((host, _)) = cas.iter().find(|(host, _)| !registries.contains(host)) {
        eprintln!("dfdaemon containerd-config: --ca {host}=...: name {host} with --registry too");
        return 2;
    }
    if let Some(file) = crio {
        return crio_config(config, file, registries, insecure, *restore);
    }
    let dirs = registries.iter().cloned().chain(all.then(|| "_default".to_string()));
    if *restore {
        return restore_files(certs_dir, dirs);
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
        .map(|r| {
            let ca = cas.iter().find(|(host, _)| host == r).map(|(_, path)| path.as_path());
            let registry = dfdaemon::containerd::Registry { name: r, insecure: insecure.contains(r), ca };
            (r.clone(), dfdaemon::containerd::render(Some(registry), &mirror))
        })
        .collect();
    if *all {
        files.push(("_default".into(), dfdaemon::containerd::render(None, &mirror)));
    }
    for (dir, content) in files {
        let written = dfdaemon::containerd::write(certs_dir, &dir, &content);
        if let Err(code) = report_written(written, &certs_dir.join(&dir)) {
            return code;
        }
    }
    match check_containerd {
        Some(path) => check_containerd_config(path, certs_dir),
        None => 0,
    }
}

/// Prints what writing one file did; 1 when it failed.
fn report_written(written: std::io::Result<dfdaemon::containerd::Written>, at: &std::path::Path) -> Result<(), i32> {
    match written {
        Ok(dfdaemon::containerd::Written::Unchanged(p)) => println!("unchanged {}", p.display()),
        Ok(dfdaemon::containerd::Written::Written { path, backup }) => match backup {
            Some(b) => println!("wrote {} (previous file kept as {})", path.display(), b.display()),
            None => println!("wrote {}", path.display()),
        },
        Err(e) => {
            eprintln!("dfdaemon containerd-config: {}: {e}", at.display());
            return Err(1);
        }
    }
    Ok(())
}

/// `containerd-config --crio FILE`: the registries.conf drop-in (or its
/// restore); returns the exit code.
fn crio_config(
    config: &Config,
    file: &std::path::Path,
    registries: &[String],
    insecure: &[String],
    restore: bool,
) -> i32 {
    if restore {
        return match dfdaemon::containerd::restore_file(file) {
            Ok(done) => {
                println!("{}", restored_line(&done));
                0
            }
            Err(e) => {
                eprintln!("dfdaemon containerd-config: cannot restore {}: {e}", file.display());
                1
            }
        };
    }
    let mut mirrored = Vec::new();
    for r in registries {
        // Plain HTTP for CRI-O's own fallback exactly when the mirror uses it.
        let registry_insecure =
            insecure.iter().chain(&config.proxy.insecure_registries).any(|h| h.eq_ignore_ascii_case(r));
        match dfdaemon::crio::mirror_for(r, registry_insecure, &config.proxy) {
            Ok(mirror) => mirrored.push(dfdaemon::crio::Mirrored { registry: r, insecure: registry_insecure, mirror }),
            Err(e) => {
                eprintln!("dfdaemon containerd-config: --crio: {e}");
                return 2;
            }
        }
    }
    match report_written(dfdaemon::containerd::write_file(file, &dfdaemon::crio::render(&mirrored)), file) {
        Ok(()) => 0,
        Err(code) => code,
    }
}

/// `--check-containerd`: 0 when containerd reads `certs_dir`, else 3 with a
/// message that says what to change.
fn check_containerd_config(path: &std::path::Path, certs_dir: &std::path::Path) -> i32 {
    use dfdaemon::containerd::ConfigPath;
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            eprintln!("dfdaemon containerd-config: cannot read {}: {e}", path.display());
            return 1;
        }
    };
    let fix = format!(
        "set config_path = \"{}\" in the [plugins.\"io.containerd.grpc.v1.cri\".registry] table \
         (containerd 2: [plugins.'io.containerd.cri.v1.images'.registry]) of {} and restart containerd once",
        certs_dir.display(),
        path.display()
    );
    match dfdaemon::containerd::check_config_path(&text, certs_dir) {
        ConfigPath::Set => {
            println!("containerd reads {} ({}): pulls go through the mirror", certs_dir.display(), path.display());
            0
        }
        ConfigPath::NotSet => {
            eprintln!(
                "dfdaemon containerd-config: containerd does not read {} (no registry config_path in {}): pulls do not go through the mirror; {fix}",
                certs_dir.display(),
                path.display()
            );
            3
        }
        ConfigPath::Elsewhere(other) => {
            eprintln!(
                "dfdaemon containerd-config: containerd reads {other}, not {} ({}): pulls do not go through the mirror; write the files there (--certs-dir {other}) or {fix}",
                certs_dir.display(),
                path.display()
            );
            3
        }
    }
}

/// `dfdaemon containerd-config --restore`: returns the exit code.
fn restore_files(certs_dir: &std::path::Path, dirs: impl Iterator<Item = String>) -> i32 {
    for dir in dirs {
        match dfdaemon::containerd::restore(certs_dir, &dir) {
            Ok(done) => println!("{}", restored_line(&done)),
            Err(e) => {
                eprintln!("dfdaemon containerd-config --restore: {}: {e}", certs_dir.join(&dir).display());
                return 1;
            }
        }
    }
    0
}

/// What `--restore` did to one file, as printed.
fn restored_line(done: &dfdaemon::containerd::Restored) -> String {
    use dfdaemon::containerd::Restored;
    match done {
        Restored::Backup(p) => format!("restored {} from its backup", p.display()),
        Restored::Removed(p) => format!("removed {} (there was none before)", p.display()),
        Restored::NotOurs(p) => format!("left {} alone: it was changed since", p.display()),
        Restored::Absent(p) => format!("nothing to restore at {}", p.display()),
    }
}

impl Cli {
    /// This binary's own flags as `(dotted.path, value)`.
    fn flags(&self) -> Vec<(&'static str, Option<String>)> {
        vec![
            ("storage.data_dir", self.data_dir.as_ref().map(|p| p.display().to_string())),
            ("download.socket", self.download_socket.as_ref().map(|p| p.display().to_string())),
            ("upload.grpc_addr", value(self.upload_grpc_addr.as_ref())),
            ("upload.piece_addr", value(self.piece_addr.as_ref())),
            ("metrics_addr", value(self.metrics_addr.as_ref())),
            ("proxy.addr", value(self.proxy_addr.as_ref())),
            ("proxy.enabled", self.no_proxy.then(|| "false".to_string())),
            ("scheduler.addrs", list(&self.schedulers)),
            ("manager.addrs", list(&self.managers)),
            ("host.seed", self.seed.then(|| "true".to_string())),
        ]
    }
}

fn main() {
    let cli = Cli::parse();
    let config: Config = cli.service.load("dfdaemon", ENV_PREFIX, cli.flags());
    if let Some(command) = &cli.command {
        std::process::exit(containerd_config(&config, command));
    }
    let (log, tracing) = (config.log.clone(), config.tracing.clone());
    let bind_config = config.clone();
    let code = darter_common::service::run(
        "dfdaemon",
        &log,
        &tracing,
        cli.service.ready_file.as_deref(),
        || async move { dfdaemon::Listeners::bind(&bind_config).await },
        |listeners, shutdown| dfdaemon::run(config, listeners, shutdown),
    );
    std::process::exit(code);
}
